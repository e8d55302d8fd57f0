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

fn filter(level: LogLevel) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(level.as_str()))
        }
        // Our crate at the configured level; the libraries (webrtc, zbus, …) one level quieter
        // unless debugging, because their info lines mean little to a user.
        _ => EnvFilter::new(match level {
            LogLevel::Debug | LogLevel::Trace => level.as_str().to_owned(),
            _ => format!(
                "warn,realtime_voiced={0},realtime_voiced_sim={0}",
                level.as_str()
            ),
        }),
    }
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
