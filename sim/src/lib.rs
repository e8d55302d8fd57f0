//! The realtime simulator: a stand-in for the OpenAI Realtime API on loopback, for the demo and
//! the tests. It mints tokens, answers WebSocket (and WebRTC) sessions, hears speech by its
//! energy and answers with the caller's own speech echoed back, or a tone.
//!
//! [`brain`] holds the conversation logic without I/O, shared by both transports; [`server`]
//! is the HTTP and WebSocket front; [`webrtc_peer`] answers WebRTC calls.

pub mod brain;
pub mod conformance;
pub mod live;
pub mod server;
pub mod stats;
pub mod webrtc_peer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

/// What the simulated assistant says back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reply {
    /// The caller's own captured speech.
    #[default]
    Echo,
    /// A 660 Hz tone as long as the speech heard (at least 500 ms).
    Tone,
    /// WebRTC only: every 20 ms of the caller's audio is sent straight back, with no voice
    /// detection and no responses: a continuous two-way call, for the benches.
    Mirror,
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

    // Strictness a test can ask for: each reproduces something the service does.
    /// Sessions need a token this simulator minted and that has not expired (401 otherwise).
    pub strict_tokens: bool,
    /// Minted tokens live this long, whatever was asked for.
    pub token_lifetime_s: Option<u64>,
    /// The first call or WebSocket is refused with 401, as for a token revoked meanwhile.
    pub refuse_first_session: bool,
    /// Seconds added to the simulator's clock (its `Date` headers and `expires_at`), as a
    /// device whose clock is off by the opposite sees it.
    pub clock_skew_s: i64,
    /// A cancelled response also carries a function call (`function_call_arguments.done`, the
    /// item `incomplete`), as the service sends for interrupted responses.
    pub cancelled_calls: bool,
    /// The next this many responses end `failed`, with `status_details.error`.
    pub fail_responses: u32,
    /// The next this many `response.create`s lose a race with a response the service starts
    /// itself: answered `conversation_already_has_active_response`.
    pub race_responses: u32,
    /// Send `session_expired` and close this long after a session opens.
    pub session_expired_after_ms: Option<u64>,
    /// Notice speech this long after it starts, as a service a network away does (its
    /// detection plus the round trip); 0 notices it at once.
    pub speech_start_delay_ms: u64,
    /// ICE ticks (and consent checks) at webrtc-rs's pace, every 200 ms once connected, rather
    /// than every 20 ms. Calls then come up about 200 ms later (webrtc-rs sends the SCTP INIT
    /// at its next tick), but the caller is not woken by 50 consent checks a second, which a
    /// service does not send: for measuring the caller's wake-ups.
    pub slow_ice: bool,
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
            strict_tokens: false,
            token_lifetime_s: None,
            refuse_first_session: false,
            clock_skew_s: 0,
            cancelled_calls: false,
            fail_responses: 0,
            race_responses: 0,
            session_expired_after_ms: None,
            speech_start_delay_ms: 0,
            slow_ice: false,
        }
    }
}

/// State shared by every session of one simulator.
pub struct Sim {
    pub options: SimOptions,
    pub stats: Arc<stats::SimStats>,
    ids: AtomicU64,
    /// Live WebRTC calls: `hangup` fires the sender.
    calls: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Tokens minted, and when each stops being accepted.
    tokens: Mutex<HashMap<String, Instant>>,
    refused_first: AtomicBool,
}

impl Sim {
    pub fn new(options: SimOptions) -> Arc<Sim> {
        Arc::new(Sim {
            options,
            stats: Arc::default(),
            ids: AtomicU64::new(1),
            calls: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            refused_first: AtomicBool::new(false),
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

    /// Mints a token that lives `lifetime` (or the configured lifetime).
    pub fn mint(&self, lifetime: Duration) -> (String, Duration) {
        let lifetime = self
            .options
            .token_lifetime_s
            .map_or(lifetime, Duration::from_secs);
        let value = self.next_id("ek");
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(value.clone(), Instant::now() + lifetime);
        }
        (value, lifetime)
    }

    /// Why a session with this bearer token is refused, if it is: the configured refusals
    /// (a revoked first session, unknown or expired tokens).
    pub fn refuse(&self, token: &str) -> Option<&'static str> {
        if self.options.refuse_first_session && !self.refused_first.swap(true, Ordering::Relaxed) {
            return Some("Invalid ephemeral key.");
        }
        if !self.options.strict_tokens {
            return None;
        }
        let valid_until = self.tokens.lock().ok()?.get(token).copied();
        match valid_until {
            Some(until) if Instant::now() < until => None,
            Some(_) => Some("Ephemeral key has expired."),
            None => Some("Invalid ephemeral key."),
        }
    }

    /// The simulator's clock: the real one, skewed as configured.
    pub fn clock(&self) -> SystemTime {
        let skew = Duration::from_secs(self.options.clock_skew_s.unsigned_abs());
        if self.options.clock_skew_s >= 0 {
            SystemTime::now() + skew
        } else {
            SystemTime::now() - skew
        }
    }

    /// A fresh id such as `sess_sim_7`.
    pub fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}_sim_{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }
}
