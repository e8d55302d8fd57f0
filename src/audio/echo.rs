//! Echo cancellation and noise suppression with WebRTC's audio processing module.
//!
//! The canceller learns the path from our speaker to our microphone: it is given what playback
//! actually wrote (the far end, "render") and then the microphone (the near end, "capture"), in
//! 10 ms blocks, and removes the far end's echo from the near end. Delay-agnostic mode finds the
//! speaker-to-microphone delay itself, so ALSA buffer latencies need not be known exactly.
//!
//! The calls go straight to the C ABI of `webrtc-audio-processing-sys`: the safe wrapper
//! allocates a pointer array on every call, and this runs 200 times a second.

use std::ptr::NonNull;

use webrtc_audio_processing::{
    Config, EchoCancellation, EchoCancellationSuppressionLevel, InitializationConfig,
    NoiseSuppression, NoiseSuppressionLevel, VoiceDetection, VoiceDetectionLikelihood,
};
use webrtc_audio_processing_sys as ffi;

/// Samples in one processing block (10 ms at 48 kHz).
pub const BLOCK: usize = 480;

#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error("cannot start echo cancellation / noise suppression (error {0})")]
    Create(i32),
    #[error("echo cancellation failed on a block (error {0})")]
    Process(i32),
}

/// One of WebRTC's processors, freed when dropped.
struct Processor(NonNull<ffi::AudioProcessing>);

impl Processor {
    fn new(config: Config) -> Result<Self, EchoError> {
        let init = InitializationConfig {
            num_capture_channels: 1,
            num_render_channels: 1,
            enable_experimental_agc: false,
            enable_intelligibility_enhancer: false,
        };
        let mut code = 0;
        // SAFETY: `init` lives across the call; the result is checked for null.
        let raw = unsafe { ffi::audio_processing_create(&init, &mut code) };
        let ap = NonNull::new(raw).ok_or(EchoError::Create(code))?;
        let config: ffi::Config = config.into();
        // SAFETY: `ap` is a live processor; `config` lives across the call.
        unsafe { ffi::set_config(ap.as_ptr(), &config) };
        Ok(Processor(ap))
    }

    /// The capture side over `buf` (one channel of BLOCK floats) in place.
    fn capture(&mut self, buf: &mut [f32; BLOCK]) -> Result<(), EchoError> {
        let mut channel = buf.as_mut_ptr();
        // SAFETY: one channel of BLOCK floats, as the processor was configured.
        let code = unsafe { ffi::process_capture_frame(self.0.as_ptr(), &mut channel) };
        if code != 0 {
            return Err(EchoError::Process(code));
        }
        Ok(())
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        // SAFETY: created by audio_processing_create and freed once, here.
        unsafe { ffi::audio_processing_delete(self.0.as_ptr()) };
    }
}

pub struct EchoCanceller {
    ap: Processor,
    /// Noise suppression on its own, after what local barge-in listens to: suppressing noise
    /// also eats the soft, noise-like start of words (`s`, `f`), which barge-in must hear.
    denoiser: Option<Processor>,
    echo: bool,
    near: [f32; BLOCK],
    far: [f32; BLOCK],
}

// SAFETY: the processors are owned by one EchoCanceller and only used through `&mut self`, so
// they are never touched from two threads at once; moving them between threads is allowed.
unsafe impl Send for EchoCanceller {}

const SCALE: f32 = 1.0 / 32768.0;

fn to_float(out: &mut [f32; BLOCK], block: &[i16; BLOCK]) {
    for (f, &s) in out.iter_mut().zip(block) {
        *f = f32::from(s) * SCALE;
    }
}

fn to_int(out: &mut [i16; BLOCK], block: &[f32; BLOCK]) {
    for (s, &f) in out.iter_mut().zip(block) {
        *s = (f * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
    }
}

impl EchoCanceller {
    /// `None` when both are off: the microphone then passes through untouched.
    pub fn new(echo: bool, noise: bool) -> Result<Option<Self>, EchoError> {
        Self::build(echo, noise, false)
    }

    /// As [`new`](Self::new), for local barge-in: with WebRTC's voice detector
    /// ([`has_voice`](Self::has_voice)), and the noise suppression as a step of its own
    /// ([`denoise`](Self::denoise)) after [`cancel`](Self::cancel).
    pub fn with_separate_denoiser(echo: bool, noise: bool) -> Result<Option<Self>, EchoError> {
        Self::build(echo, noise, true)
    }

    fn build(echo: bool, noise: bool, barge_in: bool) -> Result<Option<Self>, EchoError> {
        if !echo && !noise {
            return Ok(None);
        }
        let separate = barge_in && echo && noise;
        let suppression = || NoiseSuppression {
            suppression_level: NoiseSuppressionLevel::Moderate,
        };
        let ap = Processor::new(Config {
            echo_cancellation: echo.then_some(EchoCancellation {
                suppression_level: EchoCancellationSuppressionLevel::Moderate,
                // Robust to the unknown and drifting delay of two ALSA buffers.
                enable_extended_filter: true,
                enable_delay_agnostic: true,
                stream_delay_ms: None,
            }),
            noise_suppression: (noise && !separate).then(suppression),
            // Removes the DC offset and rumble cheap microphones add.
            enable_high_pass_filter: true,
            // WebRTC's own voice detector on the cleaned microphone, for local barge-in: a
            // low likelihood, so that noise and residual echo are not taken for a voice. Only
            // barge-in reads it (it costs 4 % of the canceller's time).
            voice_detection: barge_in.then_some(VoiceDetection {
                detection_likelihood: VoiceDetectionLikelihood::Low,
            }),
            ..Config::default()
        })?;
        let denoiser = if separate {
            Some(Processor::new(Config {
                noise_suppression: Some(suppression()),
                ..Config::default()
            })?)
        } else {
            None
        };
        Ok(Some(EchoCanceller {
            ap,
            denoiser,
            echo,
            near: [0.0; BLOCK],
            far: [0.0; BLOCK],
        }))
    }

    /// Whether it cancels the echo (it may be here for the noise suppression alone).
    pub fn cancels_echo(&self) -> bool {
        self.echo
    }

    /// Cleans one 10 ms microphone block in place, given the 10 ms the speaker played alongside.
    pub fn process(
        &mut self,
        near: &mut [i16; BLOCK],
        far: &[i16; BLOCK],
    ) -> Result<(), EchoError> {
        self.cancel(near, far)?;
        self.denoise(near)
    }

    /// The canceller's step (and the noise suppression, unless separate).
    pub fn cancel(&mut self, near: &mut [i16; BLOCK], far: &[i16; BLOCK]) -> Result<(), EchoError> {
        if self.echo {
            to_float(&mut self.far, far);
            let mut channel = self.far.as_mut_ptr();
            // SAFETY: one channel of BLOCK floats, as the processor was configured.
            let code = unsafe { ffi::process_render_frame(self.ap.0.as_ptr(), &mut channel) };
            if code != 0 {
                return Err(EchoError::Process(code));
            }
        }
        to_float(&mut self.near, near);
        self.ap.capture(&mut self.near)?;
        to_int(near, &self.near);
        Ok(())
    }

    /// The separate noise suppression, when there is one.
    pub fn denoise(&mut self, near: &mut [i16; BLOCK]) -> Result<(), EchoError> {
        if let Some(denoiser) = self.denoiser.as_mut() {
            to_float(&mut self.near, near);
            denoiser.capture(&mut self.near)?;
            to_int(near, &self.near);
        }
        Ok(())
    }

    /// Whether the last cleaned block held a voice, by WebRTC's detector (always false unless
    /// built for barge-in).
    pub fn has_voice(&self) -> bool {
        // SAFETY: `ap` is a live processor.
        let stats = unsafe { ffi::get_stats(self.ap.0.as_ptr()) };
        stats.has_voice.has_value && stats.has_voice.value
    }

    /// The canceller's own estimate of its echo return loss enhancement, in dB.
    pub fn erle_db(&self) -> Option<f64> {
        // SAFETY: `ap` is a live processor.
        let stats = unsafe { ffi::get_stats(self.ap.0.as_ptr()) };
        stats.echo_return_loss_enhancement.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far_end(n: usize, seed: u64) -> Vec<i16> {
        crate::audio::signals::speech_like(n, seed, true)
    }

    /// Runs the canceller over `near` block by block with `far` as the reference.
    fn cancel(aec: &mut EchoCanceller, near: &[i16], far: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(near.len());
        let mut block = [0i16; BLOCK];
        let mut far_block = [0i16; BLOCK];
        for (nb, fb) in near.chunks_exact(BLOCK).zip(far.chunks_exact(BLOCK)) {
            block.copy_from_slice(nb);
            far_block.copy_from_slice(fb);
            aec.process(&mut block, &far_block).expect("process");
            out.extend_from_slice(&block);
        }
        out
    }

    fn energy(s: &[i16]) -> f64 {
        s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() + 1.0
    }

    /// The speaker leaks into the microphone 30 or 60 ms later at half amplitude; after the
    /// canceller has converged, the echo left in the microphone must be well below what came in.
    #[test]
    fn echo_is_reduced_by_the_real_canceller() {
        let seconds = 12;
        let n = 48_000 * seconds;
        let far = far_end(n, 0x2545_F491_4F6C_DD1D);
        for delay_ms in [30, 60] {
            let delay = 48 * delay_ms;
            let near: Vec<i16> = (0..n)
                .map(|i| if i >= delay { far[i - delay] / 2 } else { 0 })
                .collect();
            let mut aec = EchoCanceller::new(true, false)
                .expect("canceller")
                .expect("enabled");
            let out = cancel(&mut aec, &near, &far);
            // Measure over the last 4 s, after convergence.
            let from = 48_000 * (seconds - 4);
            let erle = 10.0 * (energy(&near[from..]) / energy(&out[from..])).log10();
            eprintln!("echo delayed {delay_ms} ms, gain 0.5: reduced by {erle:.1} dB");
            assert!(erle > 20.0, "only {erle:.1} dB of echo reduction");
        }
    }

    /// Both talk at once (barge-in): the user's voice must come through the canceller.
    #[test]
    fn double_talk_keeps_the_user_and_drops_the_echo() {
        let seconds = 12;
        let n = 48_000 * seconds;
        let far = far_end(n, 0x2545_F491_4F6C_DD1D);
        // A different voice: its own noise and syllables a quarter of a cycle off the far end's.
        let shift = 48_000 / 12;
        let user = far_end(n + shift, 0x1234_5678_9ABC_DEF1)[shift..].to_vec();
        let delay = 48 * 45;
        let echo: Vec<i16> = (0..n)
            .map(|i| if i >= delay { far[i - delay] / 2 } else { 0 })
            .collect();
        // The user starts talking at 8 s, after the canceller has converged on the echo.
        let talk_from = 48_000 * 8;
        let near: Vec<i16> = (0..n)
            .map(|i| echo[i].saturating_add(if i >= talk_from { user[i] } else { 0 }))
            .collect();
        let mut aec = EchoCanceller::new(true, false)
            .expect("canceller")
            .expect("enabled");
        let out = cancel(&mut aec, &near, &far);
        let user_in: Vec<i16> = user[talk_from..].to_vec();
        let kept = 10.0 * (energy(&out[talk_from..]) / energy(&user_in)).log10();
        eprintln!("double talk (echo 6 dB under the user): the user comes out at {kept:+.1} dB");
        assert!(
            kept > -6.0,
            "the user's voice was suppressed by {kept:.1} dB"
        );
    }

    /// Near-end speech over silence on the far end must come through (the canceller must not
    /// simply mute the microphone).
    #[test]
    fn near_end_speech_passes_when_the_speaker_is_quiet() {
        let n = 48_000 * 4;
        let near = far_end(n, 0x9E37_79B9_7F4A_7C15);
        let mut aec = EchoCanceller::new(true, true)
            .expect("canceller")
            .expect("enabled");
        let silence = [0i16; BLOCK];
        let mut out = Vec::with_capacity(n);
        let mut block = [0i16; BLOCK];
        for nb in near.chunks_exact(BLOCK) {
            block.copy_from_slice(nb);
            aec.process(&mut block, &silence).expect("process");
            out.extend_from_slice(&block);
        }
        let from = 48_000 * 2;
        let loss = 10.0 * (energy(&near[from..]) / energy(&out[from..])).log10();
        assert!(loss < 6.0, "near-end speech lost {loss:.1} dB");
    }

    #[test]
    fn both_off_means_no_processor() {
        assert!(EchoCanceller::new(false, false).expect("ok").is_none());
    }
}
