//! The interface's members as zbus serves them: methods become [`Command`]s, properties are
//! read from the daemon's [`Snapshot`], and the dictionaries `Status` and `Stats` return.

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use tracing::info;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{fdo, interface};

use crate::audio::devices::DeviceEntry;
use crate::audio::probe::EchoReport;
use crate::audio::AudioStats;
use crate::control::{selfcheck, Command, ControlHandle, Refusal, Snapshot};
use crate::session::Stats;
use crate::transport::LinkCounts;

use super::*;

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
    link: &LinkCounts,
) -> HashMap<String, OwnedValue> {
    // Counters are always present; a time not measured yet, or a healthy device, is left out.
    let counters = [
        ("packets_lost", link.packets_lost),
        ("uplink_packets_lost", link.uplink_packets_lost),
        ("capture_xruns", audio.capture_xruns),
        ("playback_xruns", audio.playback_xruns),
        ("playback_underruns", audio.playback_underruns),
        ("capture_dropped", audio.capture_dropped),
        ("playback_dropped", audio.playback_dropped),
        ("playback_shed_ms", audio.playback_shed_ms),
        ("audio_device_losses", audio.device_losses),
        ("local_barge_ins", audio.local_barge_ins),
        ("sessions", stats.sessions),
        ("reconnects", stats.reconnects),
        ("tokens_used", stats.tokens_used),
        ("input_tokens", stats.input_tokens),
        ("output_tokens", stats.output_tokens),
        ("responses", stats.responses),
        ("responses_failed", stats.responses_failed),
        ("transcription_failures", stats.transcription_failures),
        ("voice_ms", stats.voice_ms),
    ];
    let times = [
        ("last_connect_ms", stats.last_connect_ms),
        ("time_to_first_audio_ms", stats.time_to_first_audio_ms),
        ("median_first_audio_ms", stats.median_first_audio_ms),
        ("median_connect_ms", stats.median_connect_ms),
        ("tools_ms", stats.tools_ms),
        ("median_tools_ms", stats.median_tools_ms),
        ("time_to_silence_ms", stats.time_to_silence_ms),
        ("median_time_to_silence_ms", stats.median_time_to_silence_ms),
        ("mic_to_wire_ms", audio.mic_to_wire.median_ms.map(u64::from)),
        (
            "mic_to_wire_p95_ms",
            audio.mic_to_wire.p95_ms.map(u64::from),
        ),
        (
            "wire_to_speaker_ms",
            audio.wire_to_speaker.median_ms.map(u64::from),
        ),
        (
            "wire_to_speaker_p95_ms",
            audio.wire_to_speaker.p95_ms.map(u64::from),
        ),
    ];
    let mut d: HashMap<String, OwnedValue> = counters
        .into_iter()
        .chain(times.into_iter().filter_map(|(k, v)| Some((k, v?))))
        .map(|(k, v)| (k.to_owned(), OwnedValue::from(v)))
        .collect();
    if let Some(problem) = &audio.device_problem {
        d.insert(
            "audio_device_problem".into(),
            owned(Value::from(problem.as_str())),
        );
    }
    d
}

/// One entry of `ListDevices`.
pub fn device_dict(e: &DeviceEntry) -> HashMap<String, OwnedValue> {
    let mut d = HashMap::new();
    for (k, v) in [
        ("name", e.name.as_str()),
        ("description", e.description.as_str()),
        ("direction", e.direction),
        ("card", e.card.as_str()),
        ("configured", e.configured),
    ] {
        d.insert(k.to_owned(), owned(Value::from(v)));
    }
    d.insert("in_use_by".into(), owned(Value::from(e.in_use_by.clone())));
    d
}

/// What `CheckEcho` returns; a delay or a reduction not measured is left out.
pub fn echo_dict(r: &EchoReport) -> HashMap<String, OwnedValue> {
    let mut d: HashMap<String, OwnedValue> = [
        ("played_dbfs", Some(r.played_dbfs)),
        ("echo_dbfs", Some(r.echo_dbfs)),
        ("delay_ms", r.delay_ms),
        ("removed_db", r.removed_db),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), OwnedValue::from(v?))))
    .collect();
    d.insert("clipped".into(), OwnedValue::from(r.clipped));
    d.insert("ok".into(), OwnedValue::from(r.ok));
    d.insert("verdict".into(), owned(Value::from(r.verdict.as_str())));
    d
}

/// What `Status()` returns: the properties and the stats in one dictionary.
pub fn status_dict(s: &Snapshot) -> HashMap<String, OwnedValue> {
    let mut d = stats_dict(&s.stats, &s.audio, &s.link);
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
    pub(super) handle: ControlHandle,
}

impl Voice {
    pub(super) fn snapshot(&self) -> Snapshot {
        self.handle.snapshot.borrow().clone()
    }

    /// Applies a property change and returns once the event loop has taken it, so that a `Get`
    /// right after the `Set` sees the new value.
    pub(super) async fn apply(&self, command: Command) -> Result<(), Refusal> {
        self.handle
            .commands
            .send(command)
            .await
            .map_err(|_| Refusal::Failed("the daemon is shutting down".into()))?;
        self.handle.request(Command::Ping).await
    }
}

/// The calling connection's unique name: it owns what it registers.
fn caller(header: &Header<'_>) -> Result<String, Error> {
    header
        .sender()
        .map(|s| s.to_string())
        .ok_or_else(|| Error::Failed("the call carries no sender".into()))
}

pub(super) fn fdo_error(r: Refusal) -> fdo::Error {
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

    /// Offers a tool to the assistant on behalf of the calling connection (see `docs/dbus.md`).
    async fn register_tool(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        description: String,
        parameters_json: String,
    ) -> Result<(), Error> {
        let owner = caller(&header)?;
        self.handle
            .provided
            .register(&owner, &name, &description, &parameters_json)
            .map_err(Error::InvalidArgument)?;
        // A caller that left while this call waited was announced gone before its tool was
        // listed: look once more, so that no tool outlives its program.
        if !super::providers::still_connected(conn, &owner).await {
            self.handle.provided.drop_owner(&owner);
            return Err(Error::Failed("the caller left the bus".into()));
        }
        info!(tool = %name, owner, "a program offers a tool");
        Ok(())
    }

    async fn unregister_tool(
        &self,
        #[zbus(header)] header: Header<'_>,
        name: String,
    ) -> Result<(), Error> {
        let owner = caller(&header)?;
        self.handle
            .provided
            .unregister(&owner, &name)
            .map_err(Error::InvalidArgument)?;
        info!(tool = %name, owner, "a program withdrew a tool");
        Ok(())
    }

    #[zbus(out_args("devices"))]
    async fn list_devices(&self) -> Result<Vec<HashMap<String, OwnedValue>>, Error> {
        let list = selfcheck::list_devices(&self.handle).await?;
        Ok(list.iter().map(device_dict).collect())
    }

    #[zbus(out_args("duration_ms"))]
    async fn test_speaker(&self) -> Result<u32, Error> {
        Ok(selfcheck::test_speaker(&self.handle).await?)
    }

    #[zbus(out_args("result"))]
    async fn check_echo(&self) -> Result<HashMap<String, OwnedValue>, Error> {
        let report = selfcheck::check_echo(&self.handle).await?;
        Ok(echo_dict(&report))
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
    fn tools(&self) -> Vec<(String, String, String)> {
        self.handle.provided.listing()
    }

    #[zbus(property)]
    fn stats(&self) -> HashMap<String, OwnedValue> {
        let s = self.handle.snapshot.borrow();
        stats_dict(&s.stats, &s.audio, &s.link)
    }

    #[zbus(signal)]
    pub async fn transcript(
        emitter: &SignalEmitter<'_>,
        role: &str,
        text: &str,
    ) -> zbus::Result<()>;
}
