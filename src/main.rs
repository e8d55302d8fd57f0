//! `realtime-voiced`: the daemon's command line.
//!
//! Exit status: 0 after a clean stop, 78 (EX_CONFIG) for an invalid configuration, 1 for any
//! other fatal error. Errors reach the user as one line on stderr (and the journal).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use realtime_voiced::config::{Config, DEFAULT_PATH};
use realtime_voiced::control::{dbus, gpio, systemd, Command};
use realtime_voiced::daemon::{Daemon, Parts};
use realtime_voiced::tools::Tools;
use realtime_voiced::{audio, logging, transport};
use tracing::{error, info, warn};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explicit = cli.config.is_some();
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    match cli.command {
        Some(Sub::CheckConfig) => check_config(&path, explicit),
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
        .worker_threads(2)
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
    match runtime.block_on(serve(config, path.to_owned(), explicit, start, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    path: PathBuf,
    explicit: bool,
    start: bool,
    log: logging::LogHandle,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;

    info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), "starting");
    // GPIO first: a wrong setting there is cheap to find and ends the start at once.
    let pins = if config.gpio.enabled {
        Some(gpio::open(&config.gpio)?)
    } else {
        None
    };
    // The audio devices are opened next: READY=1 promises a daemon that can hear and speak.
    // ALSA is opened off the runtime. A missing device is logged and retried, not fatal: a USB
    // microphone may still be enumerating at boot.
    let audio_config = config.audio.clone();
    let engine = tokio::task::spawn_blocking(move || {
        let options = audio::engine::EngineOptions {
            wait_for_devices: true,
            ..Default::default()
        };
        audio::engine::Engine::start_with(&audio_config, options)
    })
    .await??;
    let engine = Arc::new(engine);
    let link_context = transport::LinkContext {
        config: Arc::new(config.clone()),
        microphone: engine.microphone(),
        speaker: engine.clone(),
    };
    let connector: Arc<dyn transport::Connector> =
        match transport::connector::RealtimeConnector::new(link_context) {
            Ok(connector) => {
                // A token ready before the first Start.
                connector.prefetch();
                Arc::new(connector)
            }
            Err(e) => Arc::new(transport::Unavailable(e.message)),
        };
    let parts = Parts {
        connector,
        audio: engine.clone(),
        tools: Arc::new(Tools::new(&config.session.tools)),
        state_dir: realtime_voiced::memory::state_dir(),
    };
    let bus = config.dbus.bus;
    let gpio_config = config.gpio.clone();
    let running_audio = config.audio.clone();
    let daemon = Daemon::new(config, parts);
    let notifier = daemon.notifier();
    engine.on_drained(move || notifier.playback_drained());
    let control = daemon.handle();
    let led = daemon.led();

    let panel = if let Some((button, light)) = pins {
        Some(gpio::Panel::new(
            &gpio_config,
            button,
            light,
            control.commands.clone(),
            led,
            std::time::Instant::now(),
        ))
    } else {
        None
    };
    let bus_connection = dbus::connect(bus, &control).await?;

    let mut daemon_task = tokio::spawn(daemon.run());
    tokio::spawn(dbus::serve(bus, control.clone(), bus_connection));
    tokio::spawn(systemd::follow_status(control.snapshot.clone()));
    if let Some(interval) = systemd::watchdog_interval() {
        tokio::spawn(systemd::watchdog(control.clone(), interval));
    }
    let panel_stop = Arc::new(AtomicBool::new(false));
    let panel_thread = match panel {
        Some(panel) => Some(
            panel
                .spawn(Arc::clone(&panel_stop))
                .map_err(|e| anyhow::anyhow!("cannot start the GPIO thread: {e}"))?,
        ),
        None => None,
    };
    systemd::ready(&control.snapshot.borrow());
    info!("ready");
    if start {
        let _ = control.commands.send(Command::Start(None)).await;
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                systemd::reloading();
                match Config::load_or_default(&path, explicit) {
                    Ok(new) => {
                        let mut later = Vec::new();
                        if new.dbus.bus != bus {
                            later.push("[dbus]");
                        }
                        if new.gpio != gpio_config {
                            later.push("[gpio]");
                        }
                        // The volume applies at once; devices and processing are the engine's.
                        let audio = realtime_voiced::config::Audio {
                            volume: running_audio.volume,
                            ..new.audio.clone()
                        };
                        if audio != running_audio {
                            later.push("[audio] devices and processing");
                        }
                        if !later.is_empty() {
                            warn!("changes to {} take effect at the next start", later.join(", "));
                        }
                        log.set_level(new.log.level);
                        let _ = control.commands.send(Command::Reload(Box::new(new))).await;
                        info!("configuration reloaded");
                    }
                    Err(e) => error!("configuration not reloaded, keeping the running one: {e}"),
                }
                systemd::ready(&control.snapshot.borrow());
            }
            result = &mut daemon_task => {
                return result.map_err(|e| anyhow::anyhow!("the daemon's main loop stopped: {e}"));
            }
        }
    }
    info!("stopping on signal");
    systemd::stopping();
    let _ = control.commands.send(Command::Shutdown).await;
    // Never hang on exit: the unit's stop timeout is generous, our promise is 2 s.
    match tokio::time::timeout(std::time::Duration::from_millis(1500), daemon_task).await {
        Ok(_) => {}
        Err(_) => warn!("the conversation did not close in time; exiting anyway"),
    }
    panel_stop.store(true, Ordering::Relaxed);
    if let Some(thread) = panel_thread {
        let _ = thread.join();
    }
    Ok(())
}
