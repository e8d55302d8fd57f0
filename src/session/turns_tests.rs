//! Timing a turn to the speaker, and the user heard talking over the assistant on the device.

use std::time::Duration;

use crate::config::TransportKind;
use crate::session::test_rig::*;
use crate::session::*;

#[test]
fn speech_heard_on_the_device_barges_in_before_the_service_says_so() {
    // WebSocket: what was heard is read before the flush, then the service is told.
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
    let a = r.feed(Input::LocalSpeech);
    let truncate = a
        .iter()
        .position(|x| matches!(x, Action::TruncatePlayed { .. }));
    let flush = a.iter().position(|x| *x == Action::FlushPlayback);
    assert!(truncate.is_some() && truncate < flush, "{a:?}");
    assert!(sends(&a).contains(&ClientEvent::ResponseCancel));
    assert_eq!(states(&a), vec![State::Listening]);
    // The service's own speech_started that follows changes nothing more.
    let a = r.server(ServerEvent::SpeechStarted { item_id: None });
    assert!(
        !a.iter().any(|x| matches!(x, Action::TruncatePlayed { .. })),
        "{a:?}"
    );
    r.server(ServerEvent::ResponseDone {
        usage: None,
        outcome: ResponseOutcome::Cancelled,
    });
    // Nothing of ours playing (an earcon, a race): the engine is only let go again.
    let a = r.feed(Input::LocalSpeech);
    assert_eq!(a, vec![Action::FlushPlayback]);
}

#[test]
fn a_turn_is_timed_to_the_speaker_with_its_tools() {
    let mut r = Rig::live(settings());
    r.server(ServerEvent::SpeechStopped);
    r.server(ServerEvent::FunctionCall {
        call_id: "c1".into(),
        name: "echo".into(),
        arguments: "{}".into(),
    });
    r.now += Duration::from_millis(300);
    r.feed(Input::ToolResult {
        call_id: "c1".into(),
        output: "ok".into(),
    });
    r.now += Duration::from_millis(200);
    r.server(ServerEvent::AudioStarted { item_id: None });
    r.now += Duration::from_millis(100);
    let a = r.feed(Input::SpeakerStarted);
    let timed: Vec<&TurnTimes> = a
        .iter()
        .filter_map(|x| match x {
            Action::TurnTimed(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(timed.len(), 1, "{a:?}");
    assert_eq!(timed[0].first_audio_ms, 600);
    assert_eq!(timed[0].tools_ms, 300);
    // Audio that starts again within the same answer times nothing more.
    assert!(!r
        .feed(Input::SpeakerStarted)
        .iter()
        .any(|x| matches!(x, Action::TurnTimed(_))));
}
