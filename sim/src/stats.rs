//! What the simulator counts, for the tests: served at `GET /v1/sim/stats` and read in process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

/// How many schema violations are kept word for word.
const KEPT_VIOLATIONS: usize = 20;

#[derive(Default)]
pub struct SimStats {
    pub token_requests: AtomicU64,
    pub websocket_sessions: AtomicU64,
    pub calls: AtomicU64,
    /// Client events received, and those checked against the published schema.
    pub client_events: AtomicU64,
    pub schema_checked: AtomicU64,
    pub schema_violations: AtomicU64,
    /// Truncations refused for reaching past the audio the item had.
    pub truncates_refused: AtomicU64,
    pub truncates: AtomicU64,
    /// Outputs sent for function calls of cancelled responses (a client that ran them).
    pub cancelled_calls_answered: AtomicU64,
    pub responses: AtomicU64,
    /// Requests refused for an unknown or expired token.
    pub tokens_refused: AtomicU64,
    /// GPT-Live sessions (WebSocket or WebRTC).
    pub live_sessions: AtomicU64,
    /// GPT-Live text appends that answered a delegation.
    pub delegations_answered: AtomicU64,
    violations: Mutex<Vec<String>>,
}

impl SimStats {
    pub fn violation(&self, why: String) {
        self.schema_violations.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut kept) = self.violations.lock() {
            if kept.len() < KEPT_VIOLATIONS {
                kept.push(why);
            }
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "token_requests": n(&self.token_requests),
            "websocket_sessions": n(&self.websocket_sessions),
            "calls": n(&self.calls),
            "client_events": n(&self.client_events),
            "schema_checked": n(&self.schema_checked),
            "schema_violations": n(&self.schema_violations),
            "violations": self.violations(),
            "truncates": n(&self.truncates),
            "truncates_refused": n(&self.truncates_refused),
            "cancelled_calls_answered": n(&self.cancelled_calls_answered),
            "responses": n(&self.responses),
            "live_sessions": n(&self.live_sessions),
            "delegations_answered": n(&self.delegations_answered),
            "tokens_refused": n(&self.tokens_refused),
        })
    }
}
