//! How long a WebRTC call takes to come up on loopback, and what the audio path costs per
//! 20 ms frame. Prints figures; asserts nothing.
//!
//! `cargo bench --bench webrtc_connect`

use std::sync::Arc;
use std::time::{Duration, Instant};

use realtime_voiced::audio::opus::{OpusEncoder, MAX_PACKET};
use realtime_voiced::audio::{MicFrame, NullAudio, FRAME_SAMPLES};
use realtime_voiced::config::{Config, Secret, TransportKind};
use realtime_voiced::transport::dialect::RealtimeGa;
use realtime_voiced::transport::{webrtc, LinkContext};
use testkit::sim::{self, SimOptions};

const CALLS: usize = 20;

fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    println!(
        "{label}: n={n} min={:.1} median={:.1} p90={:.1} max={:.1} ms",
        ms[0],
        ms[n / 2],
        ms[(n * 9) / 10],
        ms[n - 1]
    );
}

/// `CALLS` calls to the service at `base_url`, each from the offer to the data channel open.
async fn connects(label: &str, base_url: String, token: &str) {
    let mut config = Config::default();
    config.api.base_url = base_url;
    config.transport.allow_loopback = true;
    config.transport.ice_servers = Vec::new();
    let config = Arc::new(config);
    let mut times = Vec::new();
    for _ in 0..CALLS {
        let (_mic, rx) = tokio::sync::mpsc::channel::<MicFrame>(8);
        let ctx = LinkContext::new(
            config.clone(),
            Arc::new(tokio::sync::Mutex::new(rx)),
            Arc::new(NullAudio),
        );
        let dialect = Arc::new(RealtimeGa::new(config.clone(), TransportKind::Webrtc));
        let started = Instant::now();
        let link = webrtc::connect(&ctx, dialect, &Secret::new(token))
            .await
            .expect("connect");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        drop(link.commands);
        let mut events = link.events;
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while events.recv().await.is_some() {}
        })
        .await;
    }
    summary(label, times);
}

fn opus_per_frame() {
    let mut enc = OpusEncoder::new().expect("encoder");
    let mut packet = [0u8; MAX_PACKET];
    let mut frame = [0i16; FRAME_SAMPLES];
    for (i, s) in frame.iter_mut().enumerate() {
        *s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 48_000.0).sin()) as i16;
    }
    let frames = 5000;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..frames {
        bytes += enc.encode(&frame, &mut packet).expect("encode");
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / frames as f64;
    println!(
        "opus encode, 20 ms mono 48 kHz frame: {per:.1} µs/frame ({:.2}% of real time), {:.0} bytes/packet",
        per / 200.0,
        bytes as f64 / frames as f64
    );
}

/// Encode cost on speech (what the daemon sends) and on a steady tone, by how the encoder codes:
/// the two signals are coded differently, and a tone's figure says little about a call.
fn opus_profiles() {
    use audiopus::coder::Encoder;
    use audiopus::{Application, Bitrate, Channels, SampleRate};
    use realtime_voiced::audio::opus::OpusProfile;
    let dir = tempfile::tempdir().expect("tempdir");
    let talk = testkit::signals::speech(
        dir.path(),
        "The kitchen light is on, the oven is warm, and the kettle has just boiled.",
    );
    let tone = testkit::signals::tone(440.0, 8000.0, talk.len());
    // libopus's default complexity, as the daemon coded before it chose 5.
    let voip_9 = || {
        let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).ok()?;
        enc.set_bitrate(Bitrate::BitsPerSecond(32_000)).ok()?;
        enc.set_inband_fec(true).ok()?;
        enc.set_packet_loss_perc(5).ok()?;
        enc.set_complexity(9).ok()?;
        Some(enc)
    };
    for (what, signal) in [("speech", &talk), ("440 Hz tone", &tone)] {
        let mut packet = [0u8; MAX_PACKET];
        let mut run = |label: &str, encode: &mut dyn FnMut(&[i16], &mut [u8]) -> usize| {
            let (mut frames, mut bytes) = (0usize, 0usize);
            let started = Instant::now();
            for _ in 0..5 {
                for frame in signal.chunks_exact(FRAME_SAMPLES) {
                    bytes += encode(frame, &mut packet);
                    frames += 1;
                }
            }
            let per = started.elapsed().as_secs_f64() * 1e6 / frames as f64;
            println!(
                "opus encode, {what}, {label}: {per:.1} µs/frame ({:.2}% of real time), {:.0} bytes/packet",
                per / 200.0,
                bytes as f64 / frames as f64
            );
        };
        if let Some(enc) = voip_9() {
            run("VOIP at 32 kbit/s, complexity 9", &mut |f, p| {
                enc.encode(f, p).unwrap_or(0)
            });
        }
        for (label, profile) in [
            (
                "the service's (VOIP at 32 kbit/s, complexity 5)",
                OpusProfile::SERVICE,
            ),
            (
                "the device's (CELT at 80 kbit/s, complexity 5)",
                OpusProfile::DEVICE,
            ),
        ] {
            let mut enc = OpusEncoder::with_profile(profile).expect("encoder");
            run(label, &mut |f, p| {
                let frame: realtime_voiced::audio::Frame = f.try_into().expect("frame");
                let p: &mut [u8; MAX_PACKET] = p.try_into().expect("packet");
                enc.encode(&frame, p).unwrap_or(0)
            });
        }
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    opus_per_frame();
    opus_profiles();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = sim::start(SimOptions::default()).await;
        connects(
            "connect to the simulator on 127.0.0.1 (offer+POST+ICE+DTLS+SCTP+channel open)",
            sim.base_url(),
            "bench",
        )
        .await;
    });
    // The same against a WebRTC stack we did not write, when aiortc is installed.
    if testkit::aiortc::venv_python().exists() {
        match testkit::aiortc::start_service() {
            Ok((_service, url)) => rt.block_on(connects(
                "connect to the aiortc service on 127.0.0.1 (offer+POST+ICE+DTLS+SCTP+channel open)",
                url,
                // The one token the stand-in accepts (tests/peers/aiortc_service.py).
                "test-ephemeral-token",
            )),
            Err(e) => println!("aiortc service: {e}"),
        }
    } else {
        println!("aiortc: no target/venv (run `cargo test --test it aiortc_interop` once)");
    }
}
