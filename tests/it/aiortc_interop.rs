//! Interop with a WebRTC stack we did not write: aiortc (Python) plays the service. Our
//! transport places the call, events cross the data channel both ways, and a tone sent from
//! the microphone comes back out of the speaker through aiortc's echo.

use std::time::{Duration, Instant};

use realtime_voiced::session::{ClientEvent, ServerEvent};
use realtime_voiced::transport::LinkEvent;
use testkit::aiortc::fetch_stats;
use testkit::link::{
    context, hang_up, install_crypto_and_logs, loopback_config, play_tone_burst,
    play_tone_burst_in, webrtc_connected,
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

    hang_up(link).await;
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

/// With `audio.frame_ms = 10` the microphone leaves in 10 ms Opus packets, which aiortc takes
/// as any WebRTC peer does (our offer says `minptime=10`), and echoes back as a clean tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_ms_frames_reach_aiortc_as_10_ms_packets_and_come_back() {
    install_crypto_and_logs();
    let (_service, base) = testkit::aiortc_service_or_skip!();
    let (ctx, mic, speaker) = context(loopback_config(&base), 64);
    let link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(20)).await;
    play_tone_burst_in(mic, 1000, 1500, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = analyse(&speaker.take());
    let stats = fetch_stats(&base).await;
    hang_up(link).await;
    eprintln!(
        "echo from aiortc: {report:?}; frames: {}",
        stats["opus_frame_ms"]
    );
    // 1 s of tone and 1.5 s of silence, 100 packets a second (a few may be in flight).
    let tens = stats["opus_frame_ms"]["10"].as_u64().unwrap_or(0);
    assert!(tens >= 240, "10 ms packets: {}", stats["opus_frame_ms"]);
    assert_eq!(
        stats["opus_frame_ms"].as_object().map(|sizes| sizes.len()),
        Some(1),
        "no packet of another length: {}",
        stats["opus_frame_ms"]
    );
    assert!(report.peak_rms > 2000.0, "the tone came back: {report:?}");
    assert!(
        (report.zero_crossing_hz - 440.0).abs() < 20.0,
        "at 440 Hz: {report:?}"
    );
    assert!(report.goertzel_ratio > 20.0, "a clean tone: {report:?}");
}

/// The Opus modes aiortc saw from us, in order: `[["celt", 120], ["hybrid", 300], ...]`.
fn opus_modes(stats: &serde_json::Value) -> Vec<(String, u64)> {
    stats["opus_modes"]
        .as_array()
        .expect("opus_modes")
        .iter()
        .map(|run| {
            (
                run[0].as_str().expect("mode").to_owned(),
                run[1].as_u64().expect("count"),
            )
        })
        .collect()
}

/// aiortc drops every tenth packet of ours as it arrives; its receiver reports say so, and
/// the microphone's Opus turns from CELT to VOIP with FEC (SILK or hybrid on the wire). On a
/// clean path it stays CELT throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_loss_turns_the_microphones_celt_into_voip_with_fec() {
    install_crypto_and_logs();
    for lose_every in ["0", "10"] {
        let (_service, base) = testkit::aiortc_service_or_skip!("--lose-every", lose_every);
        let (ctx, mic, _speaker) = context(loopback_config(&base), 64);
        let link = webrtc_connected(&ctx, TOKEN, Duration::from_secs(20)).await;
        // Readings come every 2.5 s of audio and a window spans at least 4 s: the switch is
        // due after 7.5 s; 12 s leaves room for a late first report.
        play_tone_burst(mic, 12_000, 0).await;
        // aiortc reports every 0.5–1.5 s: wait for one after the last packet, then hang up.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stats = fetch_stats(&base).await;
        hang_up(link).await;
        let modes = opus_modes(&stats);
        eprintln!(
            "lose every {lose_every}: aiortc dropped {}, saw {modes:?}",
            stats["dropped"]
        );
        // `Stats` counts what aiortc's reports say it lost, those after the microphone's last
        // reading of them included.
        let reported = ctx.stats.counts().uplink_packets_lost;
        eprintln!("reported lost: {reported}");
        let (first, _) = modes.first().expect("aiortc saw our audio");
        assert_eq!(first, "celt", "the call starts with CELT: {modes:?}");
        let sent: u64 = modes.iter().map(|(_, n)| n).sum();
        assert!(sent > 500, "aiortc saw {sent} packets");
        if lose_every == "0" {
            assert_eq!(modes.len(), 1, "a clean path stays CELT: {modes:?}");
            assert_eq!(reported, 0);
        } else {
            let dropped = stats["dropped"].as_u64().expect("dropped");
            // A dropped packet counts as lost once a later one arrives: the last may not.
            assert!(
                reported + 1 >= dropped && reported <= dropped,
                "{reported} reported lost of {dropped} dropped"
            );
            let (last, run) = modes.last().expect("modes");
            assert!(
                last != "celt" && *run > 50,
                "after the loss reports the packets are SILK or hybrid: {modes:?}"
            );
            let celt: u64 = modes
                .iter()
                .filter(|(mode, _)| mode == "celt")
                .map(|(_, n)| n)
                .sum();
            assert!(
                modes[1..].iter().all(|(mode, _)| mode != "celt") && celt >= 300,
                "one switch, after the first readings: {modes:?}"
            );
        }
    }
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
