//! The D-Bus side against a scripted event loop on a private session bus: the Transcript signal,
//! PropertiesChanged for a change made elsewhere (the button), and a property write announced
//! exactly once.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use realtime_voiced::config::{Bus as BusKind, TransportKind};
use realtime_voiced::control::{self, dbus, Command, ControlHandle, Snapshot};
use realtime_voiced::session::Role;
use testkit::bus::{Bus, NAME, PATH};
use tokio::sync::{broadcast, mpsc, watch};
use zbus::zvariant::OwnedValue;

#[zbus::proxy(
    interface = "io.thrive.RealtimeVoice1",
    default_service = "io.thrive.RealtimeVoice1",
    default_path = "/io/thrive/RealtimeVoice1"
)]
trait Voice {
    fn status(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    #[zbus(property)]
    fn volume(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn set_volume(&self, volume: f64) -> zbus::Result<()>;
    #[zbus(signal)]
    fn transcript(&self, role: String, text: String) -> zbus::Result<()>;
}

#[test]
fn signals_and_property_changes() {
    // It points the session bus address of its whole process at a private bus.
    if testkit::rerun_alone!(signals_and_property_changes, Duration::from_secs(60)) {
        return;
    }
    if !testkit::proc::have("dbus-daemon") {
        eprintln!("SKIPPED: dbus-daemon is not installed (package dbus-daemon)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Bus::session(dir.path());
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), scenario(&bus.address))
            .await
            .expect("the scenario finished in time");
    });
}

async fn scenario(address: &str) {
    let (commands, mut loop_rx) = mpsc::channel(64);
    let (snapshot_tx, snapshot) = watch::channel(Snapshot::new(TransportKind::Webrtc, 0.5));
    let (transcripts, _) = broadcast::channel(8);
    let handle = ControlHandle {
        commands,
        snapshot,
        transcripts: transcripts.clone(),
        provided: Default::default(),
    };
    // A scripted event loop: applies volume and mute, answers pings.
    let loop_snapshot = snapshot_tx.clone();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(command) = loop_rx.recv().await {
            match command {
                Command::SetVolume(v) => {
                    let _ = seen_tx.send(v);
                    loop_snapshot.send_modify(|s| s.volume = v);
                }
                Command::Ping(Some(reply)) => {
                    let _ = reply.send(Ok(()));
                }
                _ => {}
            }
        }
    });

    let conn = dbus::connect(BusKind::Session, &handle)
        .await
        .expect("own the name");
    tokio::spawn(dbus::serve(BusKind::Session, handle.clone(), conn));

    let client = zbus::connection::Builder::address(address)
        .expect("address")
        .build()
        .await
        .expect("client connection");
    let voice = VoiceProxy::new(&client).await.expect("proxy");
    let props = zbus::fdo::PropertiesProxy::builder(&client)
        .destination(NAME)
        .expect("destination")
        .path(PATH)
        .expect("path")
        .build()
        .await
        .expect("properties proxy");
    let mut changes = props.receive_properties_changed().await.expect("subscribe");
    let mut lines = voice.receive_transcript().await.expect("subscribe");

    // A transcript from the event loop becomes a signal.
    transcripts
        .send(control::Transcript {
            role: Role::Assistant,
            text: "Hello there.".into(),
        })
        .expect("a D-Bus subscriber");
    let line = lines.next().await.expect("a Transcript signal");
    let args = line.args().expect("args");
    assert_eq!(
        (args.role.as_str(), args.text.as_str()),
        ("assistant", "Hello there.")
    );

    // A change made elsewhere (the button's long press mutes) is announced.
    snapshot_tx.send_modify(|s| s.muted = true);
    let change = changes.next().await.expect("PropertiesChanged");
    let args = change.args().expect("args");
    assert_eq!(args.interface_name().as_str(), NAME);
    let changed: Vec<String> = args
        .changed_properties()
        .keys()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(changed, ["Muted"]);

    // A property write reaches the loop, reads back at once and is announced once.
    voice.set_volume(0.75).await.expect("set Volume");
    assert_eq!(seen_rx.recv().await, Some(0.75));
    assert_eq!(voice.volume().await.expect("get Volume"), 0.75);
    let change = changes.next().await.expect("PropertiesChanged");
    let args = change.args().expect("args");
    let value = args
        .changed_properties()
        .get("Volume")
        .map(|v| format!("{v}"));
    assert_eq!(value.as_deref(), Some("0.75"));
    let again = tokio::time::timeout(Duration::from_millis(300), changes.next()).await;
    assert!(again.is_err(), "Volume was announced twice");

    // Out of range: refused, nothing reaches the loop.
    let err = voice.set_volume(1.5).await.expect_err("1.5 is refused");
    assert!(format!("{err}").contains("between 0.0 and 1.0"), "{err}");
    assert!(seen_rx.try_recv().is_err());

    let status = voice.status().await.expect("Status");
    assert_eq!(
        status.get("volume").and_then(|v| f64::try_from(v).ok()),
        Some(0.75)
    );
    assert_eq!(
        status.get("muted").and_then(|v| bool::try_from(v).ok()),
        Some(true)
    );
}
