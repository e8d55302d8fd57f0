//! `WATCHDOG=1` is sent only while the event loop answers: a stuck loop starves the watchdog.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use realtime_voiced::config::TransportKind;
use realtime_voiced::control::{systemd, Command, ControlHandle, Snapshot};
use tokio::sync::{broadcast, mpsc, watch};

fn watchdogs(socket: &UnixDatagram, during: Duration) -> usize {
    let end = Instant::now() + during;
    let mut buf = [0u8; 512];
    let mut n = 0;
    while Instant::now() < end {
        if let Ok(len) = socket.recv(&mut buf) {
            n += String::from_utf8_lossy(&buf[..len])
                .lines()
                .filter(|l| *l == "WATCHDOG=1")
                .count();
        }
    }
    n
}

#[test]
fn watchdog_follows_the_event_loop() {
    // It points the notify socket of its whole process at its own.
    if testkit::rerun_alone!(watchdog_follows_the_event_loop, Duration::from_secs(30)) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    // The only test in its process: nothing else reads the environment concurrently.
    std::env::set_var("NOTIFY_SOCKET", &path);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (commands, mut loop_rx) = mpsc::channel(64);
    let (_snapshot_tx, snapshot) = watch::channel(Snapshot::new(TransportKind::Webrtc, 0.5));
    let (transcripts, _) = broadcast::channel(4);
    let handle = ControlHandle {
        commands,
        snapshot,
        transcripts,
        provided: Default::default(),
    };
    runtime.spawn(systemd::watchdog(handle, Duration::from_millis(100)));

    // A loop that does not answer: no watchdog.
    assert_eq!(watchdogs(&socket, Duration::from_millis(500)), 0);

    // The loop answers again: the watchdog is fed every 50 ms.
    let answering = runtime.spawn(async move {
        while let Some(command) = loop_rx.recv().await {
            if let Command::Ping(Some(reply)) = command {
                let _ = reply.send(Ok(()));
            }
        }
    });
    let fed = watchdogs(&socket, Duration::from_millis(500));
    assert!(fed >= 3, "only {fed} WATCHDOG=1 in 500 ms");
    answering.abort();
    runtime.shutdown_timeout(Duration::from_secs(1));
}
