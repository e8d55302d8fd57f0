use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::config::{Config, Protocol, Tool, TransportKind};
use crate::session::{ClientEvent, ResponseOutcome, Role, ServerEvent, Usage};
use crate::transport::dialect::{CallReply, Decoded, Dialect};

fn live(transport: TransportKind, tools: bool) -> Live {
    let mut c = Config::default();
    c.api.protocol = Protocol::Live;
    c.session.voice = "marin".into();
    if tools {
        c.session.tools = vec![Tool {
            name: "echo".into(),
            description: "Says it back".into(),
            parameters: json!({"type": "object"}),
            command: None,
            timeout_ms: 1000,
        }];
    }
    Live::new(Arc::new(c), transport)
}

fn event(d: &Live, text: &str) -> ServerEvent {
    match d.decode(text) {
        Decoded::Event(e) => e,
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn the_session_starts_with_the_documented_object() {
    let d = live(TransportKind::Websocket, true);
    let start: Value = serde_json::from_str(&d.websocket_start().expect("start")).expect("json");
    assert_eq!(start["type"], "session.start");
    let s = &start["session"];
    assert_eq!(s["model"], "gpt-live-1");
    assert_eq!(s["audio"]["output"]["voice"], "marin");
    assert_eq!(
        s["audio"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    assert_eq!(s["delegation"]["type"], "responses");
    assert_eq!(s["delegation"]["responses"]["model"], "gpt-5.5");
    assert_eq!(s["delegation"]["responses"]["tools"][0]["name"], "echo");
    // Strict on the service's side: nothing of the Realtime API's session.
    for realtime in ["type", "output_modalities", "tools", "turn_detection"] {
        assert!(s.get(realtime).is_none(), "{realtime} in {s}");
    }
    // No tools: the voice model alone, hand-offs told to the device.
    let bare = live(TransportKind::Webrtc, false).session_object();
    assert_eq!(bare["delegation"], json!({"type": "client"}));
    assert!(
        bare["audio"].get("format").is_none(),
        "WebRTC negotiates the format"
    );
}

#[test]
fn a_webrtc_call_is_a_json_create_request_and_answer() {
    let d = live(TransportKind::Webrtc, false);
    let request = d.call_request("v=0 offer");
    assert_eq!(request.path, "live/sessions");
    assert_eq!(request.content_type, "application/json");
    let body: Value = serde_json::from_str(&request.body).expect("json");
    assert_eq!(
        body["transport"],
        json!({"type": "webrtc", "sdp": "v=0 offer"})
    );
    assert_eq!(body["session"]["model"], "gpt-live-1");

    let reply = |content_type: &str, body: &str| CallReply {
        content_type: content_type.into(),
        location: None,
        body: body.into(),
    };
    let ok = r#"{"session":{"id":"live_123"},"transport":{"type":"webrtc","sdp":"v=0 answer"}}"#;
    assert_eq!(
        d.call_answer(&reply("application/json", ok)),
        Ok(("v=0 answer".to_owned(), Some("live_123".to_owned())))
    );
    assert!(d.call_answer(&reply("application/sdp", "v=0")).is_err());
    assert!(d.call_answer(&reply("application/json", "{}")).is_err());
    // An id that would not be safe in a URL is not kept.
    let odd = r#"{"session":{"id":"../x"},"transport":{"type":"webrtc","sdp":"v=0"}}"#;
    assert_eq!(
        d.call_answer(&reply("application/json", odd))
            .expect("ok")
            .1,
        None
    );
    assert!(d.hangup_path("live_123").is_none());
    assert!(d.awaits_start() && !d.reports_playout());
    let url = d.websocket_url("https://api.openai.com/v1").expect("url");
    assert_eq!(url.as_str(), "wss://api.openai.com/v1/live/sessions");
}

#[test]
fn server_events_become_what_the_machine_acts_on() {
    let d = live(TransportKind::Websocket, true);
    assert_eq!(
        event(
            &d,
            r#"{"type":"session.started","event_id":"e1","session":{"id":"live_1","model":"gpt-live-1","status":"active","expires_at":1}}"#
        ),
        ServerEvent::SessionCreated {
            session_id: "live_1".into()
        }
    );
    assert_eq!(
        event(
            &d,
            r#"{"type":"session.input_transcript.delta","event_id":"e","delta":"what ","start_ms":0,"end_ms":300}"#
        ),
        ServerEvent::TranscriptPiece {
            role: Role::User,
            text: "what ".into()
        }
    );
    assert_eq!(
        event(
            &d,
            r#"{"type":"session.output_transcript.delta","event_id":"e","delta":"Sunny","start_ms":0,"end_ms":300}"#
        ),
        ServerEvent::TranscriptPiece {
            role: Role::Assistant,
            text: "Sunny".into()
        }
    );
    assert_eq!(
        event(
            &d,
            r#"{"type":"session.usage.updated","event_id":"e","usage":{"seconds":12.5}}"#
        ),
        ServerEvent::SecondsUsed(12.5)
    );
    assert_eq!(
        event(
            &d,
            r#"{"type":"session.closed","event_id":"e","reason":"expired","usage":{"seconds":3600}}"#
        ),
        ServerEvent::SessionClosed {
            expired: true,
            reason: "expired".into(),
            seconds: Some(3600.0)
        }
    );
    assert_eq!(
        event(
            &d,
            r#"{"type":"session.delegation.created","event_id":"e","delegation":{"id":"d1","type":"delegation","target":"client"},"offset_ms":10}"#
        ),
        ServerEvent::Delegated {
            delegation_id: "d1".into()
        }
    );
    assert!(matches!(
        d.decode(r#"{"type":"session.delegation.created","event_id":"e","delegation":{"id":"d2","type":"delegation","target":"responses"},"offset_ms":10}"#),
        Decoded::Ignored(_)
    ));
    match d.decode(r#"{"type":"session.output_audio.delta","delta":"AAAA"}"#) {
        Decoded::AudioDelta {
            item_id: None,
            base64,
        } => assert_eq!(base64, "AAAA"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        event(
            &d,
            r#"{"type":"error","event_id":"e","error":{"type":"invalid_request_error","code":"unknown_parameter","message":"Unknown parameter","param":"session.voice"}}"#
        ),
        ServerEvent::Error {
            code: Some("unknown_parameter".into()),
            message: "Unknown parameter (parameter session.voice)".into(),
            about: None
        }
    );
}

#[test]
fn the_backends_events_carry_tool_calls_and_responses() {
    let d = live(TransportKind::Webrtc, true);
    let wrapped = |inner: Value| {
        json!({"type": "response.event", "event_id": "e", "event": inner, "delegation_id": null})
            .to_string()
    };
    assert_eq!(
        event(
            &d,
            &wrapped(
                json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}})
            )
        ),
        ServerEvent::ResponseCreated {
            response_id: "resp_1".into()
        }
    );
    let call = |status: &str| {
        wrapped(
            json!({"type": "response.output_item.done", "output_index": 0, "item": {
            "type": "function_call", "call_id": "call_1", "name": "echo", "arguments": "{}", "status": status}}),
        )
    };
    assert_eq!(
        event(&d, &call("completed")),
        ServerEvent::FunctionCall {
            call_id: "call_1".into(),
            name: "echo".into(),
            arguments: "{}".into()
        }
    );
    assert!(matches!(d.decode(&call("incomplete")), Decoded::Ignored(_)));
    assert_eq!(
        event(
            &d,
            &wrapped(
                json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed",
            "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}}})
            )
        ),
        ServerEvent::ResponseDone {
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                total_tokens: 7
            }),
            outcome: ResponseOutcome::Completed
        }
    );
    assert_eq!(
        event(
            &d,
            &wrapped(
                json!({"type": "response.failed", "response": {"id": "r", "status": "failed",
            "error": {"code": "server_error", "message": "backend down"}}})
            )
        ),
        ServerEvent::ResponseDone {
            usage: None,
            outcome: ResponseOutcome::Failed("backend down".into())
        }
    );
}

#[test]
fn what_live_lacks_is_not_sent_and_tool_results_go_to_the_backend() {
    let d = live(TransportKind::Websocket, true);
    for missing in [
        ClientEvent::SessionUpdate,
        ClientEvent::ResponseCancel,
        ClientEvent::OutputAudioClear,
        ClientEvent::Truncate {
            item_id: "i".into(),
            audio_end_ms: 10,
        },
    ] {
        assert!(d.encode(&missing).is_empty(), "{missing:?}");
    }
    let out: Value = serde_json::from_str(
        &d.encode(&ClientEvent::FunctionOutput {
            call_id: "call_1".into(),
            output: "ok".into(),
        })[0],
    )
    .expect("json");
    assert_eq!(out["type"], "response.item.create");
    assert_eq!(
        out["item"],
        json!({"type": "function_call_output", "call_id": "call_1", "output": "ok"})
    );
    let text: Value =
        serde_json::from_str(&d.encode(&ClientEvent::UserText("hi".into()))[0]).expect("json");
    assert_eq!(text["type"], "session.instructions.append");
    assert!(
        text["delegation_id"].is_null() && text["content"].as_str().unwrap_or("").contains("hi")
    );
    let (mut scratch, mut out) = (Vec::new(), String::new());
    d.encode_audio_append(&[0, 1], &mut scratch, &mut out);
    let append: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(append["type"], "session.input_audio.append");
    assert_eq!(append["audio"], "AAABAA==");
}
