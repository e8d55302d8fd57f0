//! Logging: to the journal with structured fields when systemd started us (it sets
//! `JOURNAL_STREAM`), to stderr otherwise. The level comes from the configuration; `RUST_LOG`
//! overrides it.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::LogLevel;

/// Lets a reloaded configuration change the level without restarting.
pub struct LogHandle {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

/// Libraries that write request headers (a bearer token among them) at trace level. Their
/// trace stays off unless RUST_LOG names them.
const HEADER_LOGGERS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
    "rustls",
];

fn filter(level: LogLevel) -> EnvFilter {
    let spec = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() && EnvFilter::try_new(&spec).is_ok() => {
            let mut spec = spec;
            for lib in HEADER_LOGGERS {
                if !spec.split([',', '=']).any(|part| part.trim() == *lib) {
                    spec.push_str(&format!(",{lib}=debug"));
                }
            }
            spec
        }
        // Our crate at the configured level; the libraries (webrtc, zbus, …) quieter, because
        // their lines mean little to a user, and their trace can carry secrets.
        _ => match level {
            LogLevel::Debug | LogLevel::Trace => {
                format!("info,realtime_voiced={}", level.as_str())
            }
            _ => format!("warn,realtime_voiced={}", level.as_str()),
        },
    };
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(level.as_str()))
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(level: LogLevel) -> LogHandle {
    let (filter, handle) = reload::Layer::new(filter(level));
    let registry = tracing_subscriber::registry().with(filter);
    // JOURNAL_STREAM alone is not enough: without journald's socket the lines would vanish.
    let journald = (std::env::var_os("JOURNAL_STREAM").is_some()
        && std::path::Path::new("/run/systemd/journal/socket").exists())
    .then(tracing_journald::layer)
    .and_then(Result::ok);
    let installed = match journald {
        Some(layer) => registry
            .with(layer.with_syslog_identifier("realtime-voiced".into()))
            .try_init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .compact(),
            )
            .try_init(),
    };
    LogHandle {
        handle: installed.is_ok().then_some(handle),
    }
}

impl LogHandle {
    pub fn set_level(&self, level: LogLevel) {
        if let Some(h) = &self.handle {
            let _ = h.reload(filter(level));
        }
    }
}

/// Lets a repeated warning through a few times per window and holds back the rest, so that a
/// hostile or broken peer cannot flood the journal; the next line let through says how many
/// were held back.
#[derive(Debug)]
pub struct Throttle {
    burst: u32,
    window: std::time::Duration,
    started: Option<std::time::Instant>,
    shown: u32,
    held: u64,
}

impl Throttle {
    pub const fn new(burst: u32, window: std::time::Duration) -> Self {
        Throttle {
            burst,
            window,
            started: None,
            shown: 0,
            held: 0,
        }
    }

    /// For warnings about what a peer sent: five a minute.
    pub const fn peer_input() -> Self {
        Throttle::new(5, std::time::Duration::from_secs(60))
    }

    /// `Some(held back since the last one shown)` when this occurrence is to be logged.
    pub fn admit(&mut self, now: std::time::Instant) -> Option<u64> {
        let started = *self.started.get_or_insert(now);
        if now.saturating_duration_since(started) >= self.window {
            self.started = Some(now);
            self.shown = 0;
        }
        if self.shown < self.burst {
            self.shown += 1;
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

impl Throttle {
    /// How many were held back since the last line let through (for a closing line).
    pub fn held(&self) -> u64 {
        self.held
    }
}

/// " (N more like it held back)" for a throttled line, or nothing.
pub fn held_back(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it held back)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_flood_of_warnings_becomes_a_few_lines_that_count_the_rest() {
        let mut t = Throttle::new(5, Duration::from_secs(10));
        let start = Instant::now();
        let shown: Vec<u64> = (0..20_000)
            .filter_map(|i| t.admit(start + Duration::from_micros(i * 100)))
            .collect();
        // 2 s of a flood: five lines.
        assert_eq!(shown, vec![0, 0, 0, 0, 0]);
        // The next window's first line says how many were held back.
        assert_eq!(t.admit(start + Duration::from_secs(11)), Some(19_995));
        assert_eq!(held_back(19_995), " (19995 more like it held back)");
        assert_eq!(held_back(0), "");
    }
}
