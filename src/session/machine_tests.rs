use std::time::Duration;

use crate::config::TransportKind;
use crate::session::test_rig::*;
use crate::session::*;

#[test]
fn start_from_idle_connects_with_earcon_led_and_state() {
    let mut r = Rig::new(settings());
    let a = r.feed(Input::Start);
    assert_eq!(
        a,
        vec![
            Action::Earcon(Earcon::Start),
            Action::Led(LedPattern::SlowBlink),
            Action::StateChanged(State::Connecting),
            Action::Connect {
                transport: TransportKind::Webrtc,
                attempt: 1
            },
        ]
    );
}

#[test]
fn toggle_from_idle_starts_and_from_every_active_state_stops() {
    let mut r = Rig::new(settings());
    assert_eq!(states(&r.feed(Input::Toggle)), vec![State::Connecting]);
    assert_eq!(states(&r.feed(Input::Toggle)), vec![State::Idle]);

    let mut r = Rig::live(settings());
    let a = r.feed(Input::Toggle);
    assert_eq!(states(&a), vec![State::Idle]);
    assert!(has(&a, &Action::Disconnect) && has(&a, &Action::Earcon(Earcon::Stop)));
    assert!(has(&a, &Action::SessionEnded(StopReason::User)));

    let mut r = Rig::live(settings());
    r.server(ServerEvent::AudioStarted { item_id: None });
    assert_eq!(r.m.state(), State::Speaking);
    assert_eq!(states(&r.feed(Input::Toggle)), vec![State::Idle]);

    let mut r = Rig::live(settings());
    r.feed(Input::Closed { reason: "x".into() });
    assert_eq!(r.m.state(), State::Reconnecting);
    assert_eq!(states(&r.feed(Input::Toggle)), vec![State::Idle]);
    assert_eq!(r.m.next_deadline(), None, "no retry after stopping");
}

#[test]
fn toggle_from_error_starts_again() {
    let mut r = Rig::new(settings());
    r.feed(Input::Start);
    r.feed(Input::ConnectFailed {
        reason: "401".into(),
        retry: false,
        retry_after: None,
    });
    assert_eq!(r.m.state(), State::Error);
    let a = r.feed(Input::Toggle);
    assert_eq!(states(&a), vec![State::Connecting]);
    assert!(has(&a, &Action::LastError(String::new())));
}

#[test]
fn start_while_active_does_nothing() {
    let mut r = Rig::new(settings());
    r.feed(Input::Start);
    assert!(r.feed(Input::Start).is_empty());
    r.feed(Input::Connected);
    assert!(r.feed(Input::Start).is_empty());
    r.server(ServerEvent::AudioStarted { item_id: None });
    assert!(r.feed(Input::Start).is_empty());
}

#[test]
fn stop_while_idle_does_nothing_and_stop_in_error_clears_it() {
    let mut r = Rig::new(settings());
    assert!(r.feed(Input::Stop).is_empty());
    r.feed(Input::Start);
    r.feed(Input::ConnectFailed {
        reason: "bad key".into(),
        retry: false,
        retry_after: None,
    });
    assert_eq!(states(&r.feed(Input::Stop)), vec![State::Idle]);
}

#[test]
fn connected_sends_session_update_and_measures_connect_time() {
    let mut r = Rig::new(settings());
    r.feed(Input::Start);
    r.now += Duration::from_millis(250);
    let a = r.feed(Input::Connected);
    assert_eq!(sends(&a), vec![ClientEvent::SessionUpdate]);
    assert_eq!(states(&a), vec![State::Listening]);
    assert!(has(&a, &Action::Led(LedPattern::On)));
    assert_eq!(r.m.stats().last_connect_ms, Some(250));
    assert_eq!(r.m.stats().sessions, 1);
}

#[test]
fn connect_timeout_goes_to_reconnecting_with_backoff() {
    let mut r = Rig::new(settings());
    r.feed(Input::Start);
    assert_eq!(r.m.next_deadline(), Some(r.now + Duration::from_secs(10)));
    assert!(r.advance(Duration::from_secs(9)).is_empty());
    let a = r.advance(Duration::from_secs(1));
    assert!(has(&a, &Action::Disconnect));
    assert_eq!(states(&a), vec![State::Reconnecting]);
    assert!(r.m.last_error().contains("timed out"));
    let wait = r.m.next_deadline().expect("retry scheduled") - r.now;
    assert!(
        wait >= Duration::from_millis(250) && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    let a = r.run_to_deadline();
    assert_eq!(
        a,
        vec![Action::Connect {
            transport: TransportKind::Webrtc,
            attempt: 2
        }]
    );
}

#[test]
fn transport_loss_reconnects_with_growing_delays_then_errors() {
    let mut r = Rig::live(settings());
    let a = r.feed(Input::Closed {
        reason: "ice failed".into(),
    });
    assert!(has(&a, &Action::FlushPlayback));
    assert_eq!(states(&a), vec![State::Reconnecting]);
    // Each retry is counted where the user sees it, as it happens.
    assert!(has(&a, &Action::StatsChanged));
    assert_eq!(r.m.stats().reconnects, 1);
    assert!(has(&a, &Action::Led(LedPattern::SlowBlink)));
    let mut delays = Vec::new();
    for attempt in 2..=4 {
        delays.push(r.m.next_deadline().expect("retry") - r.now);
        let a = r.run_to_deadline();
        assert_eq!(
            a,
            vec![Action::Connect {
                transport: TransportKind::Webrtc,
                attempt
            }]
        );
        let a = r.feed(Input::ConnectFailed {
            reason: "refused".into(),
            retry: true,
            retry_after: None,
        });
        if attempt < 4 {
            assert!(states(&a).is_empty(), "stays reconnecting");
        } else {
            assert_eq!(states(&a), vec![State::Error]);
            assert!(has(&a, &Action::Earcon(Earcon::Error)));
            assert!(has(&a, &Action::Led(LedPattern::FastBlink)));
            assert!(
                r.m.last_error().contains("gave up after 4 tries"),
                "{}",
                r.m.last_error()
            );
        }
    }
    // Bounds for tries 1..3 with 500 ms initial: [250,500], [500,1000], [1000,2000].
    for (i, d) in delays.iter().enumerate() {
        let full = 500u64 << i;
        let ms = d.as_millis() as u64;
        assert!(ms >= full / 2 && ms <= full, "try {}: {ms} ms", i + 1);
    }
    assert_eq!(r.m.next_deadline(), None);
}

#[test]
fn successful_reconnect_resets_failures() {
    let mut r = Rig::live(settings());
    r.feed(Input::Closed { reason: "x".into() });
    r.run_to_deadline();
    let a = r.feed(Input::Connected);
    assert_eq!(states(&a), vec![State::Listening]);
    assert_eq!(r.m.last_error(), "");
    assert_eq!(r.m.stats().reconnects, 1);
    r.feed(Input::Closed { reason: "y".into() });
    let a = r.run_to_deadline();
    assert!(has(
        &a,
        &Action::Connect {
            transport: TransportKind::Webrtc,
            attempt: 2
        }
    ));
}

#[test]
fn rejected_credentials_do_not_retry() {
    let mut r = Rig::new(settings());
    r.feed(Input::Start);
    let a = r.feed(Input::ConnectFailed {
        reason: "token request: 401 Unauthorized: bad key".into(),
        retry: false,
        retry_after: None,
    });
    assert_eq!(states(&a), vec![State::Error]);
    assert_eq!(r.m.next_deadline(), None);
}

#[test]
fn zero_reconnect_attempts_errors_at_once() {
    let mut r = Rig::live(Settings {
        reconnect_attempts: 0,
        ..settings()
    });
    let a = r.feed(Input::Closed { reason: "x".into() });
    assert_eq!(states(&a), vec![State::Error]);
}

#[test]
fn webrtc_failure_falls_back_to_websocket_then_retries_webrtc_later() {
    let mut r = Rig::new(Settings {
        fallback: true,
        ..settings()
    });
    r.feed(Input::Start);
    let a = r.feed(Input::ConnectFailed {
        reason: "ICE failed".into(),
        retry: true,
        retry_after: None,
    });
    assert_eq!(
        a.last(),
        Some(&Action::Connect {
            transport: TransportKind::Websocket,
            attempt: 1
        })
    );
    assert_eq!(r.m.transport(), TransportKind::Websocket);
    r.feed(Input::ConnectFailed {
        reason: "refused".into(),
        retry: true,
        retry_after: None,
    });
    assert_eq!(r.m.state(), State::Reconnecting);
    let a = r.run_to_deadline();
    assert_eq!(
        a,
        vec![Action::Connect {
            transport: TransportKind::Webrtc,
            attempt: 2
        }]
    );
}

#[test]
fn stop_during_connect_then_late_connected_disconnects() {
    let mut r = Rig::new(settings());
    r.feed(Input::Start);
    r.feed(Input::Stop);
    let a = r.feed(Input::Connected);
    assert_eq!(a, vec![Action::Disconnect]);
    assert_eq!(r.m.state(), State::Idle);
}

#[test]
fn idle_timeout_ends_a_quiet_session() {
    let mut r = Rig::live(settings());
    assert!(r.advance(Duration::from_secs(20)).is_empty());
    r.server(ServerEvent::SpeechStarted { item_id: None });
    assert!(
        r.advance(Duration::from_secs(20)).is_empty(),
        "speech reset the idle clock"
    );
    let a = r.advance(Duration::from_secs(10));
    assert_eq!(states(&a), vec![State::Idle]);
    assert!(has(&a, &Action::SessionEnded(StopReason::IdleTimeout)));
    assert!(has(&a, &Action::Earcon(Earcon::Stop)));
}

#[test]
fn idle_timeout_waits_while_a_response_runs_and_can_be_disabled() {
    let mut r = Rig::live(settings());
    r.server(ServerEvent::ResponseCreated {
        response_id: "r1".into(),
    });
    assert!(r.advance(Duration::from_secs(40)).is_empty());
    r.server(ServerEvent::ResponseDone {
        usage: None,
        outcome: ResponseOutcome::Completed,
    });
    assert_eq!(
        states(&r.advance(Duration::from_secs(30))),
        vec![State::Idle]
    );

    let mut r = Rig::live(Settings {
        idle_timeout: None,
        ..settings()
    });
    assert!(r.advance(Duration::from_secs(3000)).is_empty());
}

#[test]
fn max_session_rolls_over_without_earcons_or_counting_a_session() {
    let mut r = Rig::live(Settings {
        idle_timeout: None,
        ..settings()
    });
    let a = r.advance(Duration::from_secs(55 * 60));
    assert!(has(&a, &Action::Disconnect));
    assert_eq!(states(&a), vec![State::Connecting]);
    assert!(a.iter().all(|x| !matches!(x, Action::Earcon(_))));
    assert!(matches!(a.last(), Some(Action::Connect { .. })));
    r.feed(Input::Connected);
    assert_eq!(r.m.stats().sessions, 1);
    assert_eq!(r.m.state(), State::Listening);
}

#[test]
fn session_expired_error_rolls_over() {
    let mut r = Rig::live(settings());
    let a = r.server(ServerEvent::Error {
        code: Some("session_expired".into()),
        message: "expired".into(),
        about: None,
    });
    assert_eq!(states(&a), vec![State::Connecting]);
}

#[test]
fn inputs_out_of_place_are_ignored() {
    let mut r = Rig::new(settings());
    assert!(r.feed(Input::SendText("x".into())).is_empty());
    assert!(r
        .server(ServerEvent::AudioStarted { item_id: None })
        .is_empty());
    assert!(r
        .feed(Input::ToolResult {
            call_id: "c".into(),
            output: "o".into()
        })
        .is_empty());
    assert!(r.feed(Input::Closed { reason: "x".into() }).is_empty());
    assert!(r
        .feed(Input::ConnectFailed {
            reason: "x".into(),
            retry: true,
            retry_after: None,
        })
        .is_empty());
    assert!(r.feed(Input::PlaybackDrained).is_empty());
    assert!(r.feed(Input::Tick).is_empty());
    assert_eq!(r.m.state(), State::Idle);
}

#[test]
fn earcons_can_be_switched_off() {
    let mut r = Rig::new(Settings {
        earcons: false,
        ..settings()
    });
    let a = r.feed(Input::Start);
    assert!(a.iter().all(|x| !matches!(x, Action::Earcon(_))));
}

#[test]
fn every_state_has_a_led_pattern_and_name() {
    let all = [
        (State::Idle, LedPattern::Off, "idle"),
        (State::Connecting, LedPattern::SlowBlink, "connecting"),
        (State::Listening, LedPattern::On, "listening"),
        (State::Speaking, LedPattern::Breathing, "speaking"),
        (State::Reconnecting, LedPattern::SlowBlink, "reconnecting"),
        (State::Error, LedPattern::FastBlink, "error"),
    ];
    for (s, led, name) in all {
        assert_eq!(LedPattern::for_state(s), led);
        assert_eq!(s.as_str(), name);
    }
}

#[test]
fn the_daily_limit_stops_a_conversation_when_it_runs_out() {
    let mut r = Rig::new(Settings {
        idle_timeout: None,
        ..settings()
    });
    r.feed(Input::BudgetLeft(Some(Duration::from_secs(90))));
    r.feed(Input::Start);
    r.advance(Duration::from_secs(2));
    r.feed(Input::Connected);
    let at = r.m.next_deadline().expect("the budget sets a deadline");
    assert_eq!(at, r.now + Duration::from_secs(90));
    let a = r.run_to_deadline();
    assert_eq!(states(&a), vec![State::Idle]);
    assert!(
        a.contains(&Action::SessionEnded(StopReason::DailyLimit)),
        "{a:?}"
    );
    // Only live time counts: the 2 s spent connecting are free.
    assert_eq!(spent(&a), vec![Duration::from_secs(90)]);
    assert!(r.m.last_error().contains("session.daily_limit_s"));
}

#[test]
fn time_spent_before_a_reconnect_counts_against_the_rest() {
    let mut r = Rig::new(Settings {
        idle_timeout: None,
        ..settings()
    });
    r.feed(Input::BudgetLeft(Some(Duration::from_secs(100))));
    r.feed(Input::Start);
    r.feed(Input::Connected);
    r.now += Duration::from_secs(30);
    let a = r.feed(Input::Closed {
        reason: "gone".into(),
    });
    assert_eq!(spent(&a), vec![Duration::from_secs(30)]);
    r.run_to_deadline(); // the retry
    r.feed(Input::Connected);
    assert_eq!(r.m.next_deadline(), Some(r.now + Duration::from_secs(70)));
}

#[test]
fn without_a_limit_live_time_is_still_reported() {
    let mut r = Rig::live(settings());
    r.now += Duration::from_secs(5);
    let a = r.feed(Input::Stop);
    assert_eq!(spent(&a), vec![Duration::from_secs(5)]);
    assert!(!a.contains(&Action::SessionEnded(StopReason::DailyLimit)));
}

#[test]
fn a_retry_waits_as_long_as_the_service_asked() {
    let mut r = Rig::new(Settings {
        fallback: true,
        ..settings()
    });
    r.feed(Input::Start);
    let a = r.feed(Input::ConnectFailed {
        reason: "rate limited".into(),
        retry: true,
        retry_after: Some(Duration::from_secs(2)),
    });
    // Not the 0.5 s backoff, and no fallback to the other transport meanwhile.
    assert_eq!(states(&a), vec![State::Reconnecting]);
    assert!(
        !a.iter().any(|a| matches!(a, Action::Connect { .. })),
        "{a:?}"
    );
    assert!(r.m.next_deadline().expect("a retry") >= r.now + Duration::from_secs(2));
}

#[test]
fn changed_tools_reach_a_live_session_that_can_be_reconfigured() {
    let mut r = Rig::new(settings());
    assert!(sends(&r.feed(Input::ToolsChanged)).is_empty(), "idle");
    r.feed(Input::Start);
    assert!(
        sends(&r.feed(Input::ToolsChanged)).is_empty(),
        "connecting: the first update has them"
    );
    let mut r = Rig::live(settings());
    assert_eq!(
        sends(&r.feed(Input::ToolsChanged)),
        vec![ClientEvent::ToolsUpdate]
    );
    let mut live = settings();
    live.rules.configured_on_open = true;
    let mut r = Rig::live(live);
    assert!(
        sends(&r.feed(Input::ToolsChanged)).is_empty(),
        "configured as it opened"
    );
}
