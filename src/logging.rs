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
