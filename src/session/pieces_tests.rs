//! The machine under GPT-Live's rules (`Rules::of(Protocol::Live)`).

use std::time::Duration;

use crate::config::{Protocol, TransportKind};
use crate::session::test_rig::*;
use crate::session::*;

fn live_settings(transport: TransportKind) -> Settings {
    Settings {
        transport,
        rules: Rules::of(Protocol::Live),
        ..settings()
    }
}

fn transcripts(actions: &[Action]) -> Vec<(Role, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transcript { role, text } => Some((*role, text.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_session_is_configured_as_it_opens_and_memory_follows() {
    let mut r = Rig::new(live_settings(TransportKind::Webrtc));
    r.feed(Input::Start);
    let a = r.feed(Input::Connected);
    assert!(sends(&a).is_empty(), "no session.update: {a:?}");
    assert!(has(&a, &Action::RestoreMemory));
    // The Realtime API is configured once connected, then memory.
    let mut r = Rig::new(settings());
    r.feed(Input::Start);
    let a = r.feed(Input::Connected);
    assert_eq!(sends(&a), vec![ClientEvent::SessionUpdate]);
    assert!(has(&a, &Action::RestoreMemory));
}

#[test]
fn transcript_pieces_become_turns_when_the_speaker_changes() {
    for transport in [TransportKind::Webrtc, TransportKind::Websocket] {
        let mut r = Rig::live(live_settings(transport));
        for piece in ["what ", "time ", "is it"] {
            let a = r.server(ServerEvent::TranscriptPiece {
                role: Role::User,
                text: piece.into(),
            });
            assert!(transcripts(&a).is_empty());
        }
        r.now += Duration::from_millis(400);
        let a = r.server(ServerEvent::AudioStarted { item_id: None });
        assert_eq!(
            transcripts(&a),
            vec![(Role::User, "what time is it".to_owned())]
        );
        assert_eq!(states(&a), vec![State::Speaking]);
        r.feed(Input::SpeakerStarted);
        assert_eq!(r.m.stats().time_to_first_audio_ms, Some(400));
        r.server(ServerEvent::TranscriptPiece {
            role: Role::Assistant,
            text: "It is ".into(),
        });
        r.server(ServerEvent::TranscriptPiece {
            role: Role::Assistant,
            text: "noon.".into(),
        });
        // Local playback draining between real-time pieces does not end the turn: the link
        // says when the audio stops.
        assert!(
            states(&r.feed(Input::PlaybackDrained)).is_empty(),
            "{transport}"
        );
        let a = r.server(ServerEvent::AudioStopped { interrupted: false });
        assert_eq!(states(&a), vec![State::Listening], "{transport}");
        assert_eq!(
            transcripts(&a),
            vec![(Role::Assistant, "It is noon.".to_owned())]
        );
        assert!(has(
            &a,
            &Action::Remember {
                role: Role::Assistant,
                text: "It is noon.".into()
            }
        ));
    }
}

#[test]
fn typed_text_needs_no_response_create() {
    let mut r = Rig::live(live_settings(TransportKind::Webrtc));
    let a = r.feed(Input::SendText("hello".into()));
    assert_eq!(sends(&a), vec![ClientEvent::UserText("hello".into())]);
}

#[test]
fn the_model_stops_itself_on_barge_in() {
    let mut r = Rig::live(live_settings(TransportKind::Websocket));
    r.server(ServerEvent::ResponseCreated {
        response_id: "r".into(),
    });
    r.server(ServerEvent::AudioStarted { item_id: None });
    let a = r.server(ServerEvent::SpeechStarted { item_id: None });
    assert!(has(&a, &Action::FlushPlayback));
    assert!(sends(&a).is_empty(), "no cancel, clear or truncate: {a:?}");
    assert!(!a.iter().any(|x| matches!(x, Action::TruncatePlayed { .. })));
    assert_eq!(states(&a), vec![State::Listening]);
}

#[test]
fn seconds_are_counted_and_an_expired_session_rolls_over() {
    let mut r = Rig::live(live_settings(TransportKind::Webrtc));
    r.server(ServerEvent::SecondsUsed(1.5));
    r.server(ServerEvent::SecondsUsed(4.0));
    r.server(ServerEvent::SecondsUsed(3.0)); // out of order: ignored
    assert_eq!(r.m.stats().voice_ms, 4000);
    let a = r.server(ServerEvent::SessionClosed {
        expired: true,
        reason: "expired".into(),
        seconds: Some(5.0),
    });
    assert_eq!(r.m.stats().voice_ms, 5000);
    assert!(
        a.iter().any(|x| matches!(x, Action::Connect { .. })),
        "{a:?}"
    );
    assert_eq!(r.m.state(), State::Connecting);
    // A fresh session counts from zero; the total goes on.
    r.feed(Input::Connected);
    r.server(ServerEvent::SecondsUsed(2.0));
    assert_eq!(r.m.stats().voice_ms, 7000);
}

#[test]
fn a_task_handed_to_the_device_is_declined() {
    let mut r = Rig::live(live_settings(TransportKind::Webrtc));
    let a = r.server(ServerEvent::Delegated {
        delegation_id: "d1".into(),
    });
    assert_eq!(
        sends(&a),
        vec![ClientEvent::DelegationDeclined {
            delegation_id: "d1".into()
        }]
    );
}
