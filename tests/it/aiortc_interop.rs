//! Interop with a WebRTC stack we did not write: aiortc (Python) plays the service. Our
//! transport places the call, events cross the data channel both ways, and a tone sent from
//! the microphone comes back out of the speaker through aiortc's echo.

use std::time::{Duration, Instant};

use realtime_voiced::session::{ClientEvent, ServerEvent};
use realtime_voiced::transport::LinkEvent;
use testkit::aiortc::fetch_stats;
use testkit::link::{
    context, install_crypto_and_logs, loopback_config, play_tone_burst, webrtc_connected,
};
use testkit::signals::analyse;
use tokio::time::timeout;

const TOKEN: &str = "test-ephemeral-token";

async fn next_server_event(events: &mut tokio::sync::mpsc::Receiver<LinkEvent>) -> ServerEvent {
    match timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(LinkEvent::Server(e))) => e,
        other => panic!("expected a server event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_aiortc_carries_events_and_audio_both_ways() {
    install_crypto_and_logs();
    let (_service, base) = testkit::aiortc_service_or_skip!();
    let (ctx, mic, speaker) = context(loopback_config(&base), 64);

    let started = Instant::now();
    let mut link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(20)).await;
    eprintln!(
        "connect to aiortc on loopback: {} ms",
        started.elapsed().as_millis()
    );

    assert_eq!(
        next_server_event(&mut link.events).await,
        ServerEvent::SessionCreated {
            session_id: "sess_rtc_aiortc_1".into()
        }
    );
    link.commands
        .send(ClientEvent::SessionUpdate)
        .await
        .expect("link takes commands");
    assert_eq!(
        next_server_event(&mut link.events).await,
        ServerEvent::SessionUpdated
    );

    // One second of 440 Hz, then silence, in real time; aiortc echoes it back.
    play_tone_burst(mic, 1000, 1500).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = analyse(&speaker.take());
    eprintln!("echo from aiortc: {report:?}");
    assert!(report.peak_rms > 2000.0, "the tone came back: {report:?}");
    assert!(
        (report.zero_crossing_hz - 440.0).abs() < 20.0,
        "at 440 Hz: {report:?}"
    );
    assert!(report.goertzel_ratio > 20.0, "a clean tone: {report:?}");
    assert!(
        report.tail_rms < report.peak_rms / 20.0,
        "silence after: {report:?}"
    );

    // Dropping the commands sender hangs the call up.
    let mut events = link.events;
    drop(link.commands);
    let closed = timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(LinkEvent::Closed { reason }) => break Some(reason),
                Some(_) => continue,
                None => break None,
            }
        }
    })
    .await
    .expect("the link ends");
    eprintln!("link ended: {closed:?}");
    let stats = fetch_stats(&base).await;
    assert_eq!(
        stats["hangups"],
        serde_json::json!(["rtc_aiortc_1"]),
        "{stats}"
    );
    let events = stats["events"].as_array().expect("events");
    assert!(
        events.contains(&serde_json::json!({"label": "oai-events", "ordered": true})),
        "{stats}"
    );
    assert!(
        events.contains(&serde_json::json!({"type": "session.update"})),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_service_closes_the_link_after_the_grace() {
    install_crypto_and_logs();
    let (mut service, base) = testkit::aiortc_service_or_skip!();
    let (ctx, _mic, _speaker) = context(loopback_config(&base), 64);
    let mut link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(20)).await;

    // The service dies without a word: no DTLS close, no SCTP abort, just silence.
    service.kill();
    let killed = Instant::now();
    let reason = timeout(Duration::from_secs(30), async {
        loop {
            match link.events.recv().await {
                Some(LinkEvent::Closed { reason }) => break reason,
                Some(_) => continue,
                None => panic!("the link ended without saying why"),
            }
        }
    })
    .await
    .expect("a vanished service is noticed");
    let noticed = killed.elapsed();
    eprintln!(
        "closed {} ms after the service vanished: {reason}",
        noticed.as_millis()
    );
    assert!(
        noticed < Duration::from_secs(3),
        "a dead service is noticed within 3 s, not {} ms",
        noticed.as_millis()
    );
    // The grace ran out, or ICE gave up first (the daemon prefixes "connection lost: ").
    assert!(
        reason.contains("no media path") || reason.contains("failed"),
        "{reason}"
    );
}
