//! realtime-voiced: a headless voice assistant daemon for the Raspberry Pi.
//!
//! The tree follows the data path: [`audio`] (microphone and speaker through ALSA), [`transport`]
//! (the Realtime API over WebRTC or WebSocket), [`session`] (the conversation as a sans-IO state
//! machine), [`control`] (D-Bus, GPIO, systemd) and [`config`]. [`daemon`] is the event loop
//! that feeds the machine and carries out its actions; [`app`] wires all of it together;
//! [`check_audio`] is the command line's audio self-check.

pub mod app;
pub mod audio;
pub mod check_audio;
pub mod config;
pub mod control;
pub mod daemon;
pub mod logging;
pub mod provided;
pub mod session;
pub mod transport;
