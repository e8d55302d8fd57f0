//! Feeds WebRTC's audio processing N blocks of 10 ms at 48 kHz, set up as the daemon sets it up
//! for a call (`src/audio/echo.rs`: canceller with the extended filter and delay-agnostic
//! estimation, moderate suppression, moderate noise suppression, high-pass filter), with the
//! microphone hearing the speaker 40 ms late at half level. `run.sh` counts the instructions
//! this executes under qemu for two values of N; their difference is the cost of the blocks.

use webrtc_audio_processing::{
    Config, EchoCancellation, EchoCancellationSuppressionLevel, InitializationConfig,
    NoiseSuppression, NoiseSuppressionLevel, Processor,
};

const BLOCK: usize = 480;
const ECHO_DELAY: usize = 4 * BLOCK;

fn main() -> Result<(), String> {
    let blocks: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|_| format!("not a block count: {n}"))?,
        None => 1000,
    };
    let init = InitializationConfig {
        num_capture_channels: 1,
        num_render_channels: 1,
        ..InitializationConfig::default()
    };
    let mut ap = Processor::new(&init).map_err(|e| format!("cannot create: {e:?}"))?;
    ap.set_config(Config {
        echo_cancellation: Some(EchoCancellation {
            suppression_level: EchoCancellationSuppressionLevel::Moderate,
            enable_extended_filter: true,
            enable_delay_agnostic: true,
            stream_delay_ms: None,
        }),
        noise_suppression: Some(NoiseSuppression {
            suppression_level: NoiseSuppressionLevel::Moderate,
        }),
        enable_high_pass_filter: true,
        ..Config::default()
    });

    // The far end: xorshift noise, loud and soft in turns of 200 ms, so that the canceller
    // adapts and the suppressor has quiet spells; deterministic, so both builds see the same.
    let mut seed: u32 = 0x9e37_79b9;
    let mut far = [0f32; BLOCK];
    let mut near = [0f32; BLOCK];
    let mut echo = vec![0f32; ECHO_DELAY];
    let start = std::time::Instant::now();
    for b in 0..blocks {
        let level = if (b / 20) % 2 == 0 { 0.3 } else { 0.05 };
        for (i, (f, n)) in far.iter_mut().zip(near.iter_mut()).enumerate() {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *f = (seed as f32 / u32::MAX as f32 - 0.5) * level;
            let slot = (b * BLOCK + i) % ECHO_DELAY;
            *n = 0.5 * echo[slot];
            echo[slot] = *f;
        }
        ap.process_render_frame(&mut far)
            .map_err(|e| format!("render: {e:?}"))?;
        ap.process_capture_frame(&mut near)
            .map_err(|e| format!("capture: {e:?}"))?;
    }
    println!("{blocks} blocks in {:.3} s", start.elapsed().as_secs_f64());
    Ok(())
}
