//! The running daemon, wired: sound devices, the connection to the service, the event loop,
//! D-Bus, the GPIO panel and systemd, started in that order and stopped on [`Signal::Shutdown`].
//!
//! `main.rs` turns Unix signals into [`Signal`]s (and reads the file on SIGHUP); everything else
//! about starting and stopping lives here, so a test can run the same wiring with a channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::audio;
use crate::config::Config;
use crate::control::{dbus, gpio, systemd, Command};
use crate::daemon::tools::Tools;
use crate::daemon::{Daemon, Parts};
use crate::provided::ProvidedTools;
use crate::transport::{self, Connector};

/// What the outside asks of a running daemon.
#[derive(Debug)]
pub enum Signal {
    /// SIGHUP: the configuration file read and validated again, or why it could not be (the
    /// running configuration is then kept).
    Reload(Result<Box<Config>, String>),
    /// Stop cleanly (SIGTERM, SIGINT).
    Shutdown,
}

/// Options of one run that are not configuration.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunOptions {
    /// Start a conversation as soon as the daemon is up.
    pub start: bool,
}

impl Parts {
    /// The parts of a device: the real connector (with a token fetched ahead of the first
    /// Start), the configured tools and those programs offer, the sound engine and
    /// `$STATE_DIRECTORY`.
    pub fn real(config: &Config, engine: &Arc<audio::engine::Engine>) -> Parts {
        let provided = Arc::new(ProvidedTools::default());
        let link_context = transport::LinkContext {
            provided: Arc::clone(&provided),
            latency: engine.latency(),
            ..transport::LinkContext::new(
                Arc::new(config.clone()),
                engine.microphone(),
                engine.clone(),
            )
        };
        let connector: Arc<dyn Connector> = match transport::connector::for_config(link_context) {
            Ok(connector) => connector,
            Err(e) => Arc::new(transport::Unavailable(e.message)),
        };
        Parts {
            connector,
            audio: engine.clone(),
            tools: Arc::new(Tools::new(&config.session).with_provided(Arc::clone(&provided))),
            provided,
            state_dir: crate::daemon::memory::state_dir(),
        }
    }
}

/// Runs the daemon until `signals` says Shutdown (or closes). Returns an error, as one line with
/// its context, when something the daemon cannot do without fails at start (the GPIO pins, the
/// bus) or the event loop stops on its own.
pub async fn run(
    config: Config,
    mut signals: mpsc::Receiver<Signal>,
    options: RunOptions,
) -> anyhow::Result<()> {
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
    let parts = Parts::real(&config, &engine);
    let running = config.clone();
    let daemon = Daemon::new(config, parts);
    let notifier = daemon.notifier();
    let speech = notifier.clone();
    let audible = notifier.clone();
    let silenced = notifier.clone();
    engine.on_audible(move || audible.speaker_started());
    engine.on_silenced(move |ms| silenced.speaker_silenced(ms));
    engine.on_drained(move || notifier.playback_drained());
    engine.on_local_speech(move || speech.local_speech());
    let control = daemon.handle();

    let panel = pins.map(|(button, light)| {
        gpio::Panel::new(
            &running.gpio,
            button,
            light,
            control.commands.clone(),
            daemon.led(),
            std::time::Instant::now(),
        )
    });
    let bus_connection = dbus::connect(running.dbus.bus, &control).await?;

    let mut daemon_task = tokio::spawn(daemon.run());
    tokio::spawn(dbus::serve(
        running.dbus.bus,
        control.clone(),
        bus_connection,
    ));
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
    if options.start {
        let _ = control.commands.send(Command::Start(None)).await;
    }
    loop {
        tokio::select! {
            signal = signals.recv() => match signal {
                Some(Signal::Reload(result)) => {
                    systemd::reloading();
                    match result {
                        Ok(new) => {
                            warn_restart_needed(&running, &new);
                            let _ = control.commands.send(Command::Reload(new)).await;
                            info!("configuration reloaded");
                        }
                        Err(e) => error!("configuration not reloaded, keeping the running one: {e}"),
                    }
                    systemd::ready(&control.snapshot.borrow());
                }
                Some(Signal::Shutdown) | None => break,
            },
            result = &mut daemon_task => {
                return result.map_err(|e| anyhow::anyhow!("the daemon's main loop stopped: {e}"));
            }
        }
    }
    info!("stopping on signal");
    systemd::stopping();
    let _ = control.commands.send(Command::Shutdown).await;
    // Never hang on exit: the unit's stop timeout is generous, our promise is 2 s.
    if tokio::time::timeout(std::time::Duration::from_millis(1500), daemon_task)
        .await
        .is_err()
    {
        warn!("the conversation did not close in time; exiting anyway");
    }
    panel_stop.store(true, Ordering::Relaxed);
    if let Some(thread) = panel_thread {
        let _ = thread.join();
    }
    Ok(())
}

/// Says which changed settings a reload cannot apply: the bus, the pins and the sound devices
/// are opened once, at start. The volume applies at once, so it is not among them.
fn warn_restart_needed(running: &Config, new: &Config) {
    let mut later = Vec::new();
    if new.dbus.bus != running.dbus.bus {
        later.push("[dbus]");
    }
    if new.gpio != running.gpio {
        later.push("[gpio]");
    }
    let audio = crate::config::Audio {
        volume: running.audio.volume,
        ..new.audio.clone()
    };
    if audio != running.audio {
        later.push("[audio] devices and processing");
    }
    if !later.is_empty() {
        warn!(
            "changes to {} take effect at the next start",
            later.join(", ")
        );
    }
}
