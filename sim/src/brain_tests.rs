use super::*;

fn sine24(freq: f64, ms: usize) -> Vec<i16> {
    (0..RATE * ms / 1000)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / RATE as f64).sin()) as i16
        })
        .collect()
}

/// Drives a brain on a simulated clock; collects events (parsed) and audio.
struct Rig {
    brain: Brain,
    now: Instant,
    events: Vec<Value>,
    audio48: Vec<i16>,
    closed: Option<String>,
}

impl Rig {
    fn new(opts: SimOptions, mode: Mode) -> Self {
        let mut rig = Rig {
            brain: Brain::new(&opts, mode),
            now: Instant::now(),
            events: Vec::new(),
            audio48: Vec::new(),
            closed: None,
        };
        rig.drain();
        rig
    }

    fn drain(&mut self) {
        while let Some(out) = self.brain.poll(self.now) {
            match out {
                SimOutput::Event(text) => {
                    let v: Value = serde_json::from_str(&text).expect("events are JSON");
                    if v["type"] == "response.output_audio.delta" {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(v["delta"].as_str().expect("delta"))
                            .expect("base64");
                        assert_eq!(bytes.len() % 2, 0);
                    }
                    self.events.push(v);
                }
                SimOutput::Audio(frame) => self.audio48.extend_from_slice(&frame[..]),
                SimOutput::Close(reason) => self.closed = Some(reason),
            }
        }
    }

    /// Advances the clock deadline by deadline until idle (bounded).
    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        while let Some(at) = self.brain.next_deadline() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.drain();
        }
    }

    fn client(&mut self, v: Value) {
        self.brain.on_client_event(&v.to_string(), self.now);
        self.drain();
    }

    fn speak(&mut self, pcm24: &[i16]) {
        // 40 ms appends, like the WebSocket client.
        for chunk in pcm24.chunks(960) {
            self.brain.on_audio_24k(chunk, self.now);
        }
        self.drain();
    }

    fn types(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .filter(|t| t != "response.output_audio.delta")
            .collect()
    }

    fn of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }
}

fn pos(types: &[String], kind: &str) -> usize {
    types
        .iter()
        .position(|t| t == kind)
        .unwrap_or_else(|| panic!("no {kind} in {types:?}"))
}

#[test]
fn session_update_is_checked_and_acknowledged() {
    let mut r = Rig::new(SimOptions::default(), Mode::WebSocket);
    assert_eq!(r.types(), ["session.created"]);
    r.client(json!({"type": "session.update", "session": {"instructions": "x"}}));
    assert_eq!(
        r.of("error")[0]["error"]["code"],
        "missing_required_parameter"
    );
    r.client(json!({"type": "session.update", "session": {"type": "realtime",
        "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 200}}}}}));
    assert_eq!(
        r.types().last().map(String::as_str),
        Some("session.updated")
    );
    assert_eq!(r.brain.silence_ms, 200);
}

#[test]
fn speech_is_heard_transcribed_and_echoed_in_real_time() {
    let mut r = Rig::new(SimOptions::default(), Mode::WebSocket);
    let mut input = vec![0i16; RATE / 5];
    let tone = sine24(440.0, 1000);
    input.extend_from_slice(&tone);
    input.extend(std::iter::repeat_n(0i16, RATE));
    let start = r.now;
    r.speak(&input);
    let types = r.types();
    let order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
    ];
    let at: Vec<usize> = order.iter().map(|k| pos(&types, k)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{types:?}");
    let transcript = r.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
        .as_str()
        .expect("transcript")
        .to_owned();
    // The 200 ms of silence before it (within the prefix padding) plus the 1000 ms tone.
    assert_eq!(transcript, "heard 1200 ms of speech");

    r.run(Duration::from_secs(5));
    let types = r.types();
    assert!(pos(&types, "response.output_audio.done") < pos(&types, "response.done"));
    let done = r.of("response.done")[0];
    assert_eq!(done["response"]["status"], "completed");
    assert!(
        done["response"]["usage"]["total_tokens"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    // Paced: 1.2 s of audio took 1.2 s of (simulated) time.
    assert!(
        r.now - start >= Duration::from_millis(1180),
        "{:?}",
        r.now - start
    );

    let mut echoed = Vec::new();
    for delta in r.of("response.output_audio.delta") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(delta["delta"].as_str().expect("delta"))
            .expect("base64");
        echoed.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
    }
    assert_eq!(echoed.len(), RATE * 1200 / 1000);
    assert_eq!(
        &echoed[RATE / 5..],
        &tone[..],
        "the tone comes back as it went in"
    );
}

#[test]
fn text_turns_double_creates_and_cancel() {
    let mut r = Rig::new(SimOptions::default(), Mode::WebSocket);
    r.client(
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello"}]}}),
    );
    assert_eq!(r.of("conversation.item.added").len(), 1);
    r.client(json!({"type": "response.create"}));
    assert!(r.brain.response_active());
    r.client(json!({"type": "response.create", "event_id": "evt_c1"}));
    let error = r.of("error")[0];
    assert_eq!(
        error["error"]["code"],
        "conversation_already_has_active_response"
    );
    assert_eq!(error["error"]["event_id"], "evt_c1");
    r.now += Duration::from_millis(100);
    r.drain();
    r.client(json!({"type": "response.cancel"}));
    assert!(!r.brain.response_active());
    let done = r.of("response.done");
    assert_eq!(done[0]["response"]["status"], "cancelled");
    r.client(json!({"type": "response.cancel"}));
    assert_eq!(
        r.of("error")[1]["error"]["code"],
        "response_cancel_not_active"
    );
    // Truncation is as strict as the service: a known assistant item, never past its audio.
    let item = r.of("response.output_item.added")[0]["item"]["id"]
        .as_str()
        .expect("an item id")
        .to_owned();
    r.client(json!({"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": 80}));
    assert_eq!(r.of("conversation.item.truncated")[0]["audio_end_ms"], 80);
    r.client(json!({"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": 60000}));
    let refused = r.of("error")[2]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        refused.contains("is already shorter than 60000ms"),
        "{refused}"
    );
    r.client(json!({"type": "conversation.item.truncate", "item_id": "item_x", "content_index": 0, "audio_end_ms": 80}));
    assert_eq!(r.of("error")[3]["error"]["code"], "invalid_value");
    r.brain.on_client_event("{not json", r.now);
    r.client(json!({"type": "no.such.event"}));
    let errors = r.of("error");
    assert_eq!(errors[4]["error"]["code"], "invalid_json");
    assert_eq!(errors[5]["error"]["code"], "invalid_value");
}

#[test]
fn speech_during_a_response_interrupts_it() {
    let mut r = Rig::new(SimOptions::default(), Mode::WebSocket);
    r.client(
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello"}]}}),
    );
    r.client(json!({"type": "response.create"}));
    r.now += Duration::from_millis(200);
    r.drain();
    r.speak(&sine24(300.0, 200));
    let done = r.of("response.done");
    assert_eq!(done[0]["response"]["status"], "cancelled");
    assert_eq!(
        done[0]["response"]["status_details"]["reason"],
        "turn_detected"
    );
}

#[test]
fn a_tool_is_called_first_when_configured() {
    let opts = SimOptions {
        tool: Some("echo".into()),
        ..SimOptions::default()
    };
    let mut r = Rig::new(opts, Mode::WebSocket);
    r.client(
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello"}]}}),
    );
    r.client(json!({"type": "response.create"}));
    let call = r.of("response.function_call_arguments.done")[0].clone();
    assert_eq!(call["name"], "echo");
    assert_eq!(call["arguments"], r#"{"text":"hello"}"#);
    assert!(!r.brain.response_active(), "the tool response is done");
    r.client(
        json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
        "call_id": call["call_id"], "output": "hello"}}),
    );
    r.client(json!({"type": "response.create"}));
    r.run(Duration::from_secs(3));
    assert_eq!(r.of("response.done").len(), 2);
    assert!(!r.of("response.output_audio.delta").is_empty());
}

#[test]
fn webrtc_mode_sends_frames_between_buffer_events() {
    let opts = SimOptions {
        reply: Reply::Tone,
        ..SimOptions::default()
    };
    let mut r = Rig::new(opts, Mode::WebRtc);
    // 48 kHz microphone audio, as decoded from Opus.
    let tone48: Vec<i16> = (0..48_000 / 2)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 48_000.0).sin()) as i16)
        .collect();
    for frame in tone48.chunks(FRAME_SAMPLES) {
        r.brain.on_audio(frame, r.now);
    }
    r.brain.on_audio(&vec![0i16; 48_000], r.now);
    r.drain();
    r.run(Duration::from_secs(3));
    let types = r.types();
    assert!(pos(&types, "output_audio_buffer.started") < pos(&types, "response.done"));
    assert!(pos(&types, "response.done") < pos(&types, "output_audio_buffer.stopped"));
    assert!(r.of("response.output_audio.delta").is_empty());
    // The tone reply lasts as long as what was heard (500 ms).
    let ms = r.audio48.len() / 48;
    assert!((480..=540).contains(&ms), "{ms} ms of frames");
    assert_eq!(r.audio48.len() % FRAME_SAMPLES, 0);
}

#[test]
fn drop_after_closes_the_session() {
    let opts = SimOptions {
        drop_after_ms: Some(250),
        ..SimOptions::default()
    };
    let mut r = Rig::new(opts, Mode::WebSocket);
    r.run(Duration::from_secs(1));
    assert!(r.closed.as_deref().is_some_and(|c| c.contains("drop")));
    assert_eq!(r.brain.next_deadline(), None);
}

fn typed_question(r: &mut Rig) {
    r.client(
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello"}]}}),
    );
}

#[test]
fn strict_switches_reproduce_what_the_service_does() {
    // A cancelled response carries a call that never completed.
    let mut r = Rig::new(
        SimOptions {
            cancelled_calls: true,
            ..SimOptions::default()
        },
        Mode::WebSocket,
    );
    typed_question(&mut r);
    r.client(json!({"type": "response.create"}));
    r.client(json!({"type": "response.cancel"}));
    let args = r.of("response.function_call_arguments.done")[0].clone();
    let item = r.of("response.output_item.done")[0]["item"].clone();
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["status"], "incomplete");
    r.client(
        json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
        "call_id": args["call_id"], "output": "ran anyway"}}),
    );
    assert_eq!(
        r.brain
            .stats
            .cancelled_calls_answered
            .load(Ordering::Relaxed),
        1
    );

    // The next response fails, with the reason in status_details.
    let mut r = Rig::new(
        SimOptions {
            fail_responses: 1,
            ..SimOptions::default()
        },
        Mode::WebSocket,
    );
    typed_question(&mut r);
    r.client(json!({"type": "response.create"}));
    r.run(Duration::from_secs(3));
    let done = r.of("response.done")[0]["response"].clone();
    assert_eq!(done["status"], "failed");
    assert_eq!(done["status_details"]["error"]["code"], "sim_failure");

    // A create loses the race with a response the service started itself.
    let mut r = Rig::new(
        SimOptions {
            race_responses: 1,
            ..SimOptions::default()
        },
        Mode::WebSocket,
    );
    typed_question(&mut r);
    r.client(json!({"type": "response.create", "event_id": "evt_mine"}));
    let error = r.of("error")[0].clone();
    assert_eq!(
        error["error"]["code"],
        "conversation_already_has_active_response"
    );
    assert_eq!(error["error"]["event_id"], "evt_mine");
    assert!(r.brain.response_active(), "the service's own response runs");
    r.run(Duration::from_secs(3));
    r.client(json!({"type": "response.create"}));
    assert_eq!(
        r.of("response.created").len(),
        2,
        "the owed create is served"
    );

    // The session's time is up.
    let mut r = Rig::new(
        SimOptions {
            session_expired_after_ms: Some(100),
            ..SimOptions::default()
        },
        Mode::WebSocket,
    );
    r.run(Duration::from_secs(1));
    assert_eq!(r.of("error")[0]["error"]["code"], "session_expired");
    assert_eq!(r.closed.as_deref(), Some("session expired"));
}
