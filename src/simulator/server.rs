//! The simulator's HTTP and WebSocket front (axum on 127.0.0.1).
