//! A machine with a clock the test moves, and readers for the actions it returns.

use std::time::{Duration, Instant};

use crate::config::TransportKind;
use crate::session::*;

pub fn settings() -> Settings {
    Settings {
        transport: TransportKind::Webrtc,
        fallback: false,
        connect_timeout: Duration::from_secs(10),
        idle_timeout: Some(Duration::from_secs(30)),
        max_session: Duration::from_secs(55 * 60),
        reconnect_attempts: 3,
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(30),
        earcons: true,
        tools: true,
        jitter_seed: 1,
        rules: Rules::of(crate::config::Protocol::Realtime),
    }
}

pub struct Rig {
    pub m: Machine,
    pub now: Instant,
}

impl Rig {
    pub fn new(settings: Settings) -> Self {
        let now = Instant::now();
        Rig {
            m: Machine::new(settings, now),
            now,
        }
    }

    pub fn feed(&mut self, input: Input) -> Vec<Action> {
        self.m.handle(self.now, input)
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        self.m.handle(self.now, Input::Tick)
    }

    /// Moves the clock to the machine's next deadline and ticks.
    pub fn run_to_deadline(&mut self) -> Vec<Action> {
        let at = self.m.next_deadline().expect("a deadline is set");
        assert!(at >= self.now, "deadline in the past");
        self.now = at;
        self.m.handle(self.now, Input::Tick)
    }

    pub fn server(&mut self, e: ServerEvent) -> Vec<Action> {
        self.feed(Input::Server(e))
    }

    pub fn live(settings: Settings) -> Self {
        let mut r = Rig::new(settings);
        r.feed(Input::Start);
        r.feed(Input::Connected);
        assert_eq!(r.m.state(), State::Listening);
        r
    }
}

pub fn states(actions: &[Action]) -> Vec<State> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StateChanged(s) => Some(*s),
            _ => None,
        })
        .collect()
}

pub fn sends(actions: &[Action]) -> Vec<ClientEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub fn has(actions: &[Action], wanted: &Action) -> bool {
    actions.contains(wanted)
}

pub fn spent(actions: &[Action]) -> Vec<Duration> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::LiveTimeSpent(d) => Some(*d),
            _ => None,
        })
        .collect()
}
