//! The realtime simulator: a stand-in for the OpenAI Realtime API on loopback, for the demo and
//! the tests. It mints tokens, answers WebSocket (and WebRTC) sessions, hears speech by its
//! energy and answers with the caller's own speech echoed back, or a tone.
//!
//! [`brain`] holds the conversation logic without I/O, shared by both transports; [`server`]
//! is the HTTP and WebSocket front; [`webrtc_peer`] answers WebRTC calls.

pub mod brain;
pub mod server;
pub mod webrtc_peer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What the simulated assistant says back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reply {
    /// The caller's own captured speech.
    #[default]
    Echo,
    /// A 660 Hz tone as long as the speech heard (at least 500 ms).
    Tone,
}

/// How the simulator behaves; the CLI flags of `realtime-sim` fill this in.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// Answer every token request with this HTTP status (401, 429, 500…).
    pub fail_token: Option<u16>,
    /// Responses call this tool first and wait for its output.
    pub tool: Option<String>,
    /// Drop every WebSocket or WebRTC session this long after it opened.
    pub drop_after_ms: Option<u64>,
    /// Delay every HTTP answer by this much.
    pub slow_ms: u64,
    pub reply: Reply,
    /// Transcript of what the user said; default "heard N ms of speech".
    pub transcript: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            port: 0,
            fail_token: None,
            tool: None,
            drop_after_ms: None,
            slow_ms: 0,
            reply: Reply::Echo,
            transcript: None,
        }
    }
}

/// State shared by every session of one simulator.
pub struct Sim {
    pub options: SimOptions,
    pub stats: server::SimStats,
    ids: AtomicU64,
    /// Live WebRTC calls: `hangup` fires the sender.
    calls: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl Sim {
    pub fn new(options: SimOptions) -> Arc<Sim> {
        Arc::new(Sim {
            options,
            stats: server::SimStats::default(),
            ids: AtomicU64::new(1),
            calls: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a call; the receiver fires when the client hangs up
    /// (`POST /v1/realtime/calls/{id}/hangup`).
    pub fn register_call(&self, call_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(call_id.to_owned(), tx);
        }
        rx
    }

    /// Ends a registered call; false when no such call is live.
    pub fn hang_up(&self, call_id: &str) -> bool {
        let tx = self.calls.lock().ok().and_then(|mut c| c.remove(call_id));
        tx.is_some_and(|tx| tx.send(()).is_ok())
    }

    /// A fresh id such as `sess_sim_7`.
    pub fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}_sim_{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }
}
