use super::*;

const PERIOD: usize = 480;

fn settings() -> JitterSettings {
    JitterSettings {
        min_ms: 40,
        start_ms: 60,
        max_ms: 100,
        step_ms: 20,
        calm_ms: 1_000,
        hold_ms: 100,
    }
}

fn ramp(start: i16, n: usize) -> Vec<i16> {
    (0..n).map(|i| start.wrapping_add(i as i16) | 1).collect()
}

#[test]
fn waits_for_the_target_then_plays_in_order() {
    let (mut tx, mut jb) = channel(48_000, settings());
    let mut out = [0i16; PERIOD];
    assert_eq!(push(&mut tx, &ramp(0, 2000)), 0);
    // 2000 samples < 60 ms (2880): silence while the pre-buffer fills.
    assert_eq!(jb.fill(&mut out).audio, 0);
    assert!(out.iter().all(|&s| s == 0));
    push(&mut tx, &ramp(2000, 2000));
    let f = jb.fill(&mut out);
    assert_eq!(f.audio, PERIOD);
    assert_eq!(&out[..], &ramp(0, 2000)[..PERIOD]);
}

#[test]
fn a_short_tail_still_plays_after_the_target_time() {
    let (mut tx, mut jb) = channel(48_000, settings());
    let mut out = [0i16; PERIOD];
    push(&mut tx, &ramp(0, 500));
    let mut silent = 0;
    let mut played = Vec::new();
    for _ in 0..20 {
        let f = jb.fill(&mut out);
        if f.audio == 0 && played.is_empty() {
            silent += 1;
        }
        played.extend_from_slice(&out[..f.audio]);
    }
    assert_eq!(played, ramp(0, 500));
    // 60 ms of waiting = 6 periods of 10 ms.
    assert_eq!(silent, 6);
}

#[test]
fn underrun_fills_silence_counts_and_grows_the_target() {
    let (mut tx, mut jb) = channel(48_000, settings());
    let mut out = [7i16; PERIOD];
    push(&mut tx, &ramp(0, 3000));
    let mut audio = 0;
    for _ in 0..7 {
        audio += jb.fill(&mut out).audio;
    }
    assert_eq!(audio, 3000);
    // The last period was partial: its tail is silence.
    assert!(out[3000 - 6 * PERIOD..].iter().all(|&s| s == 0));
    assert_eq!(jb.underruns(), 0);
    assert_eq!(jb.target_ms(), 60);
    // Audio comes back within the hold: that was jitter.
    push(&mut tx, &ramp(0, 480));
    let f = jb.fill(&mut out);
    assert_eq!(f.audio, 0, "re-buffering after an underrun");
    assert_eq!(jb.underruns(), 1);
    assert_eq!(jb.target_ms(), 80);
    // Repeated jitter grows it to the ceiling, never past.
    for _ in 0..5 {
        // Re-buffer, play the 10 ms, run dry for less than the hold.
        for _ in 0..12 {
            jb.fill(&mut out);
        }
        push(&mut tx, &ramp(0, 480));
    }
    jb.fill(&mut out);
    assert_eq!(jb.underruns(), 6);
    assert_eq!(jb.target_ms(), 100);
}

#[test]
fn calm_playback_shrinks_the_target_to_the_floor() {
    let (mut tx, mut jb) = channel(48_000 * 10, settings());
    let mut out = [0i16; PERIOD];
    // One underrun: target 80 ms.
    push(&mut tx, &ramp(0, 3000));
    for _ in 0..8 {
        jb.fill(&mut out);
    }
    push(&mut tx, &ramp(0, 48_000 * 4));
    jb.fill(&mut out);
    assert_eq!(jb.target_ms(), 80);
    // 4 s of steady audio: a step down per calm second, down to the 40 ms floor.
    for _ in 0..400 {
        jb.fill(&mut out);
    }
    assert_eq!(jb.target_ms(), 40);
    assert_eq!(jb.underruns(), 1);
}

#[test]
fn drained_is_reported_once_after_the_hold() {
    let (mut tx, mut jb) = channel(48_000, settings());
    let mut out = [0i16; PERIOD];
    push(&mut tx, &ramp(0, 4800));
    let mut drained = 0;
    let mut first = None;
    for i in 0..40 {
        if jb.fill(&mut out).drained {
            drained += 1;
            first.get_or_insert(i);
        }
    }
    assert_eq!(drained, 1);
    // 10 periods of audio, then 100 ms of hold.
    assert_eq!(first, Some(19));
    assert!(jb.is_idle());
    assert_eq!(jb.underruns(), 0, "the end of speech is not an underrun");
}

#[test]
fn flush_drops_everything_at_once() {
    let (mut tx, mut jb) = channel(48_000, settings());
    let mut out = [0i16; PERIOD];
    push(&mut tx, &ramp(0, 10_000));
    jb.fill(&mut out);
    assert!(jb.queued() > 0);
    jb.flush();
    assert_eq!(jb.queued(), 0);
    assert!(jb.is_idle());
    let f = jb.fill(&mut out);
    assert_eq!(f, Fill::default());
    assert!(out.iter().all(|&s| s == 0));
}

#[test]
fn a_full_ring_drops_and_counts_instead_of_growing() {
    let (mut tx, _jb) = channel(1000, settings());
    assert_eq!(push(&mut tx, &ramp(0, 800)), 0);
    assert_eq!(push(&mut tx, &ramp(0, 800)), 600);
}

/// Plays `seconds` of a paced source whose sample `i` is `signal(i)`, arriving 30 ms ahead of
/// the target (a burst at the start), one period out and one in; returns what is queued after,
/// what was cut, and what was played.
fn paced_call(
    paced: bool,
    signal: impl Fn(usize) -> i16,
    seconds: usize,
) -> (usize, u64, Vec<i16>) {
    let steady = JitterSettings {
        calm_ms: 60_000,
        ..settings()
    };
    let (mut tx, mut jb) = channel(48_000, steady);
    jb.set_paced(paced);
    let mut next = 90 * SAMPLES_PER_MS;
    let start: Vec<i16> = (0..next).map(&signal).collect();
    push(&mut tx, &start);
    let mut out = [0i16; PERIOD];
    let mut played = Vec::new();
    let mut packet = [0i16; PERIOD];
    for _ in 0..seconds * 100 {
        assert_eq!(jb.fill(&mut out).audio, PERIOD);
        played.extend_from_slice(&out);
        for s in packet.iter_mut() {
            *s = signal(next);
            next += 1;
        }
        push(&mut tx, &packet);
    }
    (jb.queued(), jb.shed_samples(), played)
}

fn tone(hz: f64, amplitude: f64) -> impl Fn(usize) -> i16 {
    move |i| (amplitude * (std::f64::consts::TAU * hz * i as f64 / 48_000.0).sin()).round() as i16
}

#[test]
fn a_paced_queue_longer_than_needed_is_cut_in_quiet_moments() {
    // 90 ms queued against a 60 ms target, 10 ms arriving between reads: never under 80
    // after a read, for a second. Cut by 30, it holds the target as each packet arrives.
    let (queued, shed, _) = paced_call(true, |_| 10, 3);
    assert_eq!(shed, 30 * SAMPLES_PER_MS as u64);
    assert_eq!(queued, 60 * SAMPLES_PER_MS);
}

/// As WebRTC plays on a device: a 20 ms packet every 20 ms, and two 10 ms periods read per
/// wake-up. Starts with `queued` ms; returns what is queued as the last packet arrives, and
/// what was dropped.
fn packets_call(queued: usize, seconds: usize) -> (usize, u64) {
    let steady = JitterSettings {
        calm_ms: 60_000,
        ..settings()
    };
    let (mut tx, mut jb) = channel(48_000, steady);
    jb.set_paced(true);
    push(&mut tx, &vec![10; queued * SAMPLES_PER_MS]);
    let mut out = [0i16; PERIOD];
    for _ in 0..seconds * 50 {
        for _ in 0..2 {
            assert_eq!(jb.fill(&mut out).audio, PERIOD);
        }
        push(&mut tx, &[10; 2 * PERIOD]);
    }
    (jb.queued(), jb.shed_samples())
}

#[test]
fn a_queue_at_its_target_is_left_alone_however_packets_fall() {
    // Falls 20 ms below the target before each packet: that is the packet, not excess.
    assert_eq!(packets_call(60, 3), (60 * SAMPLES_PER_MS, 0));
    // 20 ms more than the target (a burst at the start): that much is cut, once.
    assert_eq!(
        packets_call(80, 3),
        (60 * SAMPLES_PER_MS, 20 * SAMPLES_PER_MS as u64)
    );
}

#[test]
fn sound_without_a_pause_is_shortened_by_whole_periods_without_a_click() {
    // A deep voice's pitch (80 Hz: a 12.5 ms period), a low and a high one: the 30 ms over the
    // target come back within the call, and the wave stays whole: no step steeper than the
    // tone's own, no dip in its loudness.
    for hz in [80.0, 220.0, 440.0] {
        let amplitude = 8000.0;
        let (queued, shed, played) = paced_call(true, tone(hz, amplitude), 3);
        // What is left over is less than the shortest repeat (whole periods, 2.5 ms at
        // least): one more would cut below the target.
        let period = 48_000.0 / hz;
        let repeat = (period * (2.5 * 48.0 / period).ceil()).ceil() as usize;
        let target = 60 * SAMPLES_PER_MS;
        assert!(
            queued >= target && queued < target + repeat,
            "{hz} Hz: {queued} samples queued"
        );
        assert_eq!(shed, (90 * SAMPLES_PER_MS - queued) as u64);
        let steepest = amplitude * std::f64::consts::TAU * hz / 48_000.0;
        let step = played
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0);
        assert!(
            f64::from(step) <= steepest * 1.05 + 1.0,
            "{hz} Hz: a step of {step} against {steepest:.0}"
        );
        let period = period.ceil() as usize;
        for (i, w) in played.windows(period).enumerate().step_by(period) {
            let peak = w.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(
                f64::from(peak) >= amplitude * 0.95,
                "{hz} Hz: a dip to {peak} at sample {i}"
            );
        }
    }
}

#[test]
fn pauses_are_used_before_sound_is_shortened() {
    // A tone that stops for 20 ms every 250 ms, as speech pauses between words: the 30 ms come
    // back from three of its pauses, whole blocks of silence, and the sound is left whole.
    let with_pauses = |i: usize| {
        if i % 12_000 < 960 {
            0
        } else {
            tone(220.0, 8000.0)(i)
        }
    };
    let (queued, shed, _) = paced_call(true, with_pauses, 3);
    assert_eq!(
        (queued, shed),
        (60 * SAMPLES_PER_MS, 30 * SAMPLES_PER_MS as u64)
    );
}

#[test]
fn a_low_voice_is_cut_by_whole_periods_only() {
    // An 80 Hz voice with a narrow formant at 700 Hz (harmonics weighted around it): a period
    // is 600 samples. Two come out of the 30 ms over the target; the 5 ms left are less than a
    // period, and a fraction of one (over 5 ms, 0.93 alike at a lag of 136) is never taken.
    let vowel = |i: usize| {
        let t = i as f64 / 48_000.0;
        let sum: f64 = (1..=20)
            .map(|k| {
                let f = 80.0 * k as f64;
                (-((f - 700.0) / 80.0).powi(2)).exp()
                    * (std::f64::consts::TAU * f * t + k as f64).sin()
            })
            .sum();
        (3000.0 * sum).round() as i16
    };
    let (queued, shed, _) = paced_call(true, vowel, 4);
    assert_eq!(shed, 1200, "cut {shed} samples");
    assert_eq!(queued, 90 * SAMPLES_PER_MS - 1200);
}

#[test]
fn sound_that_does_not_repeat_and_audio_sent_ahead_are_never_cut() {
    // Noise (a consonant, a crowd): no repeat to join, so the delay stays.
    let noise = crate::audio::signals::white_noise(4 * 48_000, 5, 8192.0);
    let (queued, shed, _) = paced_call(true, |i| noise[i], 3);
    assert_eq!((queued, shed), (90 * SAMPLES_PER_MS, 0));
    // Not paced (the WebSocket sends answers ahead of time): the queue is the answer.
    let (queued, shed, _) = paced_call(false, |_| 10, 3);
    assert_eq!((queued, shed), (90 * SAMPLES_PER_MS, 0));
    let (queued, shed, _) = paced_call(false, tone(220.0, 8000.0), 3);
    assert_eq!((queued, shed), (90 * SAMPLES_PER_MS, 0));
}

#[test]
fn a_short_prebuffer_lowers_the_floor_with_it() {
    let short = JitterSettings::with_prebuffer(20);
    assert_eq!((short.start_ms, short.min_ms), (20, 20));
    let long = JitterSettings::with_prebuffer(120);
    assert_eq!((long.start_ms, long.min_ms), (120, 40));
    assert_eq!(
        JitterSettings::with_prebuffer(60),
        JitterSettings::default()
    );
    // Plays after 20 ms of audio, not 60.
    let (mut tx, mut jb) = channel(48_000, short);
    push(&mut tx, &ramp(0, 20 * SAMPLES_PER_MS));
    let mut out = [0i16; 480];
    assert_eq!(jb.fill(&mut out).audio, 480);
}
