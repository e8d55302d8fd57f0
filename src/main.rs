//! `realtime-voiced`: the daemon's command line.
//!
//! Exit status: 0 after a clean stop, 78 (EX_CONFIG) for an invalid configuration, 1 for any
//! other fatal error. Errors reach the user as one line on stderr (and the journal).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use realtime_voiced::config::{Config, DEFAULT_PATH};
use realtime_voiced::{app, logging};
use tokio::sync::mpsc;
use tracing::{error, info};

const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "realtime-voiced",
    version,
    about = "Voice assistant daemon for the OpenAI Realtime API"
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Start a conversation as soon as the daemon is up (otherwise wait for D-Bus or the button).
    #[arg(long)]
    start: bool,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand)]
enum Sub {
    /// Validate the configuration and print it, secrets redacted. Exit 0 if valid, 78 if not.
    CheckConfig,
    /// Check the sound devices: list them, play a test tone, measure the speaker's echo in the
    /// microphone and what the canceller removes. Exit 0 if all is fine, 1 if not.
    CheckAudio,
}

fn main() -> ExitCode {
    // Before anything else, while this is the only thread: the key leaves the environment.
    realtime_voiced::config::take_key_from_environment();
    let cli = Cli::parse();
    let explicit = cli.config.is_some();
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    match cli.command {
        Some(Sub::CheckConfig) => check_config(&path, explicit),
        Some(Sub::CheckAudio) => check_audio(&path, explicit),
        None => run(&path, explicit, cli.start),
    }
}

fn check_config(path: &std::path::Path, explicit: bool) -> ExitCode {
    let config = match Config::load_or_default(path, explicit) {
        Ok(c) => c,
        Err(e) => {
            for line in e.lines() {
                eprintln!("{line}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    let key = match config.api_key() {
        Ok(Some((_, source))) => format!("from {source}"),
        Ok(None) if config.api.token_url.is_some() => {
            "not needed (tokens come from api.token_url)".into()
        }
        Ok(None) => {
            "none found (set api.api_key_file, the openai-api-key credential or $OPENAI_API_KEY)"
                .into()
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if path.exists() {
        println!("# {}: valid", path.display());
    } else {
        println!("# {} not found: using defaults", path.display());
    }
    println!("# API key: {key}");
    print!("{}", config.to_redacted_toml());
    ExitCode::SUCCESS
}

fn check_audio(path: &std::path::Path, explicit: bool) -> ExitCode {
    let config = match Config::load_or_default(path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("realtime-voiced: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let mut out = std::io::stdout();
    match realtime_voiced::check_audio::run(&config, &mut out) {
        Ok(realtime_voiced::check_audio::Outcome::Fine) => ExitCode::SUCCESS,
        Ok(realtime_voiced::check_audio::Outcome::Attention) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("realtime-voiced: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path, explicit: bool, start: bool) -> ExitCode {
    let config = match Config::load_or_default(path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("realtime-voiced: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let log = logging::init(config.log.level);
    // One TLS crypto provider for the whole process (webrtc uses ring too).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // One worker: the daemon's async work (a frame each way every 20 ms, the bus, the
        // service's events) fits in a fraction of one core, and a second worker only added
        // wake-ups handing tasks between the two (589 -> 344 context switches a second in a call).
        .worker_threads(1)
        .enable_all()
        .thread_name("rtv-async")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), "starting");
    let result = runtime.block_on(async {
        // Installed before anything starts: a daemon that could not hear SIGTERM must not run.
        let unix =
            UnixSignals::install().map_err(|e| anyhow::anyhow!("cannot watch for signals: {e}"))?;
        let (signals_tx, signals) = mpsc::channel(4);
        let signals_task = tokio::spawn(forward_signals(
            unix,
            path.to_owned(),
            explicit,
            log,
            signals_tx,
        ));
        let result = app::run(config, signals, app::RunOptions { start }).await;
        signals_task.abort();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The Unix signals the daemon answers.
struct UnixSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl UnixSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(UnixSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP rereads the configuration file and hands it over,
/// or why it could not be read (the running configuration is then kept).
async fn forward_signals(
    unix: UnixSignals,
    path: PathBuf,
    explicit: bool,
    log: logging::LogHandle,
    to: mpsc::Sender<app::Signal>,
) {
    let UnixSignals {
        mut term,
        mut int,
        mut hup,
    } = unix;
    loop {
        let signal = tokio::select! {
            _ = term.recv() => app::Signal::Shutdown,
            _ = int.recv() => app::Signal::Shutdown,
            _ = hup.recv() => match Config::load_or_default(&path, explicit) {
                Ok(new) => {
                    log.set_level(new.log.level);
                    app::Signal::Reload(Ok(Box::new(new)))
                }
                Err(e) => app::Signal::Reload(Err(e.to_string())),
            },
        };
        if to.send(signal).await.is_err() {
            return;
        }
    }
}
