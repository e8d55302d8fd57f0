//! The button and LED panel on simulated pins, against the real event loop: a short press
//! toggles a conversation, a long press stops it and mutes, and the LED shows each state's
//! pattern.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use realtime_voiced::config::{Config, Gpio};
use realtime_voiced::control::gpio::{Button, Led, Panel, Press};
use realtime_voiced::session::{LedPattern, State};
use realtime_voiced::transport::Unavailable;
use tokio::sync::{mpsc, watch};

/// An active-low button: high while released.
#[derive(Clone)]
struct SimButton(Arc<AtomicBool>);

impl SimButton {
    fn released() -> Self {
        SimButton(Arc::new(AtomicBool::new(true)))
    }
    fn press(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    fn release(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Button for SimButton {
    fn is_high(&mut self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Default)]
struct SimLed(Arc<Mutex<f64>>);

impl SimLed {
    fn level(&self) -> f64 {
        *self.0.lock().expect("led lock")
    }
}

impl Led for SimLed {
    fn set_brightness(&mut self, level: f64) {
        *self.0.lock().expect("led lock") = level;
    }
}

/// Steps the panel through `millis` of simulated time, 5 ms a step.
fn hold(
    panel: &mut Panel<SimButton, SimLed>,
    now: &mut Instant,
    millis: u64,
    presses: &mut Vec<Press>,
) -> Instant {
    for _ in 0..millis / 5 {
        *now += ms(5);
        presses.extend(panel.step(*now));
    }
    *now
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Samples the LED every 50 ms over two seconds of simulated time.
fn trace<B: Button, L: Led>(panel: &mut Panel<B, L>, led: &SimLed, from: Instant) -> Vec<f64> {
    (0..40)
        .map(|i| {
            panel.step(from + ms(i * 50));
            led.level()
        })
        .collect()
}

fn expected(pattern: LedPattern) -> Vec<f64> {
    expected_from(pattern, 0)
}

/// The pattern sampled every 50 ms, starting `phase_ms` into its cycle.
fn expected_from(pattern: LedPattern, phase_ms: u64) -> Vec<f64> {
    (0..40u64)
        .map(|i| {
            let t = i * 50 + phase_ms;
            match pattern {
                LedPattern::Off => 0.0,
                LedPattern::On => 1.0,
                LedPattern::SlowBlink => f64::from(u8::from(t % 1000 < 500)),
                LedPattern::FastBlink => f64::from(u8::from(t % 200 < 100)),
                LedPattern::Breathing => f64::NAN,
            }
        })
        .collect()
}

#[test]
fn each_state_shows_its_pattern() {
    let (commands, _rx) = mpsc::channel(8);
    let (tx, rx) = watch::channel(LedPattern::Off);
    let led = SimLed::default();
    let t0 = Instant::now();
    let mut panel = Panel::new(
        &Gpio::default(),
        SimButton::released(),
        led.clone(),
        commands,
        rx,
        t0,
    );
    let mut at = t0;
    for state in [
        State::Idle,
        State::Connecting,
        State::Listening,
        State::Speaking,
        State::Reconnecting,
        State::Error,
        State::Idle,
    ] {
        let pattern = LedPattern::for_state(state);
        tx.send_replace(pattern);
        at += ms(5000);
        let seen = trace(&mut panel, &led, at);
        if pattern == LedPattern::Breathing {
            // Dark at the start, full at one second, dimmed in between, and smooth.
            assert_eq!(seen[0], 0.0, "{state:?}: {seen:?}");
            assert_eq!(seen[20], 1.0, "{state:?}: {seen:?}");
            assert!(seen[10] > 0.0 && seen[10] < 1.0, "{state:?}: {seen:?}");
            assert!(
                seen.windows(2).all(|w| (w[0] - w[1]).abs() <= 0.25),
                "{seen:?}"
            );
        } else {
            assert_eq!(seen, expected(pattern), "{state:?} ({pattern:?})");
        }
    }
}

#[test]
fn button_drives_the_daemon_and_the_led_follows() {
    let state_dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let daemon = testkit::daemon::build(
            Config::default(),
            Arc::new(Unavailable("no service in this test".into())),
            state_dir.path(),
        );
        let handle = daemon.handle();
        let button = SimButton::released();
        let led = SimLed::default();
        let t0 = Instant::now();
        let mut panel = Panel::new(
            &Gpio::default(),
            button.clone(),
            led.clone(),
            handle.commands.clone(),
            daemon.led(),
            t0,
        );
        let task = tokio::spawn(daemon.run());
        let mut snapshot = handle.snapshot.clone();

        // Simulated time, 5 ms a step; the event loop runs in between.
        let mut now = t0;
        let mut presses = Vec::new();

        hold(&mut panel, &mut now, 100, &mut presses);
        assert_eq!(led.level(), 0.0, "idle shows off");
        // A short press with contact bounce.
        button.press();
        hold(&mut panel, &mut now, 5, &mut presses);
        button.release();
        hold(&mut panel, &mut now, 5, &mut presses);
        button.press();
        hold(&mut panel, &mut now, 200, &mut presses);
        button.release();
        hold(&mut panel, &mut now, 100, &mut presses);
        assert_eq!(presses, [Press::Short]);

        // Toggle started a conversation, which fails here: the state ends in error.
        tokio::time::timeout(
            Duration::from_secs(5),
            snapshot.wait_for(|s| s.state == State::Error),
        )
        .await
        .expect("the short press started a conversation")
        .expect("daemon alive");
        let from = hold(&mut panel, &mut now, 5, &mut presses);
        let blink = trace(&mut panel, &led, from + ms(5));
        // The blink's phase starts when the panel saw the change, which may be any step after
        // the press (the failing connect is immediate): any phase of the fast blink will do.
        assert!(
            (0..4).any(|shift| blink == expected_from(LedPattern::FastBlink, shift * 50)),
            "error shows a fast blink: {blink:?}"
        );
        now = from + ms(2000);

        // A long press: stop and mute.
        button.press();
        hold(&mut panel, &mut now, 1700, &mut presses);
        assert_eq!(presses, [Press::Short, Press::Long]);
        let s = tokio::time::timeout(
            Duration::from_secs(5),
            snapshot.wait_for(|s| s.state == State::Idle && s.muted),
        )
        .await
        .expect("the long press stopped and muted")
        .expect("daemon alive")
        .clone();
        assert!(s.muted);
        button.release();
        hold(&mut panel, &mut now, 100, &mut presses);
        assert_eq!(
            presses,
            [Press::Short, Press::Long],
            "the release after a long press is silent"
        );
        assert_eq!(led.level(), 0.0, "idle shows off");

        handle
            .commands
            .send(realtime_voiced::control::Command::Shutdown)
            .await
            .expect("send shutdown");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the loop stops")
            .expect("the loop did not panic");
    });
}

#[test]
fn gpio_off_a_pi_is_one_clear_error() {
    if rppal::system::DeviceInfo::new().is_ok() {
        eprintln!("SKIPPED: this is a Raspberry Pi");
        return;
    }
    let err = realtime_voiced::control::gpio::open(&Gpio {
        enabled: true,
        ..Gpio::default()
    })
    .err()
    .expect("opening GPIO off a Pi fails");
    let msg = format!("{err:#}");
    assert!(msg.contains("not look like a Raspberry Pi"), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
}

#[test]
fn daemon_with_gpio_off_a_pi_exits_with_one_line() {
    if rppal::system::DeviceInfo::new().is_ok() {
        eprintln!("SKIPPED: this is a Raspberry Pi");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[gpio]\nenabled = true\n").expect("write config");
    let out = std::process::Command::new("timeout")
        .args(["20", crate::DAEMON, "--config"])
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("run the daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("gpio.enabled"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
