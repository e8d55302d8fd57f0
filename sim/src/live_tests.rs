use std::time::Instant;

use serde_json::{json, Value};

use super::*;
use crate::{Sim, SimOptions};

fn drain(front: &mut LiveFront) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(o) = front.poll(Instant::now()) {
        if let SimOutput::Event(text) = o {
            out.push(serde_json::from_str(&text).expect("json"));
        }
    }
    out
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

fn send(front: &mut LiveFront, v: Value) -> Vec<Value> {
    front.on_client_event(&v.to_string(), Instant::now());
    drain(front)
}

#[test]
fn nothing_before_session_start_and_the_session_object_is_strict() {
    let sim = Sim::new(SimOptions::default());
    let mut f = LiveFront::websocket(&sim);
    let e = send(
        &mut f,
        json!({"type": "session.input_audio.append", "audio": "AAAA"}),
    );
    assert_eq!(e[0]["error"]["code"], "session_not_started", "{e:?}");
    // An unknown field in the session: refused, and the session does not start.
    let e = send(
        &mut f,
        json!({"type": "session.start", "session": {"model": "gpt-live-1", "turn_detection": {}}}),
    );
    assert_eq!(types(&e), vec!["error"], "{e:?}");
    let e = send(
        &mut f,
        json!({"type": "session.start", "session": {"model": "gpt-realtime"}}),
    );
    assert_eq!(e[0]["error"]["code"], "invalid_model", "{e:?}");
    let e = send(
        &mut f,
        json!({"type": "session.start", "event_id": "s1", "session": {"model": "gpt-live-1",
               "audio": {"output": {"voice": "marin"}}, "delegation": {"type": "client"}}}),
    );
    assert_eq!(types(&e), vec!["session.started"], "{e:?}");
    assert_eq!(e[0]["client_event_id"], "s1");
    assert_eq!(e[0]["session"]["status"], "active");
    assert!(
        sim.stats
            .schema_violations
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[test]
fn realtime_events_and_backend_requests_without_delegation_are_refused() {
    let sim = Sim::new(SimOptions::default());
    let mut f = LiveFront::websocket(&sim);
    send(
        &mut f,
        json!({"type": "session.start", "session": {"model": "gpt-live-1"}}),
    );
    for realtime in [
        json!({"type": "response.cancel"}),
        json!({"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": 1}),
        json!({"type": "input_audio_buffer.append", "audio": "AAAA"}),
    ] {
        let e = send(&mut f, realtime.clone());
        assert_eq!(types(&e), vec!["error"], "{realtime}: {e:?}");
    }
    let e = send(&mut f, json!({"type": "response.create"}));
    assert_eq!(e[0]["error"]["code"], "delegation_required", "{e:?}");
    let e = send(
        &mut f,
        json!({"type": "session.thinking.append", "content": "x", "delegation_id": "d1"}),
    );
    assert_eq!(types(&e), vec!["session.thinking.appended"]);
    let e = send(&mut f, json!({"type": "session.close"}));
    assert_eq!(types(&e), vec!["session.closed"]);
    assert_eq!(e[0]["reason"], "close_requested");
    assert!(e[0]["usage"]["seconds"].is_number());
}

#[test]
fn a_webrtc_session_starts_at_creation_and_refuses_an_audio_format() {
    let bad =
        json!({"model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 24000}}});
    assert!(LiveFront::check_session(&bad, true).is_err());
    assert!(LiveFront::check_session(&bad, false).is_ok());
    let sim = Sim::new(SimOptions::default());
    let mut f = LiveFront::webrtc(&sim, json!({"model": "gpt-live-1"}));
    let e = drain(&mut f);
    assert_eq!(types(&e), vec!["session.started"]);
    let e = send(
        &mut f,
        json!({"type": "session.start", "session": {"model": "gpt-live-1"}}),
    );
    assert_eq!(e[0]["error"]["code"], "session_already_started", "{e:?}");
}
