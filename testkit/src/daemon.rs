//! The daemon's event loop assembled in the test's process, with no sound card: the parts
//! every in-process test gives it, in one place.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::audio::NullAudio;
use realtime_voiced::config::Config;
use realtime_voiced::control::{Command, ControlHandle, Snapshot, Transcript};
use realtime_voiced::daemon::tools::Tools;
use realtime_voiced::daemon::{Daemon, Parts};
use realtime_voiced::session::{Role, State};
use realtime_voiced::transport::Connector;
use tokio::sync::{broadcast, watch};

/// A daemon that reaches the service through `connector`, plays and hears nothing, offers the
/// tools `config` names and keeps its state in `state_dir`. Run it with `tokio::spawn(d.run())`
/// after taking `d.handle()`.
pub fn build(config: Config, connector: Arc<dyn Connector>, state_dir: &Path) -> Daemon {
    let provided = Arc::default();
    let tools = Tools::new(&config.session).with_provided(Arc::clone(&provided));
    Daemon::new(
        config,
        Parts {
            connector,
            audio: Arc::new(NullAudio),
            tools: Arc::new(tools),
            provided,
            state_dir: state_dir.to_owned(),
        },
    )
}

/// Waits up to `limit` until the daemon's published snapshot satisfies `ok`; panics naming
/// `what`, with the snapshot, otherwise.
pub async fn until(
    snapshot: &mut watch::Receiver<Snapshot>,
    limit: Duration,
    what: &str,
    ok: impl Fn(&Snapshot) -> bool,
) {
    tokio::time::timeout(limit, async {
        loop {
            if ok(&snapshot.borrow_and_update()) {
                return;
            }
            snapshot.changed().await.expect("daemon alive");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {what}: {:?}", snapshot.borrow()));
}

/// The next transcript said by `role`, within `limit`.
pub async fn transcript(
    rx: &mut broadcast::Receiver<Transcript>,
    role: Role,
    limit: Duration,
) -> String {
    tokio::time::timeout(limit, async {
        loop {
            let t = rx.recv().await.expect("transcripts");
            if t.role == role {
                return t.text;
            }
        }
    })
    .await
    .expect("a transcript in time")
}

/// A daemon running in a task of its own, with what a test watches it through.
pub struct Running {
    pub control: ControlHandle,
    pub snapshot: watch::Receiver<Snapshot>,
    /// Subscribed before the start, so no transcript is missed.
    pub transcripts: broadcast::Receiver<Transcript>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Runs `daemon`, asks it to Start and waits up to `limit` until it is listening.
    pub async fn listening(daemon: Daemon, limit: Duration) -> Running {
        let control = daemon.handle();
        let transcripts = control.transcripts.subscribe();
        let mut snapshot = control.snapshot.clone();
        let task = tokio::spawn(daemon.run());
        control
            .request(Command::Start)
            .await
            .expect("start accepted");
        until(&mut snapshot, limit, "listening", |s| {
            s.state == State::Listening
        })
        .await;
        Running {
            control,
            snapshot,
            transcripts,
            task,
        }
    }
}

/// Asks the daemon to shut down and waits up to `limit` for its task to end.
pub async fn shutdown(control: &ControlHandle, task: tokio::task::JoinHandle<()>, limit: Duration) {
    let _ = control.commands.send(Command::Shutdown).await;
    tokio::time::timeout(limit, task)
        .await
        .expect("daemon stops")
        .expect("daemon task");
}
