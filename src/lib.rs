//! realtime-voiced: a headless voice assistant daemon for the Raspberry Pi.
//!
//! The tree follows the data path: [`audio`] (microphone and speaker through ALSA), [`transport`]
//! (the Realtime API over WebRTC or WebSocket), [`session`] (the conversation as a sans-IO state
//! machine), [`control`] (D-Bus, GPIO, systemd) and [`config`]. [`daemon`] wires them together.

pub mod audio;
pub mod budget;
pub mod config;
pub mod control;
pub mod daemon;
pub mod logging;
pub mod memory;
pub mod session;
pub mod simulator;
pub mod tools;
pub mod transport;
