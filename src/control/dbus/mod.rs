//! The D-Bus interface `io.thrive.RealtimeVoice1` (see `docs/dbus.md`).
//!
//! Methods turn into [`Command`]s; properties are read from the daemon's [`Snapshot`] and their
//! changes are announced by following the snapshot watch, so a change made by the button shows on
//! the bus exactly like one made over D-Bus. Losing the bus (a dbus-daemon restart) does not stop
//! the daemon: [`serve`] reconnects with backoff and takes its name again.

mod interface;
mod introspection;
mod providers;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use tracing::{debug, info, warn};
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;
use zbus::{fdo, Connection, MessageStream};

use crate::config::Bus;
use crate::control::{ControlHandle, Refusal, Snapshot};

pub use interface::{stats_dict, status_dict, Voice};
pub use introspection::{annotate, Documented};
pub use providers::{PROVIDER_INTERFACE, PROVIDER_PATH};

/// The well-known bus name, also the interface name.
pub const NAME: &str = "io.thrive.RealtimeVoice1";
/// The one object the daemon serves.
pub const PATH: &str = "/io/thrive/RealtimeVoice1";
/// How long connecting to the bus and taking the name may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest text `SendText` takes, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Errors as they appear on the bus: `io.thrive.RealtimeVoice1.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.thrive.RealtimeVoice1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    NotConfigured(String),
    NotActive(String),
    InvalidArgument(String),
    LimitReached(String),
    Failed(String),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NotConfigured(m) => Error::NotConfigured(m),
            Refusal::NotActive(m) => Error::NotActive(m),
            Refusal::InvalidArgument(m) => Error::InvalidArgument(m),
            Refusal::LimitReached(m) => Error::LimitReached(m),
            Refusal::Failed(m) => Error::Failed(m),
        }
    }
}

/// Checks `SendText`'s argument.
pub fn check_text(text: &str) -> Result<(), Refusal> {
    if text.trim().is_empty() {
        return Err(Refusal::InvalidArgument("the text is empty".into()));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Refusal::InvalidArgument(format!(
            "the text is {} bytes long; at most {MAX_TEXT_BYTES} are allowed",
            text.len()
        )));
    }
    Ok(())
}

/// Checks a `Volume` value.
pub fn check_volume(volume: f64) -> Result<f64, Refusal> {
    if (0.0..=1.0).contains(&volume) {
        // -0.0 is in range, and would read back as "-0": adding 0.0 makes it 0.0.
        Ok(volume + 0.0)
    } else {
        Err(Refusal::InvalidArgument(format!(
            "Volume must be between 0.0 and 1.0, not {volume}"
        )))
    }
}

fn bus_name(bus: Bus) -> &'static str {
    match bus {
        Bus::System => "system",
        Bus::Session => "session",
    }
}

/// Connects to the bus, serves the object and owns [`NAME`].
pub async fn connect(bus: Bus, handle: &ControlHandle) -> anyhow::Result<Connection> {
    let which = bus_name(bus);
    let builder = match bus {
        Bus::System => zbus::connection::Builder::system(),
        Bus::Session => zbus::connection::Builder::session(),
    }
    .map_err(|e| anyhow::anyhow!("cannot reach the D-Bus {which} bus: {e}"))?;
    let voice = Documented(Voice {
        handle: handle.clone(),
    });
    let building = builder
        .serve_at(PATH, voice)
        .and_then(|b| b.name(NAME))
        .map_err(|e| anyhow::anyhow!("cannot set up the D-Bus object: {e}"))?
        .build();
    // A bus that accepts the connection but never answers must not hold up the start.
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, building)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the D-Bus {which} bus did not answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| match (&e, bus) {
            (
                zbus::Error::InputOutput(_)
                | zbus::Error::Handshake(_)
                | zbus::Error::Connection(..)
                | zbus::Error::Address(_),
                _,
            ) => {
                anyhow::anyhow!("cannot reach the D-Bus {which} bus: {e}")
            }
            (zbus::Error::NameTaken, _) => anyhow::anyhow!(
                "cannot own {NAME} on the D-Bus {which} bus: another process has it (is another realtime-voiced running?)"
            ),
            (_, Bus::System) => anyhow::anyhow!(
                "cannot own {NAME} on the D-Bus system bus: {e} (is the policy io.thrive.RealtimeVoice1.conf installed in /usr/share/dbus-1/system.d, and the daemon running as the user realtime-voiced?)"
            ),
            _ => anyhow::anyhow!("cannot own {NAME} on the D-Bus {which} bus: {e}"),
        })?;
    info!(bus = which, "D-Bus name {NAME} owned");
    providers::attach(&handle.provided, &connection);
    Ok(connection)
}

/// Keeps the D-Bus side going for the daemon's lifetime: announces property changes and
/// transcripts, and when the bus goes away reconnects with backoff. Returns when the daemon's
/// event loop is gone.
pub async fn serve(bus: Bus, handle: ControlHandle, first: Connection) {
    let mut connection = Some(first);
    let mut delay = Duration::from_millis(200);
    let mut failures = 0u32;
    loop {
        if let Some(conn) = connection.take() {
            match publish(&conn, &handle).await {
                Ended::DaemonGone => return,
                Ended::BusLost(why) => {
                    warn!("lost the D-Bus {} bus ({why}); reconnecting", bus_name(bus));
                    // The programs that offered tools were on that bus too.
                    handle.provided.set_caller(None);
                    handle.provided.clear();
                }
            }
            delay = Duration::from_millis(200);
            failures = 0;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = handle.commands.closed() => return,
        }
        match connect(bus, &handle).await {
            Ok(conn) => connection = Some(conn),
            Err(e) => {
                // Said once per outage; the retries after it would only fill the journal.
                if failures == 0 {
                    warn!("{e:#}; retrying");
                } else {
                    debug!("{e:#}");
                }
                failures = failures.saturating_add(1);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

enum Ended {
    DaemonGone,
    BusLost(String),
}

/// What changed between two snapshots, as PropertiesChanged entries.
pub fn changed_properties(old: &Snapshot, new: &Snapshot) -> HashMap<&'static str, Value<'static>> {
    let mut changed = HashMap::new();
    if old.state != new.state {
        changed.insert("State", Value::from(new.state.as_str()));
    }
    if old.transport != new.transport {
        changed.insert("Transport", Value::from(new.transport.to_string()));
    }
    if old.last_error != new.last_error {
        changed.insert("LastError", Value::from(new.last_error.clone()));
    }
    if old.muted != new.muted {
        changed.insert("Muted", Value::from(new.muted));
    }
    if old.volume != new.volume {
        changed.insert("Volume", Value::from(new.volume));
    }
    if old.stats != new.stats || old.audio != new.audio || old.link != new.link {
        changed.insert(
            "Stats",
            Value::from(stats_dict(&new.stats, &new.audio, &new.link)),
        );
    }
    changed
}

async fn publish(conn: &Connection, handle: &ControlHandle) -> Ended {
    let emitter = match SignalEmitter::new(conn, PATH) {
        Ok(e) => e,
        Err(e) => return Ended::BusLost(e.to_string()),
    };
    let iface = InterfaceName::from_static_str_unchecked(NAME);
    let mut snapshot = handle.snapshot.clone();
    let mut last = snapshot.borrow_and_update().clone();
    let mut transcripts = handle.transcripts.subscribe();
    let mut provided = handle.provided.subscribe();
    let departures = match providers::departures(conn).await {
        Ok(stream) => stream,
        Err(e) => return Ended::BusLost(format!("cannot follow who leaves the bus: {e}")),
    };
    let mut departures = std::pin::pin!(departures);
    // Every message comes through here too; the stream ends when the connection does.
    let mut messages = MessageStream::from(conn);
    loop {
        tokio::select! {
            changed = snapshot.changed() => {
                if changed.is_err() {
                    return Ended::DaemonGone;
                }
                let now = snapshot.borrow_and_update().clone();
                let changed = changed_properties(&last, &now);
                last = now;
                if changed.is_empty() {
                    continue;
                }
                if let Err(e) = fdo::Properties::properties_changed(
                    &emitter, iface.clone(), changed, Cow::Borrowed(&[]),
                ).await {
                    return Ended::BusLost(e.to_string());
                }
            }
            Some(name) = departures.next() => providers::departed(&handle.provided, &name),
            Ok(()) = provided.changed() => {
                let tools = Value::from(handle.provided.listing());
                let changed = HashMap::from([("Tools", tools)]);
                if let Err(e) = fdo::Properties::properties_changed(
                    &emitter, iface.clone(), changed, Cow::Borrowed(&[]),
                ).await {
                    return Ended::BusLost(e.to_string());
                }
            }
            line = transcripts.recv() => match line {
                Ok(t) => {
                    if let Err(e) = Voice::transcript(&emitter, t.role.as_str(), &t.text).await {
                        return Ended::BusLost(e.to_string());
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!("{n} transcript lines were not sent on D-Bus (too many at once)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ended::DaemonGone,
            },
            message = messages.next() => match message {
                None => return Ended::BusLost("connection closed".into()),
                Some(Err(e)) => return Ended::BusLost(e.to_string()),
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioStats;
    use crate::config::TransportKind;
    use crate::session::State;
    use crate::session::Stats;

    #[test]
    fn stats_carry_the_audio_counters_and_a_missing_device() {
        let audio = AudioStats {
            capture_xruns: 2,
            playback_underruns: 5,
            device_problem: Some("cannot open capture device `hw:1`".into()),
            ..AudioStats::default()
        };
        let link = crate::transport::LinkCounts {
            packets_lost: 3,
            uplink_packets_lost: 4,
        };
        let d = stats_dict(&Stats::default(), &audio, &link);
        assert_eq!(u64::try_from(&d["packets_lost"]).ok(), Some(3));
        assert_eq!(u64::try_from(&d["uplink_packets_lost"]).ok(), Some(4));
        assert_eq!(u64::try_from(&d["capture_xruns"]).ok(), Some(2));
        assert_eq!(u64::try_from(&d["playback_underruns"]).ok(), Some(5));
        assert_eq!(
            <&str>::try_from(&d["audio_device_problem"]).ok(),
            Some("cannot open capture device `hw:1`")
        );
        let healthy = stats_dict(
            &Stats::default(),
            &AudioStats::default(),
            &Default::default(),
        );
        assert!(!healthy.contains_key("audio_device_problem"));
        // Delays appear once measured.
        assert!(!healthy.contains_key("mic_to_wire_ms"));
        let measured = AudioStats {
            mic_to_wire: crate::audio::latency::Delays {
                median_ms: Some(21),
                p95_ms: Some(24),
            },
            ..AudioStats::default()
        };
        let d = stats_dict(&Stats::default(), &measured, &Default::default());
        assert_eq!(u64::try_from(&d["mic_to_wire_ms"]).ok(), Some(21));
        assert_eq!(u64::try_from(&d["mic_to_wire_p95_ms"]).ok(), Some(24));
        assert!(!d.contains_key("wire_to_speaker_ms"));
    }

    #[test]
    fn text_is_checked() {
        assert!(check_text("hello").is_ok());
        assert!(matches!(check_text("  "), Err(Refusal::InvalidArgument(_))));
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(matches!(
            check_text(&long),
            Err(Refusal::InvalidArgument(_))
        ));
        assert!(check_text(&"x".repeat(MAX_TEXT_BYTES)).is_ok());
    }

    #[test]
    fn volume_is_checked() {
        assert_eq!(check_volume(0.5), Ok(0.5));
        assert!(check_volume(1.01).is_err());
        assert!(check_volume(-0.1).is_err());
        assert!(check_volume(f64::NAN).is_err());
        let zero = check_volume(-0.0).expect("in range");
        assert!(zero.is_sign_positive(), "-0.0 is stored as 0.0");
    }

    #[test]
    fn calls_must_carry_the_introspected_arguments() {
        use super::introspection::wrong_arguments;
        assert!(wrong_arguments("Start", "").is_none());
        assert!(wrong_arguments("SendText", "s").is_none());
        assert!(wrong_arguments("RegisterTool", "sss").is_none());
        assert!(wrong_arguments("RegisterTool", "ss").is_some());
        assert!(wrong_arguments("UnregisterTool", "").is_some());
        for (method, signature) in [
            ("Start", "s"),
            ("Stop", "u"),
            ("Status", "u"),
            ("SendText", ""),
        ] {
            assert!(
                matches!(
                    wrong_arguments(method, signature),
                    Some(fdo::Error::InvalidArgs(_))
                ),
                "{method}({signature})"
            );
        }
    }

    #[test]
    fn every_member_is_documented() {
        let xml = r#"<interface name="io.thrive.RealtimeVoice1">
  <method name="Start">
  </method>
  <property name="Volume" type="d" access="readwrite"/>
  <signal name="Transcript">
    <arg name="role" type="s"/>
  </signal>
</interface>
"#;
        let out = annotate(xml);
        assert_eq!(out.matches("org.gtk.GDBus.DocString").count(), 4, "{out}");
        assert!(out.contains(
            "<property name=\"Volume\" type=\"d\" access=\"readwrite\">\n    <annotation"
        ));
        assert!(out.contains("</property>"));
    }

    #[test]
    fn only_changes_are_announced() {
        let a = Snapshot::new(TransportKind::Webrtc, 0.5);
        let mut b = a.clone();
        assert!(changed_properties(&a, &b).is_empty());
        b.state = State::Connecting;
        b.volume = 0.7;
        let c = changed_properties(&a, &b);
        let mut keys: Vec<_> = c.keys().copied().collect();
        keys.sort_unstable();
        assert_eq!(keys, ["State", "Volume"]);
    }

    #[test]
    fn status_has_every_key() {
        let s = Snapshot::new(TransportKind::Websocket, 0.8);
        let d = status_dict(&s);
        for key in [
            "state",
            "transport",
            "session_id",
            "since_usec",
            "last_error",
            "muted",
            "volume",
            "sessions",
            "reconnects",
            "tokens_used",
            "responses",
            "responses_failed",
            "transcription_failures",
            "audio_device_losses",
        ] {
            assert!(d.contains_key(key), "{key}");
        }
    }
}
