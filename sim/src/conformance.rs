//! Every client event checked against OpenAI's published description of the Realtime API.
//!
//! `schema/realtime-client-events.schema.json` holds, verbatim, the client-event and session
//! schemas of OpenAI's OpenAPI description (`openai/openai-openapi`, `openapi.json`, commit
//! f85dbe223d40e1a31cba812ab2d755c7e98a92a3, `info.version` 2.3.0), its `#/components/schemas`
//! references rewritten to `#/$defs`. A field the publication does not allow, a missing required
//! field or a wrong type is a violation: the simulator answers it with an `error` event, as the
//! service does, and counts it for the tests.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{json, Value};

const SCHEMA: &str = include_str!("../schema/realtime-client-events.schema.json");
/// GPT-Live's client events, written from its published reference (sources in the file's
/// `$comment`): no machine-readable schema of them is published yet.
const LIVE_SCHEMA: &str = include_str!("../schema/live-client-events.schema.json");

/// What is wrong with an event, as the service's `error` would say it.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub code: &'static str,
    pub message: String,
}

/// One validator per client event type, built once per process.
pub struct Conformance {
    by_type: HashMap<String, jsonschema::Validator>,
}

impl Conformance {
    /// The published schema, compiled; `None` only if the vendored file is broken.
    pub fn published() -> Option<&'static Conformance> {
        static CHECKER: OnceLock<Option<Conformance>> = OnceLock::new();
        CHECKER
            .get_or_init(|| match Conformance::new(SCHEMA) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!("the vendored Realtime schema does not compile: {e}");
                    None
                }
            })
            .as_ref()
    }

    /// GPT-Live's client events, compiled; `None` only if the file is broken.
    pub fn live() -> Option<&'static Conformance> {
        static CHECKER: OnceLock<Option<Conformance>> = OnceLock::new();
        CHECKER
            .get_or_init(|| match Conformance::new(LIVE_SCHEMA) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!("the GPT-Live schema does not compile: {e}");
                    None
                }
            })
            .as_ref()
    }

    fn new(text: &str) -> Result<Conformance, String> {
        let schema: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let defs = schema["$defs"].clone();
        let mut by_type = HashMap::new();
        for member in schema["oneOf"].as_array().into_iter().flatten() {
            let Some(reference) = member["$ref"].as_str() else {
                continue;
            };
            let name = reference.trim_start_matches("#/$defs/");
            let kind = defs[name]["properties"]["type"]["enum"][0]
                .as_str()
                .or_else(|| defs[name]["properties"]["type"]["const"].as_str())
                .or_else(|| defs[name]["properties"]["type"]["default"].as_str())
                .ok_or_else(|| format!("{name} names no event type"))?;
            let one = json!({
                "$schema": schema["$schema"],
                "$defs": defs,
                "$ref": reference,
            });
            let validator = jsonschema::validator_for(&one).map_err(|e| format!("{name}: {e}"))?;
            by_type.insert(kind.to_owned(), validator);
        }
        if by_type.is_empty() {
            return Err("no client events in the schema".into());
        }
        Ok(Conformance { by_type })
    }

    /// Why `event` is not a client event as published (the first few problems, one line).
    pub fn check(&self, event: &Value) -> Result<(), String> {
        self.violation(event).map_or(Ok(()), |v| Err(v.message))
    }

    /// The first few problems of `event`, with the error code the service gives such a one.
    pub fn violation(&self, event: &Value) -> Option<Violation> {
        let kind = event["type"].as_str().unwrap_or("");
        let Some(validator) = self.by_type.get(kind) else {
            return Some(Violation {
                code: "invalid_value",
                message: format!("`{kind}` is not a client event of the Realtime API"),
            });
        };
        // The session is one of two shapes told apart by its `type`: without one, the
        // validator can only say "none of them"; the service names the missing field.
        if kind == "session.update"
            && event["session"].is_object()
            && event["session"]["type"].is_null()
        {
            return Some(Violation {
                code: "missing_required_parameter",
                message: "Missing required parameter: 'session.type'.".into(),
            });
        }
        let mut missing = false;
        let problems: Vec<String> = validator
            .iter_errors(event)
            .take(3)
            .map(|e| {
                missing |= matches!(
                    e.kind(),
                    jsonschema::error::ValidationErrorKind::Required { .. }
                );
                format!("{} at `{}`", e, e.instance_path())
            })
            .collect();
        (!problems.is_empty()).then(|| Violation {
            code: if missing {
                "missing_required_parameter"
            } else {
                "invalid_value"
            },
            message: format!("{kind}: {}", problems.join("; ")),
        })
    }

    /// The event types the publication lists.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_schema_compiles_and_knows_the_client_events() {
        let c = Conformance::published().expect("schema compiles");
        for kind in [
            "session.update",
            "input_audio_buffer.append",
            "conversation.item.create",
            "conversation.item.truncate",
            "response.create",
            "response.cancel",
            "output_audio_buffer.clear",
        ] {
            assert!(c.types().any(|t| t == kind), "{kind}");
        }
    }

    #[test]
    fn what_the_publication_refuses_is_refused() {
        let c = Conformance::published().expect("schema compiles");
        assert!(c
            .check(&json!({"type": "input_audio_buffer.append", "audio": "AAAA"}))
            .is_ok());
        // A missing required field, a wrong type, an unknown event.
        assert!(c
            .check(&json!({"type": "input_audio_buffer.append"}))
            .is_err());
        assert!(c
            .check(
                &json!({"type": "conversation.item.truncate", "item_id": "i",
                           "content_index": 0, "audio_end_ms": "12"})
            )
            .is_err());
        assert!(c.check(&json!({"type": "response.audio.delta"})).is_err());
        // The GA session needs its type.
        assert!(c
            .check(&json!({"type": "session.update", "session": {"model": "gpt-realtime"}}))
            .is_err());
        assert!(c
            .check(&json!({"type": "session.update", "session": {"type": "realtime"}}))
            .is_ok());
    }

    #[test]
    fn every_event_the_daemon_writes_conforms() {
        use realtime_voiced::config::{Config, Tool, TransportKind};
        use realtime_voiced::session::{ClientEvent, Role};
        use realtime_voiced::transport::dialect::{Dialect, RealtimeGa};
        use std::sync::Arc;

        let c = Conformance::published().expect("schema compiles");
        let mut config = Config::default();
        config.session.tools = vec![Tool {
            name: "echo".into(),
            description: "Says it back".into(),
            parameters: json!({"type": "object", "properties": {"text": {"type": "string"}}}),
            command: None,
            timeout_ms: 5000,
        }];
        let config = Arc::new(config);
        let events = [
            ClientEvent::SessionUpdate,
            ClientEvent::UserText("hi".into()),
            ClientEvent::HistoryItem {
                role: Role::User,
                text: "hello".into(),
            },
            ClientEvent::HistoryItem {
                role: Role::Assistant,
                text: "bonjour".into(),
            },
            ClientEvent::ResponseCreate,
            ClientEvent::ResponseCancel,
            ClientEvent::OutputAudioClear,
            ClientEvent::Truncate {
                item_id: "item_1".into(),
                audio_end_ms: 1200,
            },
            ClientEvent::FunctionOutput {
                call_id: "call_1".into(),
                output: "done".into(),
            },
        ];
        for transport in [TransportKind::Webrtc, TransportKind::Websocket] {
            let d = RealtimeGa::new(Arc::clone(&config), transport);
            for event in &events {
                for text in d.encode(event) {
                    let v: Value = serde_json::from_str(&text).expect("JSON");
                    assert_eq!(c.check(&v), Ok(()), "{transport:?}: {v}");
                }
            }
            let (mut scratch, mut out) = (Vec::new(), String::new());
            d.encode_audio_append(&[1, 2, 3], &mut scratch, &mut out);
            let v: Value = serde_json::from_str(&out).expect("JSON");
            assert_eq!(c.check(&v), Ok(()), "{v}");
            // The session a token is minted with is the session object of session.update.
            let update = json!({"type": "session.update", "session": d.token_session()});
            assert_eq!(c.check(&update), Ok(()));
        }
    }

    /// Every message the GPT-Live dialect writes, on both transports and under both kinds of
    /// delegation, is a client event as the published reference describes it; the WebRTC
    /// create request's session is a valid session without `audio.format`.
    #[test]
    fn the_live_dialect_writes_only_published_events() {
        use crate::live::LiveFront;
        use realtime_voiced::config::{Config, Delegation, Protocol, Tool, TransportKind};
        use realtime_voiced::session::{ClientEvent, Role};
        use realtime_voiced::transport::dialect::{Dialect, Live};
        use std::sync::Arc;

        let c = Conformance::live().expect("schema compiles");
        let mut config = Config::default();
        config.api.protocol = Protocol::Live;
        config.session.tools = vec![Tool {
            name: "weather".into(),
            description: "Weather for a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            command: None,
            timeout_ms: 5000,
        }];
        let long = "word ".repeat(1000);
        let events = [
            ClientEvent::UserText("what time is it".into()),
            ClientEvent::UserText(long.clone()),
            ClientEvent::HistoryItem {
                role: Role::User,
                text: "hello".into(),
            },
            ClientEvent::HistoryItem {
                role: Role::Assistant,
                text: long,
            },
            ClientEvent::ResponseCreate,
            ClientEvent::FunctionOutput {
                call_id: "call_1".into(),
                output: "done".into(),
            },
            ClientEvent::DelegationDeclined {
                delegation_id: "deleg_1".into(),
            },
        ];
        for delegation in [Delegation::Auto, Delegation::Client] {
            config.live.delegation = delegation;
            let config = Arc::new(config.clone());
            for transport in [TransportKind::Webrtc, TransportKind::Websocket] {
                let d = Live::new(Arc::clone(&config), transport);
                let mut sent = 0;
                for event in &events {
                    for text in d.encode(event) {
                        let v: Value = serde_json::from_str(&text).expect("JSON");
                        assert_eq!(c.check(&v), Ok(()), "{transport:?}: {v}");
                        sent += 1;
                    }
                }
                assert!(
                    sent > events.len(),
                    "long text is split into several appends"
                );
                for silent in [
                    ClientEvent::ResponseCancel,
                    ClientEvent::OutputAudioClear,
                    ClientEvent::SessionUpdate,
                ] {
                    assert!(d.encode(&silent).is_empty(), "GPT-Live has no {silent:?}");
                }
                let (mut scratch, mut out) = (Vec::new(), String::new());
                d.encode_audio_append(&[1, 2, 3], &mut scratch, &mut out);
                let v: Value = serde_json::from_str(&out).expect("JSON");
                assert_eq!(c.check(&v), Ok(()), "{v}");
                for text in [d.websocket_start(), d.closing()].into_iter().flatten() {
                    let v: Value = serde_json::from_str(&text).expect("JSON");
                    assert_eq!(c.check(&v), Ok(()), "{v}");
                }
                let session = d.session_object();
                assert_eq!(
                    LiveFront::check_session(&session, transport == TransportKind::Webrtc),
                    Ok(()),
                    "{session}"
                );
                let tools = &session["delegation"]["responses"]["tools"];
                match delegation {
                    Delegation::Client => {
                        assert_eq!(session["delegation"], json!({"type": "client"}))
                    }
                    _ => assert_eq!(tools[0]["name"], "weather", "{session}"),
                }
            }
        }
    }
}
