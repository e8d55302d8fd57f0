//! The D-Bus interface `io.thrive.RealtimeVoice1` (see `docs/dbus.md`).
//!
//! Methods turn into [`Command`]s; properties are read from the daemon's [`Snapshot`] and their
//! changes are announced by following the snapshot watch, so a change made by the button shows on
//! the bus exactly like one made over D-Bus. Losing the bus (a dbus-daemon restart) does not stop
//! the daemon: [`serve`] reconnects with backoff and takes its name again.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use futures_util::StreamExt;
use tracing::{debug, info, warn};
use zbus::message::Header;
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult2, Interface, SignalEmitter};
use zbus::zvariant::{OwnedValue, Value};
use zbus::{fdo, interface, Connection, Message, MessageStream, ObjectServer};

use crate::audio::AudioStats;
use crate::config::Bus;
use crate::control::{Command, ControlHandle, Refusal, Snapshot};
use crate::session::Stats;

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
        Ok(volume)
    } else {
        Err(Refusal::InvalidArgument(format!(
            "Volume must be between 0.0 and 1.0, not {volume}"
        )))
    }
}

fn owned(value: Value<'_>) -> OwnedValue {
    // Only values holding file descriptors can fail to be owned; none of ours do.
    value
        .try_to_owned()
        .unwrap_or_else(|_| OwnedValue::from(0u8))
}

/// The `Stats` dictionary; times not yet measured are left out.
pub fn stats_dict(
    stats: &Stats,
    audio: &AudioStats,
    packets_lost: u64,
) -> HashMap<String, OwnedValue> {
    let mut d = HashMap::new();
    d.insert("packets_lost".into(), OwnedValue::from(packets_lost));
    d.insert(
        "capture_xruns".into(),
        OwnedValue::from(audio.capture_xruns),
    );
    d.insert(
        "playback_xruns".into(),
        OwnedValue::from(audio.playback_xruns),
    );
    d.insert(
        "playback_underruns".into(),
        OwnedValue::from(audio.playback_underruns),
    );
    d.insert(
        "capture_dropped".into(),
        OwnedValue::from(audio.capture_dropped),
    );
    d.insert(
        "playback_dropped".into(),
        OwnedValue::from(audio.playback_dropped),
    );
    if let Some(problem) = &audio.device_problem {
        d.insert(
            "audio_device_problem".into(),
            owned(Value::from(problem.as_str())),
        );
    }
    d.insert("sessions".into(), OwnedValue::from(stats.sessions));
    d.insert("reconnects".into(), OwnedValue::from(stats.reconnects));
    if let Some(ms) = stats.last_connect_ms {
        d.insert("last_connect_ms".into(), OwnedValue::from(ms));
    }
    if let Some(ms) = stats.time_to_first_audio_ms {
        d.insert("time_to_first_audio_ms".into(), OwnedValue::from(ms));
    }
    d.insert("tokens_used".into(), OwnedValue::from(stats.tokens_used));
    d.insert("input_tokens".into(), OwnedValue::from(stats.input_tokens));
    d.insert(
        "output_tokens".into(),
        OwnedValue::from(stats.output_tokens),
    );
    d.insert("responses".into(), OwnedValue::from(stats.responses));
    d
}

/// What `Status()` returns: the properties and the stats in one dictionary.
pub fn status_dict(s: &Snapshot) -> HashMap<String, OwnedValue> {
    let mut d = stats_dict(&s.stats, &s.audio, s.packets_lost);
    let since_usec = s
        .since
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    d.insert("state".into(), owned(Value::from(s.state.as_str())));
    d.insert(
        "transport".into(),
        owned(Value::from(s.transport.to_string())),
    );
    d.insert(
        "session_id".into(),
        owned(Value::from(s.session_id.as_str())),
    );
    d.insert("since_usec".into(), OwnedValue::from(since_usec));
    d.insert(
        "last_error".into(),
        owned(Value::from(s.last_error.as_str())),
    );
    d.insert("muted".into(), OwnedValue::from(s.muted));
    d.insert("volume".into(), OwnedValue::from(s.volume));
    d
}

/// The interface as zbus dispatches it. Wrapped in [`Documented`] before it is served.
pub struct Voice {
    handle: ControlHandle,
}

impl Voice {
    fn snapshot(&self) -> Snapshot {
        self.handle.snapshot.borrow().clone()
    }

    /// Applies a property change and returns once the event loop has taken it, so that a `Get`
    /// right after the `Set` sees the new value.
    async fn apply(&self, command: Command) -> Result<(), Refusal> {
        self.handle
            .commands
            .send(command)
            .await
            .map_err(|_| Refusal::Failed("the daemon is shutting down".into()))?;
        self.handle.request(Command::Ping).await
    }
}

fn fdo_error(r: Refusal) -> fdo::Error {
    match r {
        Refusal::InvalidArgument(m) => fdo::Error::InvalidArgs(m),
        other => fdo::Error::Failed(other.to_string()),
    }
}

#[interface(name = "io.thrive.RealtimeVoice1", introspection_docs = false)]
impl Voice {
    async fn start(&self) -> Result<(), Error> {
        Ok(self.handle.request(Command::Start).await?)
    }

    async fn stop(&self) -> Result<(), Error> {
        Ok(self.handle.request(Command::Stop).await?)
    }

    async fn toggle(&self) -> Result<(), Error> {
        Ok(self.handle.request(Command::Toggle).await?)
    }

    async fn send_text(&self, text: String) -> Result<(), Error> {
        check_text(&text)?;
        Ok(self
            .handle
            .request(|reply| Command::SendText(text, reply))
            .await?)
    }

    async fn clear_memory(&self) -> Result<(), Error> {
        Ok(self.handle.request(Command::ClearMemory).await?)
    }

    #[zbus(out_args("status"))]
    async fn status(&self) -> HashMap<String, OwnedValue> {
        status_dict(&self.snapshot())
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.handle.snapshot.borrow().state.as_str().to_owned()
    }

    #[zbus(property)]
    fn transport(&self) -> String {
        self.handle.snapshot.borrow().transport.to_string()
    }

    #[zbus(property)]
    fn last_error(&self) -> String {
        self.handle.snapshot.borrow().last_error.clone()
    }

    #[zbus(property)]
    fn muted(&self) -> bool {
        self.handle.snapshot.borrow().muted
    }

    // Never called: `Documented::set` handles the writable properties so that the change is
    // announced once, by the snapshot watch. Kept so the introspection says `readwrite`.
    #[zbus(property)]
    async fn set_muted(&self, muted: bool) -> fdo::Result<()> {
        self.apply(Command::SetMuted(muted))
            .await
            .map_err(fdo_error)
    }

    #[zbus(property)]
    fn volume(&self) -> f64 {
        self.handle.snapshot.borrow().volume
    }

    #[zbus(property)]
    async fn set_volume(&self, volume: f64) -> fdo::Result<()> {
        let volume = check_volume(volume).map_err(fdo_error)?;
        self.apply(Command::SetVolume(volume))
            .await
            .map_err(fdo_error)
    }

    #[zbus(property)]
    fn stats(&self) -> HashMap<String, OwnedValue> {
        let s = self.handle.snapshot.borrow();
        stats_dict(&s.stats, &s.audio, s.packets_lost)
    }

    #[zbus(signal)]
    async fn transcript(emitter: &SignalEmitter<'_>, role: &str, text: &str) -> zbus::Result<()>;
}

/// `org.gtk.GDBus.DocString` texts, shown by `gdbus introspect` and D-Bus browsers.
const DOCS: &[(&str, &str)] = &[
    ("interface", "Voice assistant on this device, talking to the OpenAI Realtime API."),
    ("Start", "Start a conversation (does nothing if one is running)."),
    ("Stop", "End the conversation. NotActive if none is running."),
    ("Toggle", "Start a conversation, or end the one running (the button's short press)."),
    ("SendText", "Say something to the assistant as text, at most 4096 bytes; it answers aloud. NotActive unless listening or speaking."),
    ("ClearMemory", "Forget the turns remembered on the device (session.memory = \"on\"); nothing to do when memory is off."),
    ("Status", "Everything at once: state, transport, session_id, since_usec, last_error, muted, volume and the Stats entries."),
    ("State", "idle, connecting, listening, speaking, reconnecting or error."),
    ("Transport", "webrtc or websocket: the one in use or being tried."),
    ("LastError", "Why the last conversation failed; empty if it did not."),
    ("Muted", "The microphone is muted (writable; a long press of the button mutes)."),
    ("Volume", "Playback volume from 0.0 to 1.0 (writable)."),
    ("Stats", "Counters since start: sessions, reconnects, last_connect_ms, time_to_first_audio_ms, tokens_used, input_tokens, output_tokens, responses, packets_lost, capture_xruns, playback_xruns, playback_underruns, capture_dropped, playback_dropped, and audio_device_problem while a sound device is missing."),
    ("Transcript", "A final transcript line: role is user or assistant."),
];

fn doc_for(name: &str) -> Option<&'static str> {
    DOCS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Adds a DocString annotation to the interface and to each member of zbus's introspection XML.
pub fn annotate(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len() * 2);
    for line in xml.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let t = line.trim();
        let element = ["interface", "method", "signal", "property"]
            .into_iter()
            .find(|e| t.starts_with(&format!("<{e} name=\"")));
        let Some(element) = element else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let name = t
            .split('"')
            .nth(1)
            .map(|n| {
                if element == "interface" {
                    "interface"
                } else {
                    n
                }
            })
            .unwrap_or_default();
        let Some(doc) = doc_for(name) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let annotation = format!(
            "{indent}  <annotation name=\"org.gtk.GDBus.DocString\" value=\"{}\"/>\n",
            xml_escape(doc)
        );
        if let Some(open) = t.strip_suffix("/>") {
            let _ = writeln!(out, "{indent}{}>", open.trim_end());
            out.push_str(&annotation);
            let _ = writeln!(out, "{indent}</{element}>");
        } else {
            out.push_str(line);
            out.push('\n');
            out.push_str(&annotation);
        }
    }
    out
}

/// [`Voice`] with documented introspection and writable properties announced by the watch.
pub struct Documented(Voice);

#[zbus::export::async_trait::async_trait]
impl Interface for Documented {
    fn name() -> InterfaceName<'static> {
        <Voice as Interface>::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        self.0.spawn_tasks_for_methods()
    }

    async fn get(
        &self,
        property_name: &str,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<OwnedValue>> {
        self.0
            .get(property_name, server, connection, header, emitter)
            .await
    }

    async fn get_all(
        &self,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<HashMap<String, OwnedValue>> {
        self.0.get_all(server, connection, header, emitter).await
    }

    fn set<'call>(
        &'call self,
        property_name: &'call str,
        value: &'call Value<'_>,
        server: &'call ObjectServer,
        connection: &'call Connection,
        header: Option<&'call Header<'_>>,
        emitter: &'call SignalEmitter<'_>,
    ) -> DispatchResult2<'call> {
        let command = match (property_name, value) {
            ("Muted", Value::Bool(muted)) => Ok(Command::SetMuted(*muted)),
            ("Muted", other) => Err(fdo::Error::InvalidArgs(format!(
                "Muted is a boolean (b), not {}",
                other.value_signature()
            ))),
            ("Volume", Value::F64(volume)) => check_volume(*volume)
                .map(Command::SetVolume)
                .map_err(fdo_error),
            ("Volume", other) => Err(fdo::Error::InvalidArgs(format!(
                "Volume is a double (d) from 0.0 to 1.0, not {}",
                other.value_signature()
            ))),
            _ => {
                return self
                    .0
                    .set(property_name, value, server, connection, header, emitter)
            }
        };
        DispatchResult2::Async(Box::pin(async move {
            self.0.apply(command?).await.map_err(fdo_error)
        }))
    }

    async fn set_mut(
        &mut self,
        property_name: &str,
        value: &Value<'_>,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<()>> {
        self.0
            .set_mut(property_name, value, server, connection, header, emitter)
            .await
    }

    fn call<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        self.0.call(server, connection, msg, name)
    }

    fn call_mut<'call>(
        &'call mut self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        self.0.call_mut(server, connection, msg, name)
    }

    fn introspect_to_writer(&self, writer: &mut dyn std::fmt::Write, level: usize) {
        let mut plain = String::new();
        self.0.introspect_to_writer(&mut plain, level);
        let _ = writer.write_str(&annotate(&plain));
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
                    warn!("lost the D-Bus {} bus ({why}); reconnecting", bus_name(bus))
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
    if old.stats != new.stats || old.audio != new.audio || old.packets_lost != new.packets_lost {
        changed.insert(
            "Stats",
            Value::from(stats_dict(&new.stats, &new.audio, new.packets_lost)),
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
    use crate::config::TransportKind;
    use crate::session::State;

    #[test]
    fn stats_carry_the_audio_counters_and_a_missing_device() {
        let audio = AudioStats {
            capture_xruns: 2,
            playback_underruns: 5,
            device_problem: Some("cannot open capture device `hw:1`".into()),
            ..AudioStats::default()
        };
        let d = stats_dict(&Stats::default(), &audio, 3);
        assert_eq!(u64::try_from(&d["packets_lost"]).ok(), Some(3));
        assert_eq!(u64::try_from(&d["capture_xruns"]).ok(), Some(2));
        assert_eq!(u64::try_from(&d["playback_underruns"]).ok(), Some(5));
        assert_eq!(
            <&str>::try_from(&d["audio_device_problem"]).ok(),
            Some("cannot open capture device `hw:1`")
        );
        let healthy = stats_dict(&Stats::default(), &AudioStats::default(), 0);
        assert!(!healthy.contains_key("audio_device_problem"));
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
        ] {
            assert!(d.contains_key(key), "{key}");
        }
    }
}
