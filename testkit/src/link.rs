//! What a transport needs to place a call from a test: TLS, logs, a configuration for a service
//! on loopback, a microphone the test feeds and a speaker it reads.

use std::sync::Arc;
use std::time::Duration;

use realtime_voiced::audio::{MicFrame, FRAME_SAMPLES};
use realtime_voiced::config::{Config, Secret, TransportKind};
use realtime_voiced::transport::dialect::{Dialect, RealtimeGa};
use realtime_voiced::transport::{webrtc, Link, LinkContext, LinkEvent};
use tokio::sync::mpsc;

use crate::signals::TONE_HZ;
use crate::speaker::RecordingSpeaker;

/// The TLS provider reqwest needs. Process-wide and installed once: later calls do nothing.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The TLS provider, and logs (`RUST_LOG`, default `info`) shown with a failing test's output.
/// The log subscriber is process-wide: the first test to install one decides for all.
pub fn install_crypto_and_logs() {
    install_crypto();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// A configuration for a call to a service on 127.0.0.1, with no STUN server.
pub fn loopback_config(base_url: &str) -> Config {
    let mut config = Config::default();
    config.api.base_url = base_url.to_owned();
    config.transport.allow_loopback = true;
    config.transport.ice_servers = Vec::new();
    config.transport.connect_timeout_ms = 10_000;
    config
}

/// A link context whose microphone (holding up to `mic_frames`) is fed by the returned sender
/// and whose speaker records.
pub fn context(
    config: Config,
    mic_frames: usize,
) -> (LinkContext, mpsc::Sender<MicFrame>, Arc<RecordingSpeaker>) {
    let (tx, rx) = mpsc::channel(mic_frames);
    let speaker = Arc::new(RecordingSpeaker::default());
    let ctx = LinkContext::new(
        Arc::new(config),
        Arc::new(tokio::sync::Mutex::new(rx)),
        speaker.clone(),
    );
    (ctx, tx, speaker)
}

/// The dialect the daemon speaks over a WebRTC link in `ctx`.
pub fn webrtc_dialect(ctx: &LinkContext) -> Arc<dyn Dialect> {
    Arc::new(RealtimeGa::new(ctx.config.clone(), TransportKind::Webrtc))
}

/// A WebRTC call to the service `ctx` points at, with `token`, which must connect `within`.
pub async fn webrtc_connected(ctx: &LinkContext, token: &str, within: Duration) -> Link {
    tokio::time::timeout(
        within,
        webrtc::connect(ctx, webrtc_dialect(ctx), &Secret::new(token)),
    )
    .await
    .expect("connect is bounded")
    .expect("the call connects")
}

/// The dialect the daemon speaks over a WebSocket link in `ctx`.
pub fn websocket_dialect(ctx: &LinkContext) -> Arc<dyn Dialect> {
    Arc::new(RealtimeGa::new(
        ctx.config.clone(),
        TransportKind::Websocket,
    ))
}

/// Plays `tone_ms` of a 440 Hz tone then `silence_ms` of silence into the microphone, paced
/// like a real capture device (one 20 ms frame every 20 ms).
pub async fn play_tone_burst(mic: mpsc::Sender<MicFrame>, tone_ms: u32, silence_ms: u32) {
    play_tone_burst_in(mic, tone_ms, silence_ms, 20).await;
}

/// [`play_tone_burst`] in frames of `frame_ms` (10 or 20), one every `frame_ms`, as the
/// capture thread sends them with `audio.frame_ms`.
pub async fn play_tone_burst_in(
    mic: mpsc::Sender<MicFrame>,
    tone_ms: u32,
    silence_ms: u32,
    frame_ms: u32,
) {
    let len = FRAME_SAMPLES * frame_ms as usize / 20;
    let tone_frames = (tone_ms / frame_ms) as usize;
    let total = tone_frames + (silence_ms / frame_ms) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(frame_ms.into()));
    for f in 0..total {
        tick.tick().await;
        let mut frame = MicFrame::heard_now([0i16; FRAME_SAMPLES]);
        frame.len = len;
        if f < tone_frames {
            for (i, s) in frame.pcm[..len].iter_mut().enumerate() {
                let t = (f * len + i) as f64 / 48_000.0;
                *s = (10_000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16;
            }
        }
        if mic.send(frame).await.is_err() {
            return;
        }
    }
}

/// Hangs the call up (dropping the commands sender does) and waits up to 5 s for the link to
/// end; returns the reason it gave, `None` if its events ended without one.
pub async fn hang_up(link: Link) -> Option<String> {
    let mut events = link.events;
    drop(link.commands);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
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
    closed
}
