use base64::Engine as _;
use std::borrow::Cow;

use super::*;
use crate::config::Tool;
use crate::session::ResponseOutcome;

fn config(f: impl FnOnce(&mut Config)) -> Arc<Config> {
    let mut c = Config::default();
    c.session.persona = "You are Pip.".into();
    c.session.instructions = "Answer in French.".into();
    c.session.voice = "verse".into();
    c.session.tools = vec![Tool {
        name: "echo".into(),
        description: "Says it back".into(),
        parameters: json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        command: None,
        timeout_ms: 5000,
    }];
    f(&mut c);
    Arc::new(c)
}

fn ga(c: Arc<Config>, kind: TransportKind) -> RealtimeGa {
    RealtimeGa::new(c, kind)
}

/// The event as JSON, without its `event_id` (checked on its own).
fn encoded(d: &RealtimeGa, e: &ClientEvent) -> Value {
    let mut v: Value = serde_json::from_str(&d.encode(e).concat()).expect("encode gives JSON");
    let id = v
        .as_object_mut()
        .and_then(|o| o.remove("event_id"))
        .expect("every client event carries an event_id");
    assert!(id.as_str().is_some_and(|id| id.starts_with("rtv_")), "{id}");
    v
}

#[test]
fn session_update_carries_the_configuration() {
    let d = ga(config(|_| {}), TransportKind::Websocket);
    let v = encoded(&d, &ClientEvent::SessionUpdate);
    assert_eq!(v["type"], "session.update");
    let s = &v["session"];
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["model"], "gpt-realtime-2.1");
    assert_eq!(s["instructions"], "You are Pip.\n\nAnswer in French.");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    let input = &s["audio"]["input"];
    assert_eq!(input["format"], json!({"type": "audio/pcm", "rate": 24000}));
    assert_eq!(input["noise_reduction"], json!({"type": "far_field"}));
    assert_eq!(
        input["transcription"],
        json!({"model": "gpt-4o-mini-transcribe"})
    );
    assert_eq!(
        input["turn_detection"],
        json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
               "silence_duration_ms": 500, "create_response": true, "interrupt_response": true})
    );
    assert_eq!(s["audio"]["output"]["voice"], "verse");
    assert_eq!(s["audio"]["output"]["format"]["rate"], 24000);
    assert_eq!(
        s["tools"],
        json!([{"type": "function", "name": "echo", "description": "Says it back",
                "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}])
    );
    assert_eq!(s["tool_choice"], "auto");
}

#[test]
fn webrtc_session_leaves_the_format_to_the_sdp() {
    let d = ga(config(|_| {}), TransportKind::Webrtc);
    let v = encoded(&d, &ClientEvent::SessionUpdate);
    assert!(v["session"]["audio"]["input"].get("format").is_none());
    assert!(v["session"]["audio"]["output"].get("format").is_none());
    assert_eq!(d.token_session()["type"], "realtime");
    assert!(d.token_session()["audio"]["input"].get("format").is_none());
}

#[test]
fn capabilities_and_options_shape_the_session() {
    let d = ga(
        config(|c| {
            c.session.capabilities = vec![Capability::Text];
            c.session.transcription_model = String::new();
            c.session.instructions = String::new();
            c.session.turn_detection.kind = TurnDetectionKind::SemanticVad;
            c.audio.noise_suppression = false;
        }),
        TransportKind::Websocket,
    );
    let s = d.session_object(true);
    assert_eq!(s["output_modalities"], json!(["text"]));
    assert!(s.get("tools").is_none(), "no tools without the capability");
    assert!(s.get("tool_choice").is_none());
    assert_eq!(s["instructions"], "You are Pip.");
    let input = &s["audio"]["input"];
    assert!(input.get("transcription").is_none());
    assert!(input.get("noise_reduction").is_none());
    assert_eq!(
        input["turn_detection"],
        json!({"type": "semantic_vad", "create_response": true, "interrupt_response": true})
    );
}

#[test]
fn client_events_encode() {
    let d = ga(config(|_| {}), TransportKind::Websocket);
    assert_eq!(
        encoded(&d, &ClientEvent::UserText("hi".into())),
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": "hi"}]}})
    );
    let v = encoded(
        &d,
        &ClientEvent::HistoryItem {
            role: Role::Assistant,
            text: "bonjour".into(),
        },
    );
    assert_eq!(v["item"]["role"], "assistant");
    assert_eq!(v["item"]["content"][0]["type"], "output_text");
    let v = encoded(
        &d,
        &ClientEvent::HistoryItem {
            role: Role::User,
            text: "hello".into(),
        },
    );
    assert_eq!(v["item"]["content"][0]["type"], "input_text");
    assert_eq!(
        encoded(&d, &ClientEvent::ResponseCreate),
        json!({"type": "response.create"})
    );
    assert_eq!(
        encoded(&d, &ClientEvent::ResponseCancel),
        json!({"type": "response.cancel"})
    );
    assert_eq!(
        encoded(&d, &ClientEvent::OutputAudioClear),
        json!({"type": "output_audio_buffer.clear"})
    );
    assert_eq!(
        encoded(
            &d,
            &ClientEvent::Truncate {
                item_id: "item_1".into(),
                audio_end_ms: 1234
            }
        ),
        json!({"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0,
               "audio_end_ms": 1234})
    );
    assert_eq!(
        encoded(
            &d,
            &ClientEvent::FunctionOutput {
                call_id: "call_1".into(),
                output: "done".into()
            }
        ),
        json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
               "call_id": "call_1", "output": "done"}})
    );
}

#[test]
fn audio_append_is_base64_pcm16_le() {
    let d = ga(config(|_| {}), TransportKind::Websocket);
    let (mut scratch, mut out) = (Vec::new(), String::new());
    d.encode_audio_append(&[1, -2, 0x1234], &mut scratch, &mut out);
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["type"], "input_audio_buffer.append");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["audio"].as_str().expect("audio"))
        .expect("base64");
    assert_eq!(bytes, vec![1, 0, 0xfe, 0xff, 0x34, 0x12]);
}

fn event(d: &RealtimeGa, text: &str) -> ServerEvent {
    match d.decode(text) {
        Decoded::Event(e) => e,
        other => panic!("{text} gave {other:?}"),
    }
}

#[test]
fn server_events_decode() {
    let ws = ga(config(|_| {}), TransportKind::Websocket);
    let rtc = ga(config(|_| {}), TransportKind::Webrtc);
    let cases: Vec<(&str, ServerEvent)> = vec![
        (
            r#"{"type":"session.created","event_id":"e1","session":{"id":"sess_1","type":"realtime"}}"#,
            ServerEvent::SessionCreated {
                session_id: "sess_1".into(),
            },
        ),
        (
            r#"{"type":"session.updated","session":{}}"#,
            ServerEvent::SessionUpdated,
        ),
        (
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":10,"item_id":"item_2"}"#,
            ServerEvent::SpeechStarted {
                item_id: Some("item_2".into()),
            },
        ),
        (
            r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":900,"item_id":"item_2"}"#,
            ServerEvent::SpeechStopped,
        ),
        (
            r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","content_index":0,"transcript":"what time is it"}"#,
            ServerEvent::InputTranscript {
                text: "what time is it".into(),
            },
        ),
        (
            r#"{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}"#,
            ServerEvent::ResponseCreated {
                response_id: "resp_1".into(),
            },
        ),
        (
            r#"{"type":"response.output_audio_transcript.done","item_id":"i","transcript":"It is noon."}"#,
            ServerEvent::AssistantTranscript {
                text: "It is noon.".into(),
            },
        ),
        (
            r#"{"type":"response.audio_transcript.done","transcript":"beta"}"#,
            ServerEvent::AssistantTranscript {
                text: "beta".into(),
            },
        ),
        (
            r#"{"type":"response.text.done","text":"beta text"}"#,
            ServerEvent::AssistantTranscript {
                text: "beta text".into(),
            },
        ),
        (
            r#"{"type":"response.output_text.done","text":"ga text"}"#,
            ServerEvent::AssistantTranscript {
                text: "ga text".into(),
            },
        ),
        (
            r#"{"type":"response.output_item.done","response_id":"r","output_index":0,"item":{"id":"item_5","type":"function_call","status":"completed","call_id":"call_9","name":"echo","arguments":"{\"text\":\"x\"}"}}"#,
            ServerEvent::FunctionCall {
                call_id: "call_9".into(),
                name: "echo".into(),
                arguments: r#"{"text":"x"}"#.into(),
            },
        ),
        (
            r#"{"type":"response.done","response":{"id":"r","status":"completed","usage":{"total_tokens":30,"input_tokens":20,"output_tokens":10}}}"#,
            ServerEvent::ResponseDone {
                usage: Some(Usage {
                    input_tokens: 20,
                    output_tokens: 10,
                    total_tokens: 30,
                }),
                outcome: ResponseOutcome::Completed,
            },
        ),
        (
            r#"{"type":"response.done","response":{"id":"r","status":"cancelled"}}"#,
            ServerEvent::ResponseDone {
                usage: None,
                outcome: ResponseOutcome::Cancelled,
            },
        ),
        (
            r#"{"type":"error","error":{"type":"invalid_request_error","code":"conversation_already_has_active_response","message":"busy"}}"#,
            ServerEvent::Error {
                code: Some("conversation_already_has_active_response".into()),
                message: "busy".into(),
                about: None,
            },
        ),
        (
            r#"{"type":"response.output_audio.done","item_id":"i"}"#,
            ServerEvent::AudioStopped { interrupted: false },
        ),
        (
            r#"{"type":"output_audio_buffer.stopped","response_id":"r"}"#,
            ServerEvent::AudioStopped { interrupted: false },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(event(&ws, text), expected, "{text}");
    }
    // WebRTC: playout start and end come from the service's buffer events.
    assert_eq!(
        event(
            &rtc,
            r#"{"type":"output_audio_buffer.started","response_id":"resp_5"}"#
        ),
        ServerEvent::AudioStarted {
            item_id: Some("resp_5".into())
        }
    );
    assert_eq!(
        event(&rtc, r#"{"type":"output_audio_buffer.cleared"}"#),
        ServerEvent::AudioStopped { interrupted: true }
    );
    assert_eq!(
        rtc.decode(r#"{"type":"response.output_audio.done","item_id":"i"}"#),
        Decoded::Ignored("response.output_audio.done".into())
    );
}

#[test]
fn audio_deltas_borrow_the_payload() {
    let d = ga(config(|_| {}), TransportKind::Websocket);
    let text = r#"{"type":"response.output_audio.delta","item_id":"item_7","delta":"AAEC"}"#;
    match d.decode(text) {
        Decoded::AudioDelta { item_id, base64 } => {
            assert_eq!(item_id.as_deref(), Some("item_7"));
            assert_eq!(base64, "AAEC");
            assert!(matches!(base64, Cow::Borrowed(_)), "no copy of the audio");
        }
        other => panic!("{other:?}"),
    }
    let beta = r#"{"type":"response.audio.delta","delta":"AAEC"}"#;
    assert!(matches!(
        d.decode(beta),
        Decoded::AudioDelta { item_id: None, .. }
    ));
}

#[test]
fn bad_and_unknown_input_is_contained() {
    let d = ga(config(|_| {}), TransportKind::Websocket);
    assert_eq!(
        d.decode(r#"{"type":"rate_limits.updated","rate_limits":[]}"#),
        Decoded::Ignored("rate_limits.updated".into())
    );
    assert_eq!(
        d.decode(r#"{"type":"conversation.item.created","item":{}}"#),
        Decoded::Ignored("conversation.item.created".into())
    );
    for bad in [
        "not json",
        "",
        "{\"type\":",
        r#"{"no_type":1}"#,
        r#"[1,2]"#,
        r#"{"type":"response.output_item.done","item":{"type":"function_call","name":7}}"#,
        r#"{"type":"response.output_audio.delta"}"#,
        r#"{"type":"error","error":"flat"}"#,
    ] {
        match d.decode(bad) {
            Decoded::Malformed(why) => assert!(!why.contains('\n'), "one line: {why}"),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

#[test]
fn a_function_call_runs_only_from_a_completed_item() {
    let d = ga(config(|_| {}), TransportKind::Webrtc);
    // The arguments' end comes for cancelled responses too: it never starts a tool.
    let args = r#"{"type":"response.function_call_arguments.done","response_id":"r","item_id":"i","output_index":0,"call_id":"c","name":"echo","arguments":"{}"}"#;
    assert!(matches!(d.decode(args), Decoded::Ignored(_)));
    for status in ["incomplete", "in_progress"] {
        let item = format!(
            r#"{{"type":"response.output_item.done","response_id":"r","output_index":0,"item":{{"id":"i","type":"function_call","status":"{status}","call_id":"c","name":"echo","arguments":"{{}}"}}}}"#
        );
        assert!(matches!(d.decode(&item), Decoded::Ignored(_)), "{status}");
    }
    let message = r#"{"type":"response.output_item.done","response_id":"r","output_index":0,"item":{"id":"i","type":"message","role":"assistant","status":"completed","content":[]}}"#;
    assert!(matches!(d.decode(message), Decoded::Ignored(_)));
}

#[test]
fn failed_and_incomplete_responses_carry_their_reason() {
    let d = ga(config(|_| {}), TransportKind::Webrtc);
    let done = |status: &str, details: &str| {
        event(
            &d,
            &format!(
                r#"{{"type":"response.done","response":{{"id":"r","status":"{status}","status_details":{details},"output":[]}}}}"#
            ),
        )
    };
    let outcome = |e: ServerEvent| match e {
        ServerEvent::ResponseDone { outcome, .. } => outcome,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        outcome(done(
            "failed",
            r#"{"type":"failed","error":{"type":"server_error","code":"rate_limit_exceeded"}}"#
        )),
        ResponseOutcome::Failed("rate_limit_exceeded".into())
    );
    assert_eq!(
        outcome(done(
            "incomplete",
            r#"{"type":"incomplete","reason":"max_output_tokens"}"#
        )),
        ResponseOutcome::Incomplete("max_output_tokens".into())
    );
    assert_eq!(
        outcome(done(
            "cancelled",
            r#"{"type":"cancelled","reason":"turn_detected"}"#
        )),
        ResponseOutcome::Cancelled
    );
    // `status_details` may be null, and a failure may say nothing.
    assert_eq!(
        outcome(done("completed", "null")),
        ResponseOutcome::Completed
    );
    assert_eq!(
        outcome(done("failed", "null")),
        ResponseOutcome::Failed("no reason given".into())
    );
}

#[test]
fn transcription_failures_are_events() {
    let d = ga(config(|_| {}), TransportKind::Websocket);
    let e = event(
        &d,
        r#"{"type":"conversation.item.input_audio_transcription.failed","event_id":"e","item_id":"i","content_index":0,"error":{"type":"transcription_error","code":"audio_unintelligible","message":"The audio could not be transcribed.","param":null}}"#,
    );
    assert_eq!(
        e,
        ServerEvent::TranscriptionFailed {
            message: "The audio could not be transcribed. (audio_unintelligible)".into()
        }
    );
}

#[test]
fn every_client_event_has_an_id_and_errors_name_the_event_they_answer() {
    let d = ga(config(|_| {}), TransportKind::Websocket);
    let first: Value =
        serde_json::from_str(&d.encode(&ClientEvent::ResponseCreate).concat()).expect("json");
    let second: Value =
        serde_json::from_str(&d.encode(&ClientEvent::ResponseCancel).concat()).expect("json");
    let id = first["event_id"].as_str().expect("an id").to_owned();
    assert_ne!(first["event_id"], second["event_id"]);
    let (mut scratch, mut out) = (Vec::new(), String::new());
    d.encode_audio_append(&[0; 4], &mut scratch, &mut out);
    let append: Value = serde_json::from_str(&out).expect("json");
    let append_id = append["event_id"].as_str().expect("an id").to_owned();

    let error = |about: &str| {
        event(
            &d,
            &format!(
                r#"{{"type":"error","error":{{"type":"invalid_request_error","code":"x","message":"no","param":null,"event_id":"{about}"}}}}"#
            ),
        )
    };
    let about = |e: ServerEvent| match e {
        ServerEvent::Error { about, .. } => about,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        about(error(&id)),
        Some(format!("our response.create ({id})"))
    );
    assert_eq!(
        about(error(&append_id)),
        Some(format!("our input_audio_buffer.append ({append_id})"))
    );
    assert_eq!(
        about(error("evt_other")),
        Some("event evt_other".to_owned())
    );
}
