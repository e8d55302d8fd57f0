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
    assert!(timed(&a).is_empty(), "logged when the answer ends: {a:?}");
    assert_eq!(r.m.stats().tools_ms, Some(300));
    // Audio that starts again within the same answer times nothing more.
    r.feed(Input::SpeakerStarted);
    let a = r.server(ServerEvent::AudioStopped { interrupted: false });
    let t = timed(&a);
    assert_eq!(t.len(), 1, "{a:?}");
    assert_eq!((t[0].first_audio_ms, t[0].tools_ms), (600, 300));
    assert_eq!(t[0].time_to_silence_ms, None);
}

fn timed(a: &[Action]) -> Vec<TurnTimes> {
    a.iter()
        .filter_map(|x| match x {
            Action::TurnTimed(t) => Some(*t),
            _ => None,
        })
        .collect()
}

#[test]
fn a_turn_talked_over_is_logged_with_the_time_the_speaker_took_to_fall_silent() {
    let mut r = Rig::live(settings());
    let answer = |r: &mut Rig, silence: u64| {
        r.server(ServerEvent::SpeechStopped);
        r.server(ServerEvent::ResponseCreated {
            response_id: "r".into(),
        });
        r.server(ServerEvent::AudioStarted { item_id: None });
        r.now += Duration::from_millis(400);
        r.feed(Input::SpeakerStarted);
        // The device hears the user: the answer ends at once, the turn waits for the figure.
        let a = r.feed(Input::LocalSpeech);
        assert!(timed(&a).is_empty(), "{a:?}");
        let a = r.feed(Input::SpeakerSilenced { ms: silence });
        let t = timed(&a);
        assert_eq!(t.len(), 1, "{a:?}");
        assert_eq!(t[0].time_to_silence_ms, Some(silence));
        r.server(ServerEvent::ResponseDone {
            usage: None,
            outcome: ResponseOutcome::Cancelled,
        });
    };
    answer(&mut r, 130);
    answer(&mut r, 170);
    answer(&mut r, 150);
    let s = r.m.stats();
    assert_eq!(s.time_to_silence_ms, Some(150));
    assert_eq!(s.median_time_to_silence_ms, Some(150));
    assert_eq!(s.median_first_audio_ms, Some(400));
    // A session that ends while the answer plays logs its turn too.
    r.server(ServerEvent::SpeechStopped);
    r.server(ServerEvent::AudioStarted { item_id: None });
    r.feed(Input::SpeakerStarted);
    let a = r.feed(Input::Stop);
    assert_eq!(timed(&a).len(), 1, "{a:?}");
}
