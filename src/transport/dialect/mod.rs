//! Wire dialects: how [`ClientEvent`]s become JSON text and JSON text becomes [`ServerEvent`]s.
//!
//! Transports move text and audio; the dialect alone knows the service's vocabulary and how a
//! session on it opens and closes. Two APIs speak through it: the Realtime API as it went GA
//! ([`RealtimeGa`]) and GPT-Live ([`Live`]). What the state machine must know beyond words
//! (who stops the assistant on barge-in, whether the session is configured as it opens) is in
//! `session::Rules`, not here.
//!
//! - `realtime.rs`: the Realtime API (GA); `realtime_wire.rs`: the shapes of its server events;
//! - `live.rs`: GPT-Live; `live_wire.rs`: the shapes of its server events;
//! - `event_ids.rs`: the ids on our events, so that an error can be tied to its cause.

mod event_ids;
mod live;
mod live_wire;
mod realtime;
mod realtime_wire;

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

use crate::provided::ProvidedTools;
use crate::session::{ClientEvent, ServerEvent};

pub use live::Live;
pub use realtime::RealtimeGa;

/// The sample rate of PCM audio carried inside WebSocket events.
pub const WS_PCM_RATE: u32 = 24_000;

/// One decoded server message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// Something the state machine acts on.
    Event(ServerEvent),
    /// Assistant audio, base64 PCM16 mono at [`WS_PCM_RATE`] (WebSocket only). The transport
    /// reports [`ServerEvent::AudioStarted`] for the first delta of each item: the dialect keeps
    /// no state.
    AudioDelta {
        item_id: Option<Cow<'a, str>>,
        base64: Cow<'a, str>,
    },
    /// A well-formed event the daemon has no use for (its type).
    Ignored(Cow<'a, str>),
    /// Not JSON, or an event whose fields do not parse: why, in one line.
    Malformed(String),
}

/// Translates between the daemon's events and one API's JSON, and says how a session on that
/// API opens and closes: the two APIs differ there as much as in their words.
pub trait Dialect: Send + Sync {
    // -- Vocabulary --

    /// The JSON messages that carry a client event: usually one; none when this API has no
    /// such thing (GPT-Live has no truncate or cancel); several when one message would be over
    /// the API's size limit.
    fn encode(&self, event: &ClientEvent) -> Vec<String>;

    /// Parses one server message. Never fails: bad input becomes [`Decoded::Malformed`].
    fn decode<'a>(&self, text: &'a str) -> Decoded<'a>;

    /// Writes the JSON text of an event appending PCM16 mono at [`WS_PCM_RATE`] to the input
    /// (WebSocket). `out` is cleared first; callers reuse it so the hot path does not
    /// allocate once it has grown.
    fn encode_audio_append(&self, pcm: &[i16], scratch: &mut Vec<u8>, out: &mut String);

    // -- Opening and closing --

    /// The WebSocket URL for `api.base_url`.
    fn websocket_url(&self, base_url: &str) -> Result<url::Url, String>;

    /// The first message on a new WebSocket, when the API wants one before anything else
    /// (GPT-Live's `session.start`).
    fn websocket_start(&self) -> Option<String>;

    /// The HTTP request that carries our SDP offer.
    fn call_request(&self, offer: &str) -> CallRequest;

    /// The SDP answer and the call's id from the service's reply to [`Dialect::call_request`];
    /// why not, in one line.
    fn call_answer(&self, reply: &CallReply) -> Result<(String, Option<String>), String>;

    /// The path (under `api.base_url`) that hangs up a call, if the API has one.
    fn hangup_path(&self, call_id: &str) -> Option<String>;

    /// The link is up only once the service has confirmed the session (GPT-Live's
    /// `session.started`, which must come before any audio or command).
    fn awaits_start(&self) -> bool;

    /// A goodbye to send before closing (GPT-Live's `session.close`).
    fn closing(&self) -> Option<String>;

    /// The service says when its audio starts and stops (Realtime's `output_audio_buffer.*`
    /// and audio `done`); otherwise the link tells from the audio itself.
    fn reports_playout(&self) -> bool;
}

/// What a WebRTC offer is POSTed as.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRequest {
    /// Under `api.base_url`, e.g. `realtime/calls`.
    pub path: String,
    pub content_type: &'static str,
    pub body: String,
}

/// The service's successful reply to a [`CallRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct CallReply {
    /// The MIME type, lower case, without parameters.
    pub content_type: String,
    pub location: Option<String>,
    pub body: String,
}

/// `Location: /v1/realtime/calls/rtc_123` → `rtc_123`; the same check for any id the service
/// gives us: only characters safe in a URL path.
pub fn checked_id(id: &str) -> Option<String> {
    let valid = !id.is_empty()
        && id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    valid.then(|| id.to_owned())
}

/// `https://host/v1` → `wss://host/v1/<path>` (`http` gives `ws`, for the simulator).
pub fn websocket_base(base_url: &str, path: &str) -> Result<url::Url, String> {
    let mut url =
        url::Url::parse(base_url).map_err(|e| format!("api.base_url is not a URL: {e}"))?;
    let scheme = match url.scheme() {
        "https" => "wss",
        "http" => "ws",
        other => return Err(format!("api.base_url: unsupported scheme `{other}`")),
    };
    url.set_scheme(scheme)
        .map_err(|()| "api.base_url: cannot switch to a WebSocket scheme".to_owned())?;
    let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_query(None);
    Ok(url)
}

/// The dialect of the configured protocol, offering the configured tools and `provided`.
pub fn for_config(
    config: std::sync::Arc<crate::config::Config>,
    transport: crate::config::TransportKind,
    provided: std::sync::Arc<ProvidedTools>,
) -> std::sync::Arc<dyn Dialect> {
    match config.api.protocol {
        crate::config::Protocol::Realtime => {
            std::sync::Arc::new(RealtimeGa::new(config, transport).with_provided(provided))
        }
        crate::config::Protocol::Live => {
            std::sync::Arc::new(Live::new(config, transport).with_provided(provided))
        }
    }
}

/// The `tools` of a session: the configured ones, then those programs offer (as they are when
/// the session object is built). Empty when the capability `tools` is off.
pub fn function_tools(config: &crate::config::Config, provided: &ProvidedTools) -> Vec<Value> {
    let s = &config.session;
    if !s.has(crate::config::Capability::Tools) {
        return Vec::new();
    }
    let function = |name: &str, description: &str, parameters: &Value| {
        serde_json::json!({
            "type": "function",
            "name": name,
            "description": description,
            "parameters": parameters,
        })
    };
    s.tools
        .iter()
        .map(|t| function(&t.name, &t.description, &t.parameters))
        .chain(
            provided
                .offered()
                .iter()
                .map(|t| function(&t.name, &t.description, &t.parameters)),
        )
        .collect()
}

/// Reads a message's `type`, then hands it to `typed`; `Ok(None)` from it means a type the
/// daemon does not act on. What both dialects' `decode` do around their own vocabulary.
fn decode_by_type<'a>(
    text: &'a str,
    typed: impl FnOnce(&str, &'a str) -> Result<Option<Decoded<'a>>, serde_json::Error>,
) -> Decoded<'a> {
    let envelope: realtime_wire::Envelope<'a> = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => return Decoded::Malformed(format!("not a JSON event: {e}")),
    };
    let kind = envelope.kind;
    match typed(&kind, text) {
        Ok(Some(decoded)) => decoded,
        Ok(None) => {
            tracing::debug!(event = %kind, "ignoring server event");
            Decoded::Ignored(kind)
        }
        Err(e) => Decoded::Malformed(format!("bad `{kind}` event: {e}")),
    }
}

/// Writes `{"type": kind, "event_id": …, "audio": base64 PCM16}` into `out` without allocating
/// once `scratch` and `out` have grown: the 40 ms audio event of either API.
fn write_audio_event(
    kind: &str,
    ids: &event_ids::EventIds,
    pcm: &[i16],
    scratch: &mut Vec<u8>,
    out: &mut String,
) {
    use base64::Engine as _;
    scratch.clear();
    for s in pcm {
        scratch.extend_from_slice(&s.to_le_bytes());
    }
    out.clear();
    out.push_str(r#"{"type":""#);
    out.push_str(kind);
    out.push_str(r#"","event_id":""#);
    ids.write_append(out);
    out.push_str(r#"","audio":""#);
    base64::engine::general_purpose::STANDARD.encode_string(scratch.as_slice(), out);
    out.push_str(r#""}"#);
}

/// Writes a short, single-line excerpt of a message for logs (it may hold a transcript, so only
/// the start, and never the whole of a huge payload).
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(120) {
        let _ = if c.is_control() {
            write!(out, " ")
        } else {
            write!(out, "{c}")
        };
    }
    if text.len() > out.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::config::{Capability, Config, Protocol, TransportKind};

    const SCHEMA: &str = r#"{"type":"object","properties":{"on":{"type":"boolean"}}}"#;

    fn names(tools: &Value) -> Vec<&str> {
        tools
            .as_array()
            .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default()
    }

    fn sent(d: &dyn Dialect, event: &ClientEvent) -> Vec<Value> {
        d.encode(event)
            .iter()
            .map(|t| serde_json::from_str(t).expect("JSON"))
            .collect()
    }

    #[test]
    fn offered_tools_join_the_realtime_session_and_a_change_updates_only_the_tools() {
        let provided = Arc::new(ProvidedTools::default());
        let config = Arc::new(Config::default());
        let d = for_config(config, TransportKind::Websocket, Arc::clone(&provided));
        let first = &sent(d.as_ref(), &ClientEvent::SessionUpdate)[0];
        assert!(first["session"].get("tools").is_none(), "{first}");

        provided
            .register(":1.4", "lamp", "The hall lamp", SCHEMA)
            .unwrap();
        let full = &sent(d.as_ref(), &ClientEvent::SessionUpdate)[0];
        assert_eq!(names(&full["session"]["tools"]), ["lamp"]);
        assert_eq!(
            full["session"]["tools"][0]["parameters"]["properties"]["on"]["type"],
            "boolean"
        );
        let update = &sent(d.as_ref(), &ClientEvent::ToolsUpdate)[0];
        assert_eq!(update["type"], "session.update");
        assert_eq!(update["session"]["type"], "realtime");
        assert_eq!(names(&update["session"]["tools"]), ["lamp"]);
        assert_eq!(update["session"]["tool_choice"], "auto");
        assert!(
            update["session"].get("audio").is_none(),
            "only the tools: {update}"
        );

        provided.drop_owner(":1.4");
        let update = &sent(d.as_ref(), &ClientEvent::ToolsUpdate)[0];
        assert_eq!(update["session"]["tools"], json!([]), "withdrawn: {update}");
    }

    #[test]
    fn no_tools_capability_no_offered_tools() {
        let provided = Arc::new(ProvidedTools::default());
        provided.register(":1.4", "lamp", "", SCHEMA).unwrap();
        let mut c = Config::default();
        c.session.capabilities = vec![Capability::Audio];
        let d = for_config(Arc::new(c), TransportKind::Websocket, provided);
        let full = &sent(d.as_ref(), &ClientEvent::SessionUpdate)[0];
        assert!(full["session"].get("tools").is_none(), "{full}");
        assert!(sent(d.as_ref(), &ClientEvent::ToolsUpdate).is_empty());
    }

    #[test]
    fn gpt_live_hands_offered_tools_to_its_responses_model_at_the_start() {
        let provided = Arc::new(ProvidedTools::default());
        let mut c = Config::default();
        c.api.protocol = Protocol::Live;
        let c = Arc::new(c);
        let live = Live::new(Arc::clone(&c), TransportKind::Websocket)
            .with_provided(Arc::clone(&provided));
        assert_eq!(live.session_object()["delegation"]["type"], "client");
        provided.register(":1.4", "lamp", "", SCHEMA).unwrap();
        let session = live.session_object();
        assert_eq!(session["delegation"]["type"], "responses");
        assert_eq!(
            names(&session["delegation"]["responses"]["tools"]),
            ["lamp"]
        );
        // Configured as it opens: nothing to send while it runs.
        assert!(live.encode(&ClientEvent::ToolsUpdate).is_empty());
    }
}
