use super::*;

const MS: usize = 48;

/// A recording as a room would give it: the chirp after 200 ms of quiet, heard `delay_ms`
/// later at `gain`, with a little noise; the canceller leaves `left` of it once settled.
fn room(delay_ms: usize, gain: f64, left: f64, cancelled: bool) -> Recording {
    let n = RECORD_MS as usize * MS;
    let mut far = vec![0i16; n];
    let sound = chirp();
    far[200 * MS..200 * MS + sound.len()].copy_from_slice(&sound);
    let mut seed = 1u32;
    let mut noise = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        f64::from((seed >> 16) as i16 as i32 % 30)
    };
    let raw: Vec<i16> = (0..n)
        .map(|i| {
            let echo = i
                .checked_sub(delay_ms * MS)
                .map_or(0.0, |j| f64::from(far[j]) * gain);
            (echo + noise()).round() as i16
        })
        .collect();
    let clean = raw
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            // Converging over the first sweep, then steady.
            let settle = (i as f64 / (600.0 * MS as f64)).min(1.0);
            (f64::from(x) * (1.0 - settle * (1.0 - left))).round() as i16
        })
        .collect();
    Recording {
        far,
        raw,
        clean,
        cancelled,
    }
}

#[test]
fn the_delay_the_echo_and_what_the_canceller_removes_are_read_from_a_room() {
    let r = analyse(&room(57, 0.3, 0.05, true));
    let delay = r.delay_ms.expect("echo found");
    assert!((delay - 57.0).abs() <= 0.5, "{r:?}");
    // 0.3 of the played level is 10.5 dB below it.
    assert!((r.played_dbfs - r.echo_dbfs - 10.5).abs() < 1.0, "{r:?}");
    let removed = r.removed_db.expect("canceller ran");
    assert!((removed - 26.0).abs() < 1.5, "{r:?}");
    assert!(r.ok && r.verdict == "fine" && !r.clipped, "{r:?}");
    assert!(r.line().contains("delay 57.0 ms"), "{}", r.line());
}

#[test]
fn a_long_delay_is_found_and_a_weak_canceller_is_named() {
    let r = analyse(&room(420, 0.8, 0.5, true));
    assert!((r.delay_ms.expect("found") - 420.0).abs() <= 0.5, "{r:?}");
    assert!(!r.ok && r.verdict.contains("less than 10 dB"), "{r:?}");
    // Beyond the canceller's reach, yet found (up to just short of a sweep pair).
    let r = analyse(&room(780, 0.5, 0.05, true));
    assert!((r.delay_ms.expect("found") - 780.0).abs() <= 0.5, "{r:?}");
    assert!(!r.ok && r.verdict.contains("780 ms late"), "{r:?}");
}

#[test]
fn silence_clipping_and_no_canceller_each_say_what_to_do() {
    let r = analyse(&room(30, 0.0, 1.0, true));
    assert_eq!(r.delay_ms, None, "{r:?}");
    assert!(
        !r.ok && r.verdict.contains("did not hear the speaker") && r.verdict.contains("closest"),
        "{r:?}"
    );

    let r = analyse(&room(30, 4.5, 0.05, true));
    assert!(r.clipped && !r.ok && r.verdict.contains("clips"), "{r:?}");

    let r = analyse(&room(30, 0.3, 1.0, false));
    assert_eq!(r.removed_db, None);
    assert!(
        !r.ok && r.verdict.contains("echo cancellation is off"),
        "{r:?}"
    );

    let quiet = Recording {
        far: vec![0; 1000],
        raw: vec![0; 1000],
        clean: vec![0; 1000],
        cancelled: true,
    };
    let r = analyse(&quiet);
    assert!(!r.ok && r.verdict.contains("nothing was played"), "{r:?}");
}

#[test]
fn the_sounds_are_at_earcon_level_and_do_not_click() {
    for s in [test_tone(), chirp()] {
        let peak = s.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
        assert!((7_000..=8_000).contains(&peak), "peak {peak}");
        assert!(s[0].abs() < 100 && s[s.len() - 1].abs() < 400);
    }
    assert_eq!(test_tone().len(), TONE_MS as usize * MS);
    assert_eq!(chirp().len(), (SWEEP_MS * SWEEPS) as usize * MS);
}

#[test]
fn a_recording_fills_to_its_capacity_and_no_further() {
    let mut r = Recording::with_capacity(1000);
    let block = [1i16; 480];
    assert!(!r.push(&block, &block, &block));
    assert!(!r.push(&block, &block, &block));
    assert!(r.push(&block, &block, &block));
    assert_eq!(
        (r.far.len(), r.raw.len(), r.clean.len()),
        (1000, 1000, 1000)
    );
}
