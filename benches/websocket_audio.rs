//! Cost of the WebSocket audio path per 40 ms of audio: microphone frames to an
//! `input_audio_buffer.append` event, and an audio delta event to speaker samples.
//! Prints figures; asserts nothing. Run: `cargo bench --bench websocket_audio`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use realtime_voiced::audio::resample::{Downsampler, Upsampler};
use realtime_voiced::audio::FRAME_SAMPLES;
use realtime_voiced::config::{Config, TransportKind};
use realtime_voiced::transport::dialect::{Decoded, Dialect, RealtimeGa};

const ROUNDS: u32 = 5_000;

fn main() {
    let dialect = RealtimeGa::new(Arc::new(Config::default()), TransportKind::Websocket);
    let frame: Vec<i16> = (0..FRAME_SAMPLES)
        .map(|i| ((i as f64 * 0.057).sin() * 9000.0) as i16)
        .collect();

    // Capture: two 20 ms frames → 960 samples at 24 kHz → JSON text.
    let mut down = Downsampler::default();
    let (mut half, mut pending) = ([0i16; FRAME_SAMPLES / 2], Vec::with_capacity(FRAME_SAMPLES));
    let (mut scratch, mut text) = (Vec::new(), String::new());
    let start = Instant::now();
    for _ in 0..ROUNDS {
        pending.clear();
        for _ in 0..2 {
            let n = down.process(&frame, &mut half);
            pending.extend_from_slice(&half[..n]);
        }
        dialect.encode_audio_append(&pending, &mut scratch, &mut text);
        black_box(&text);
    }
    let capture = start.elapsed() / ROUNDS;

    // Playback: a 40 ms delta event → 1920 samples at 48 kHz.
    let bytes: Vec<u8> = pending.iter().flat_map(|s| s.to_le_bytes()).collect();
    let event = format!(
        r#"{{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"item_1","output_index":0,"content_index":0,"delta":"{}"}}"#,
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    let mut up = Upsampler::default();
    let (mut raw, mut pcm, mut out) = (Vec::new(), Vec::new(), vec![0i16; 2 * FRAME_SAMPLES]);
    let start = Instant::now();
    for _ in 0..ROUNDS {
        if let Decoded::AudioDelta { base64, .. } = dialect.decode(black_box(&event)) {
            raw.clear();
            let _ =
                base64::engine::general_purpose::STANDARD.decode_vec(base64.as_bytes(), &mut raw);
            pcm.clear();
            pcm.extend(
                raw.chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
            let n = up.process(&pcm, &mut out);
            black_box(&out[..n]);
        }
    }
    let playback = start.elapsed() / ROUNDS;

    let budget = 40_000.0;
    println!("websocket audio, per 40 ms of audio ({ROUNDS} rounds):");
    for (what, t) in [
        ("capture  (2 frames → append event)", capture),
        ("playback (delta event → 48 kHz)", playback),
    ] {
        let us = t.as_secs_f64() * 1e6;
        println!(
            "  {what}: {us:8.1} µs  ({:.2} % of real time)",
            100.0 * us / budget
        );
    }
}
