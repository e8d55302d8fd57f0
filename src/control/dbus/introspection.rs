//! The introspection text: zbus's XML with a doc annotation on every member, so that
//! `busctl introspect` and `gdbus introspect` tell a user what each member does.

use std::collections::HashMap;
use std::fmt::Write as _;

use zbus::message::Header;
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult2, Interface, SignalEmitter};
use zbus::zvariant::{OwnedValue, Value};
use zbus::{fdo, Connection, Message, ObjectServer};

use crate::control::Command;

use super::interface::{fdo_error, Voice};
use super::*;

/// `org.gtk.GDBus.DocString` texts, shown by `gdbus introspect` and D-Bus browsers.
pub(super) const DOCS: &[(&str, &str)] = &[
    ("interface", "Voice assistant on this device, talking to the OpenAI Realtime API."),
    ("Start", "Start a conversation (does nothing if one is running)."),
    ("Stop", "End the conversation. NotActive if none is running."),
    ("Toggle", "Start a conversation, or end the one running (the button's short press)."),
    ("SendText", "Say something to the assistant as text, at most 4096 bytes; it answers aloud. NotActive unless listening or speaking."),
    ("RegisterTool", "Offer a tool to the assistant: name (1 to 64 letters, digits, _ or -), description (at most 1024 bytes), parameters_json (a JSON schema object with \"type\": \"object\", at most 16 KiB). Calls come back to io.thrive.RealtimeVoice1.ToolProvider.Call at /io/thrive/RealtimeVoice1/ToolProvider on the registering connection; the tool goes when it leaves the bus. At most 8 per connection, 32 in all."),
    ("UnregisterTool", "Withdraw a tool this connection registered."),
    ("Tools", "The tools the assistant may call: (name, description, source), source being config or the offering connection's unique bus name."),
    ("ClearMemory", "Forget the turns remembered on the device (session.memory = \"on\"); nothing to do when memory is off."),
    ("ListDevices", "The sound devices ALSA offers, one dictionary each: name (what audio.capture_device or audio.playback_device takes), description, direction (capture, playback or both), card, configured (capture, playback, both or empty) and in_use_by (the processes holding the card's device, as \"pid 812 (arecord)\")."),
    ("TestSpeaker", "Play a one-second 440 Hz tone through the configured speaker at the current volume; returns its length in ms."),
    ("CheckEcho", "Play a two-second chirp and record it through the microphone: returns delay_ms (speaker to microphone), played_dbfs, echo_dbfs, removed_db (what the echo canceller removes), clipped, ok and verdict (what to do, or fine). Also logged. Refused while a conversation runs."),
    ("Status", "Everything at once: state, transport, session_id, since_usec, last_error, muted, volume and the Stats entries."),
    ("State", "idle, connecting, listening, speaking, reconnecting or error."),
    ("Transport", "webrtc or websocket: the one in use or being tried."),
    ("LastError", "Why the last conversation failed; empty if it did not."),
    ("Muted", "The microphone is muted (writable; a long press of the button mutes)."),
    ("Volume", "Playback volume from 0.0 to 1.0 (writable)."),
    ("Stats", "Counters since start: sessions, reconnects, last_connect_ms, time_to_first_audio_ms (at the speaker), median_first_audio_ms, median_connect_ms, tools_ms, median_tools_ms, time_to_silence_ms (local barge-in: the user's voice to the speaker silent), median_time_to_silence_ms, tokens_used, input_tokens, output_tokens, responses, responses_failed, transcription_failures, voice_ms, local_barge_ins, packets_lost, uplink_packets_lost (the microphone's, as the service reports them), capture_xruns, playback_xruns, playback_underruns, capture_dropped, playback_dropped, playback_shed_ms, audio_device_losses, mic_to_wire_ms and wire_to_speaker_ms (the delay the daemon adds each way, medians since start, with _p95_ms), and audio_device_problem while a sound device is missing."),
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
pub struct Documented(pub Voice);

/// Each method's arguments, as introspected. zbus would read a call's arguments and ignore
/// any extra ones (`Start(s)` acted as `Start()`); such a call is refused instead.
const SIGNATURES: &[(&str, &str)] = &[
    ("Start", ""),
    ("Stop", ""),
    ("Toggle", ""),
    ("SendText", "s"),
    ("RegisterTool", "sss"),
    ("UnregisterTool", "s"),
    ("ClearMemory", ""),
    ("Status", ""),
    ("ListDevices", ""),
    ("TestSpeaker", ""),
    ("CheckEcho", ""),
];

/// InvalidArgs for a call of `method` whose arguments are not the introspected ones.
pub(super) fn wrong_arguments(method: &str, signature: &str) -> Option<fdo::Error> {
    let (_, want) = SIGNATURES.iter().find(|(m, _)| *m == method)?;
    (signature != *want)
        .then(|| fdo::Error::InvalidArgs(format!("{method} takes ({want}), not ({signature})")))
}

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
            ("State" | "Transport" | "LastError" | "Stats" | "Tools", _) => Err(
                fdo::Error::PropertyReadOnly(format!("{property_name} is read-only")),
            ),
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
        if let Some(refusal) =
            wrong_arguments(name.as_str(), &msg.body().signature().to_string_no_parens())
        {
            return DispatchResult2::Async(Box::pin(async move { Err(refusal) }));
        }
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
