use std::time::Duration;

use crate::config::TransportKind;
use crate::session::test_rig::*;
use crate::session::*;

#[test]
fn audio_moves_between_listening_and_speaking_and_measures_first_audio() {
    let mut r = Rig::live(settings());
    r.server(ServerEvent::SpeechStopped);
    r.now += Duration::from_millis(700);
    let a = r.server(ServerEvent::AudioStarted {
        item_id: Some("item_1".into()),
    });
    assert_eq!(states(&a), vec![State::Speaking]);
    assert!(has(&a, &Action::Led(LedPattern::Breathing)));
    // Timed at the speaker, not at the event: the jitter buffer and the device come first.
    assert_eq!(r.m.stats().time_to_first_audio_ms, None);
    r.now += Duration::from_millis(90);
    r.feed(Input::SpeakerStarted);
    assert_eq!(r.m.stats().time_to_first_audio_ms, Some(790));
    assert_eq!(r.m.stats().median_first_audio_ms, Some(790));
    // The turn is logged once its answer has ended.
    let a = r.server(ServerEvent::AudioStopped { interrupted: false });
    assert_eq!(states(&a), vec![State::Listening]);
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::TurnTimed(t) if t.first_audio_ms == 790)),
        "{a:?}"
    );
}

#[test]
fn websocket_speaking_ends_when_local_playback_drains() {
    let mut r = Rig::live(Settings {
        transport: TransportKind::Websocket,
        ..settings()
    });
    r.server(ServerEvent::AudioStarted { item_id: None });
    assert!(states(&r.server(ServerEvent::AudioStopped { interrupted: false })).is_empty());
    assert_eq!(
        states(&r.feed(Input::PlaybackDrained)),
        vec![State::Listening]
    );
}

#[test]
fn barge_in_on_webrtc_cancels_and_clears() {
    let mut r = Rig::live(settings());
    r.server(ServerEvent::ResponseCreated {
        response_id: "r".into(),
    });
    r.server(ServerEvent::AudioStarted {
        item_id: Some("i".into()),
    });
    let a = r.server(ServerEvent::SpeechStarted { item_id: None });
    assert_eq!(a[0], Action::FlushPlayback, "the speaker is silenced first");
    assert_eq!(
        sends(&a),
        vec![ClientEvent::ResponseCancel, ClientEvent::OutputAudioClear]
    );
    assert_eq!(states(&a), vec![State::Listening]);
}

#[test]
fn barge_in_on_websocket_cancels_and_truncates_the_playing_item() {
    let mut r = Rig::live(Settings {
        transport: TransportKind::Websocket,
        ..settings()
    });
    r.server(ServerEvent::ResponseCreated {
        response_id: "r".into(),
    });
    r.server(ServerEvent::AudioStarted {
        item_id: Some("item_9".into()),
    });
    let a = r.server(ServerEvent::SpeechStarted { item_id: None });
    // What was heard is read before the flush, which starts the engine's count again.
    assert_eq!(
        a[..2],
        [
            Action::TruncatePlayed {
                item_id: "item_9".into()
            },
            Action::FlushPlayback
        ]
    );
    assert_eq!(sends(&a), vec![ClientEvent::ResponseCancel]);
}

#[test]
fn speech_while_listening_without_response_is_not_barge_in() {
    let mut r = Rig::live(settings());
    let a = r.server(ServerEvent::SpeechStarted { item_id: None });
    assert!(a.is_empty(), "{a:?}");
}

#[test]
fn only_one_response_at_a_time() {
    let mut r = Rig::live(settings());
    let a = r.feed(Input::SendText("hello".into()));
    assert_eq!(
        sends(&a),
        vec![
            ClientEvent::UserText("hello".into()),
            ClientEvent::ResponseCreate
        ]
    );
    let a = r.feed(Input::SendText("again".into()));
    assert_eq!(
        sends(&a),
        vec![ClientEvent::UserText("again".into())],
        "create deferred"
    );
    let a = r.server(ServerEvent::ResponseDone {
        usage: Some(Usage {
            input_tokens: 10,
            output_tokens: 5,
            total_tokens: 15,
        }),
        outcome: ResponseOutcome::Completed,
    });
    assert_eq!(
        sends(&a),
        vec![ClientEvent::ResponseCreate],
        "deferred create sent"
    );
    assert_eq!(r.m.stats().tokens_used, 15);
    let a = r.server(ServerEvent::ResponseDone {
        usage: None,
        outcome: ResponseOutcome::Completed,
    });
    assert!(sends(&a).is_empty());
}

#[test]
fn server_vad_response_defers_our_create_and_race_error_is_absorbed() {
    let mut r = Rig::live(settings());
    r.server(ServerEvent::ResponseCreated {
        response_id: "vad".into(),
    });
    let a = r.feed(Input::ToolResult {
        call_id: "c1".into(),
        output: "42".into(),
    });
    assert_eq!(
        sends(&a),
        vec![ClientEvent::FunctionOutput {
            call_id: "c1".into(),
            output: "42".into()
        }]
    );
    let a = r.server(ServerEvent::Error {
        code: Some("conversation_already_has_active_response".into()),
        message: "busy".into(),
        about: None,
    });
    assert!(a.is_empty(), "not surfaced as an error: {a:?}");
    assert_eq!(r.m.last_error(), "");
    let a = r.server(ServerEvent::ResponseDone {
        usage: None,
        outcome: ResponseOutcome::Completed,
    });
    assert_eq!(sends(&a), vec![ClientEvent::ResponseCreate]);
}

#[test]
fn function_call_runs_tool_or_refuses_when_tools_are_off() {
    let mut r = Rig::live(settings());
    let a = r.server(ServerEvent::FunctionCall {
        call_id: "c".into(),
        name: "echo".into(),
        arguments: "{}".into(),
    });
    assert_eq!(
        a,
        vec![Action::RunTool {
            call_id: "c".into(),
            name: "echo".into(),
            arguments: "{}".into()
        }]
    );
    let mut r = Rig::live(Settings {
        tools: false,
        ..settings()
    });
    let a = r.server(ServerEvent::FunctionCall {
        call_id: "c".into(),
        name: "echo".into(),
        arguments: "{}".into(),
    });
    assert!(
        matches!(&a[0], Action::Send(ClientEvent::FunctionOutput { output, .. }) if output.contains("disabled"))
    );
}

#[test]
fn transcripts_are_published_and_errors_recorded() {
    let mut r = Rig::live(settings());
    let a = r.server(ServerEvent::InputTranscript {
        text: "what time is it".into(),
    });
    assert_eq!(
        a,
        vec![
            Action::Transcript {
                role: Role::User,
                text: "what time is it".into()
            },
            Action::Remember {
                role: Role::User,
                text: "what time is it".into()
            }
        ]
    );
    // A text answer (nothing playing): remembered as it comes.
    let a = r.server(ServerEvent::AssistantTranscript {
        text: "noon".into(),
    });
    assert_eq!(
        a,
        vec![
            Action::Transcript {
                role: Role::Assistant,
                text: "noon".into()
            },
            Action::Remember {
                role: Role::Assistant,
                text: "noon".into()
            }
        ]
    );
    let a = r.server(ServerEvent::Error {
        code: Some("invalid_value".into()),
        message: "bad voice".into(),
        about: None,
    });
    assert_eq!(
        a,
        vec![Action::LastError("service error: bad voice".into())]
    );
    assert_eq!(
        r.m.state(),
        State::Listening,
        "a service error does not end the session"
    );
    let a = r.server(ServerEvent::SessionCreated {
        session_id: "sess_1".into(),
    });
    assert_eq!(a, vec![Action::StatsChanged], "the id is published at once");
    assert_eq!(r.m.session_id(), Some("sess_1"));
}

fn remembered(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Remember { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failed_response_is_shown_and_the_conversation_goes_on() {
    let mut r = Rig::live(settings());
    r.feed(Input::SendText("hi".into()));
    let a = r.server(ServerEvent::ResponseDone {
        usage: None,
        outcome: ResponseOutcome::Failed("server_error".into()),
    });
    assert!(has(
        &a,
        &Action::LastError("the service could not answer: server_error".into())
    ));
    assert!(has(&a, &Action::Earcon(Earcon::Error)));
    assert!(has(&a, &Action::Led(LedPattern::FastBlink)));
    assert_eq!(r.m.stats().responses_failed, 1);
    assert_eq!(r.m.state(), State::Listening);
    // The flash ends and the LED shows the state again.
    let a = r.run_to_deadline();
    assert!(has(&a, &Action::Led(LedPattern::On)), "{a:?}");
    // A cancelled response (barge-in) is no failure.
    r.server(ServerEvent::ResponseDone {
        usage: None,
        outcome: ResponseOutcome::Cancelled,
    });
    assert_eq!(r.m.stats().responses_failed, 1);
}

#[test]
fn a_create_refused_during_the_services_own_response_is_sent_when_it_ends() {
    let mut r = Rig::live(settings());
    // A typed question sends its create while server VAD starts a response of its own.
    let a = r.feed(Input::SendText("what time is it".into()));
    assert!(sends(&a).contains(&ClientEvent::ResponseCreate));
    r.server(ServerEvent::ResponseCreated {
        response_id: "vad".into(),
    });
    r.server(ServerEvent::Error {
        code: Some("conversation_already_has_active_response".into()),
        message: "Conversation already has an active response".into(),
        about: None,
    });
    let a = r.server(ServerEvent::ResponseDone {
        usage: None,
        outcome: ResponseOutcome::Completed,
    });
    assert_eq!(sends(&a), vec![ClientEvent::ResponseCreate], "{a:?}");
}

#[test]
fn transcription_failures_are_counted_and_logged() {
    let mut r = Rig::live(settings());
    let a = r.server(ServerEvent::TranscriptionFailed {
        message: "The audio could not be transcribed.".into(),
    });
    assert_eq!(r.m.stats().transcription_failures, 1);
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Warn(m) if m.contains("could not be transcribed"))));
    assert!(has(&a, &Action::StatsChanged));
    assert_eq!(r.m.last_error(), "", "not an error on the device");
}

#[test]
fn a_function_call_runs_once() {
    let mut r = Rig::live(settings());
    let call = || ServerEvent::FunctionCall {
        call_id: "call_1".into(),
        name: "echo".into(),
        arguments: "{}".into(),
    };
    let runs = |a: &[Action]| {
        a.iter()
            .filter(|a| matches!(a, Action::RunTool { .. }))
            .count()
    };
    assert_eq!(runs(&r.server(call())), 1);
    assert_eq!(runs(&r.server(call())), 0);
}

#[test]
fn errors_name_the_event_of_ours_they_answer() {
    let mut r = Rig::live(settings());
    let a = r.server(ServerEvent::Error {
        code: Some("invalid_value".into()),
        message: "bad item".into(),
        about: Some("our conversation.item.truncate (rtv_7)".into()),
    });
    assert!(has(
        &a,
        &Action::LastError(
            "service error about our conversation.item.truncate (rtv_7): bad item".into()
        )
    ));
}

#[test]
fn websocket_memory_keeps_the_heard_part_of_an_interrupted_answer() {
    let mut r = Rig::live(Settings {
        transport: TransportKind::Websocket,
        ..settings()
    });
    r.server(ServerEvent::ResponseCreated {
        response_id: "r".into(),
    });
    r.server(ServerEvent::AudioStarted {
        item_id: Some("item_1".into()),
    });
    // Generation runs ahead of playback: the whole text is here while audio still plays.
    let text = "one two three four five six seven eight";
    let a = r.server(ServerEvent::AssistantTranscript { text: text.into() });
    assert!(remembered(&a).is_empty(), "not before it is heard");
    let a = r.server(ServerEvent::SpeechStarted { item_id: None });
    assert!(has(
        &a,
        &Action::TruncatePlayed {
            item_id: "item_1".into()
        }
    ));
    // A quarter of the delivered audio was played.
    let a = r.feed(Input::Heard {
        heard_ms: 1000,
        delivered_ms: 4000,
    });
    assert_eq!(remembered(&a), vec!["one two…".to_owned()]);
}

#[test]
fn websocket_memory_keeps_a_whole_answer_once_it_played_out() {
    let mut r = Rig::live(Settings {
        transport: TransportKind::Websocket,
        ..settings()
    });
    r.server(ServerEvent::AudioStarted {
        item_id: Some("item_1".into()),
    });
    r.server(ServerEvent::AssistantTranscript {
        text: "all of it".into(),
    });
    let a = r.feed(Input::PlaybackDrained);
    assert_eq!(remembered(&a), vec!["all of it".to_owned()]);
}

#[test]
fn webrtc_memory_keeps_what_the_playing_time_covers() {
    let mut r = Rig::live(settings());
    r.server(ServerEvent::ResponseCreated {
        response_id: "r".into(),
    });
    r.server(ServerEvent::AudioStarted {
        item_id: Some("r".into()),
    });
    let text = "It is twelve o'clock and the weather is sunny with a light breeze from the west.";
    r.server(ServerEvent::AssistantTranscript { text: text.into() });
    r.now += Duration::from_secs(2);
    let a = r.server(ServerEvent::SpeechStarted { item_id: None });
    let kept = remembered(&a);
    assert_eq!(kept.len(), 1, "{a:?}");
    // Two seconds of speech is about thirty characters, cut at a word.
    assert_eq!(kept[0], "It is twelve o'clock and the…");
    // Nothing heard at all: nothing remembered.
    r.server(ServerEvent::ResponseCreated {
        response_id: "r2".into(),
    });
    r.server(ServerEvent::AudioStarted {
        item_id: Some("r2".into()),
    });
    let a = r.server(ServerEvent::SpeechStarted { item_id: None });
    let a2 = r.server(ServerEvent::AssistantTranscript {
        text: "unheard".into(),
    });
    assert!(remembered(&a).is_empty() && remembered(&a2).is_empty());
}
