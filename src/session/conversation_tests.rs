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
    assert_eq!(r.m.stats().time_to_first_audio_ms, Some(700));
    let a = r.server(ServerEvent::AudioStopped);
    assert_eq!(states(&a), vec![State::Listening]);
}

#[test]
fn websocket_speaking_ends_when_local_playback_drains() {
    let mut r = Rig::live(Settings {
        transport: TransportKind::Websocket,
        ..settings()
    });
    r.server(ServerEvent::AudioStarted { item_id: None });
    assert!(states(&r.server(ServerEvent::AudioStopped)).is_empty());
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
    assert_eq!(a[0], Action::FlushPlayback);
    assert_eq!(sends(&a), vec![ClientEvent::ResponseCancel]);
    assert!(has(
        &a,
        &Action::TruncatePlayed {
            item_id: "item_9".into()
        }
    ));
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
    });
    assert_eq!(
        sends(&a),
        vec![ClientEvent::ResponseCreate],
        "deferred create sent"
    );
    assert_eq!(r.m.stats().tokens_used, 15);
    let a = r.server(ServerEvent::ResponseDone { usage: None });
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
    });
    assert!(a.is_empty(), "not surfaced as an error: {a:?}");
    assert_eq!(r.m.last_error(), "");
    let a = r.server(ServerEvent::ResponseDone { usage: None });
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
        vec![Action::Transcript {
            role: Role::User,
            text: "what time is it".into()
        }]
    );
    let a = r.server(ServerEvent::AssistantTranscript {
        text: "noon".into(),
    });
    assert_eq!(
        a,
        vec![Action::Transcript {
            role: Role::Assistant,
            text: "noon".into()
        }]
    );
    let a = r.server(ServerEvent::Error {
        code: Some("invalid_value".into()),
        message: "bad voice".into(),
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
