//! The push button and the status LED.
//!
//! The logic is sans-IO and driven by time: [`Debouncer`] turns button levels into short and
//! long presses, [`brightness`] turns an [`LedPattern`] and the time it has been shown into a
//! brightness. [`Panel`] joins them to a [`Button`] and a [`Led`], which are real pins on a Pi
//! (rppal) and simulated ones in tests. The panel runs on a thread of its own, polling every
//! few milliseconds: cheaper and simpler than edge interrupts at this rate, and it keeps the
//! software PWM of the breathing LED off the async runtime.

use std::f64::consts::PI;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::Gpio;
use crate::control::Command;
use crate::session::LedPattern;

/// How often the panel looks at the button and updates the LED.
pub const POLL: Duration = Duration::from_millis(5);

/// A button's input pin: its electrical level.
pub trait Button: Send {
    fn is_high(&mut self) -> bool;
}

/// An LED's output pin: 0.0 is off, 1.0 fully on, in between dimmed.
pub trait Led: Send {
    fn set_brightness(&mut self, level: f64);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// Released before the long-press time.
    Short,
    /// Held for the long-press time (reported while still held; the release then means nothing).
    Long,
}

/// Debounces a button and tells short presses from long ones.
#[derive(Debug)]
pub struct Debouncer {
    debounce: Duration,
    long_press: Duration,
    /// The debounced state.
    pressed: bool,
    /// The raw state and since when it has not changed.
    raw: bool,
    raw_since: Instant,
    pressed_since: Option<Instant>,
    long_reported: bool,
}

impl Debouncer {
    pub fn new(debounce: Duration, long_press: Duration, now: Instant) -> Self {
        Debouncer {
            debounce,
            long_press,
            pressed: false,
            raw: false,
            raw_since: now,
            pressed_since: None,
            long_reported: false,
        }
    }

    /// Feeds the raw state (`true` = pressed) seen at `now`.
    pub fn update(&mut self, now: Instant, pressed: bool) -> Option<Press> {
        if pressed != self.raw {
            self.raw = pressed;
            self.raw_since = now;
        }
        if self.raw != self.pressed && now.duration_since(self.raw_since) >= self.debounce {
            self.pressed = self.raw;
            if self.pressed {
                self.pressed_since = Some(now);
                self.long_reported = false;
            } else {
                self.pressed_since = None;
                if !self.long_reported {
                    return Some(Press::Short);
                }
            }
        }
        match self.pressed_since {
            Some(since) if !self.long_reported && now.duration_since(since) >= self.long_press => {
                self.long_reported = true;
                Some(Press::Long)
            }
            _ => None,
        }
    }
}

const SLOW_BLINK: Duration = Duration::from_millis(1000);
const FAST_BLINK: Duration = Duration::from_millis(200);
const BREATH: Duration = Duration::from_millis(2000);
/// Breathing is shown in this many steps, so the PWM duty changes a few times per second only.
const BREATH_STEPS: f64 = 32.0;

/// The LED's brightness `elapsed` after `pattern` began: off idle, a 1 Hz blink while
/// connecting, on while listening, breathing (2 s) while speaking, a 5 Hz blink on error.
pub fn brightness(pattern: LedPattern, elapsed: Duration) -> f64 {
    let phase = |period: Duration| {
        (elapsed.as_nanos() % period.as_nanos()) as f64 / period.as_nanos() as f64
    };
    let blink = |period: Duration| if phase(period) < 0.5 { 1.0 } else { 0.0 };
    match pattern {
        LedPattern::Off => 0.0,
        LedPattern::On => 1.0,
        LedPattern::SlowBlink => blink(SLOW_BLINK),
        LedPattern::FastBlink => blink(FAST_BLINK),
        LedPattern::Breathing => {
            // Starts dark, peaks mid-period; squared because the eye is not linear.
            let wave = (1.0 - (2.0 * PI * phase(BREATH)).cos()) / 2.0;
            (wave * wave * BREATH_STEPS).round() / BREATH_STEPS
        }
    }
}

/// The button and the LED, joined to the daemon.
pub struct Panel<B: Button, L: Led> {
    button: B,
    led: L,
    active_low: bool,
    debouncer: Debouncer,
    commands: mpsc::Sender<Command>,
    pattern: watch::Receiver<LedPattern>,
    shown_pattern: LedPattern,
    pattern_since: Instant,
    shown: Option<f64>,
}

impl<B: Button, L: Led> Panel<B, L> {
    pub fn new(
        config: &Gpio,
        button: B,
        led: L,
        commands: mpsc::Sender<Command>,
        pattern: watch::Receiver<LedPattern>,
        now: Instant,
    ) -> Self {
        Panel {
            button,
            led,
            active_low: config.button_active_low,
            debouncer: Debouncer::new(
                Duration::from_millis(config.debounce_ms),
                Duration::from_millis(config.long_press_ms),
                now,
            ),
            commands,
            pattern,
            shown_pattern: LedPattern::Off,
            pattern_since: now,
            shown: None,
        }
    }

    /// Looks at the button once and brings the LED up to date; returns the press it saw.
    pub fn step(&mut self, now: Instant) -> Option<Press> {
        let pressed = self.button.is_high() != self.active_low;
        let press = self.debouncer.update(now, pressed);
        if let Some(press) = press {
            let command = match press {
                Press::Short => Command::Toggle(None),
                Press::Long => Command::StopAndMute,
            };
            info!(?press, "button pressed");
            // Never block the button on a busy loop: a lost press is better than a stuck LED.
            if let Err(e) = self.commands.try_send(command) {
                warn!("button press dropped: {e}");
            }
        }
        let pattern = *self.pattern.borrow();
        if pattern != self.shown_pattern {
            self.shown_pattern = pattern;
            self.pattern_since = now;
        }
        let level = brightness(pattern, now.duration_since(self.pattern_since));
        if self.shown != Some(level) {
            self.led.set_brightness(level);
            self.shown = Some(level);
        }
        press
    }

    /// Polls until `stop` is set or the daemon is gone, then turns the LED off.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) && !self.commands.is_closed() {
            self.step(Instant::now());
            std::thread::sleep(POLL);
        }
        self.led.set_brightness(0.0);
    }

    /// Runs the panel on a thread of its own.
    pub fn spawn(self, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>>
    where
        B: 'static,
        L: 'static,
    {
        std::thread::Builder::new()
            .name("rtv-gpio".into())
            .spawn(move || self.run(stop))
    }
}

/// The button on a Raspberry Pi pin.
pub struct PiButton(rppal::gpio::InputPin);

impl Button for PiButton {
    fn is_high(&mut self) -> bool {
        self.0.is_high()
    }
}

/// The LED on a Raspberry Pi pin; dimmed with rppal's software PWM.
pub struct PiLed {
    pin: rppal::gpio::OutputPin,
    active_low: bool,
}

/// Software PWM frequency for dimming: fast enough not to flicker.
const PWM_HZ: f64 = 200.0;

impl Led for PiLed {
    fn set_brightness(&mut self, level: f64) {
        let duty = if self.active_low { 1.0 - level } else { level };
        let result = if level > 0.0 && level < 1.0 {
            self.pin.set_pwm_frequency(PWM_HZ, duty)
        } else {
            let cleared = self.pin.clear_pwm();
            if duty >= 1.0 {
                self.pin.set_high();
            } else {
                self.pin.set_low();
            }
            cleared
        };
        if let Err(e) = result {
            warn!("cannot drive the LED on GPIO {}: {e}", self.pin.pin());
        }
    }
}

/// Opens the button and LED pins named in the configuration. Fails with one clear line off a
/// Raspberry Pi or when the pins cannot be had.
pub fn open(config: &Gpio) -> anyhow::Result<(PiButton, PiLed)> {
    let model = rppal::system::DeviceInfo::new().map_err(|e| {
        anyhow::anyhow!("gpio.enabled is true but this does not look like a Raspberry Pi ({e}); set gpio.enabled = false")
    })?;
    let gpio = rppal::gpio::Gpio::new()
        .map_err(|e| anyhow::anyhow!("cannot open the GPIO controller: {e}"))?;
    let pin = |n: u8, what: &str| {
        gpio.get(n)
            .map_err(|e| anyhow::anyhow!("cannot use GPIO {n} (BCM) for the {what}: {e}"))
    };
    let button = pin(config.button_pin, "button")?;
    let button = if config.button_active_low {
        button.into_input_pullup()
    } else {
        button.into_input_pulldown()
    };
    let mut led = pin(config.led_pin, "LED")?.into_output();
    if config.led_active_low {
        led.set_high();
    } else {
        led.set_low();
    }
    info!(
        model = %model.model(),
        button = config.button_pin,
        led = config.led_pin,
        "GPIO button and LED ready"
    );
    Ok((
        PiButton(button),
        PiLed {
            pin: led,
            active_low: config.led_active_low,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `(at_ms, pressed)` levels every millisecond up to `end_ms`; returns the presses.
    fn presses(levels: &[(u64, bool)], end_ms: u64) -> Vec<(u64, Press)> {
        let t0 = Instant::now();
        let mut d = Debouncer::new(ms(30), ms(1500), t0);
        let mut out = Vec::new();
        let mut level = false;
        for t in 0..=end_ms {
            if let Some((_, l)) = levels.iter().find(|(at, _)| *at == t) {
                level = *l;
            }
            if let Some(p) = d.update(t0 + ms(t), level) {
                out.push((t, p));
            }
        }
        out
    }

    #[test]
    fn short_press_after_release() {
        assert_eq!(
            presses(&[(100, true), (300, false)], 1000),
            [(330, Press::Short)]
        );
    }

    #[test]
    fn bounces_are_ignored() {
        // Contact bounce on press and release, then a glitch shorter than the debounce time.
        let levels = [
            (100, true),
            (102, false),
            (104, true),
            (106, false),
            (108, true),
            (400, false),
            (403, true),
            (405, false),
            (800, true),
            (810, false),
        ];
        assert_eq!(presses(&levels, 2000), [(435, Press::Short)]);
    }

    #[test]
    fn long_press_fires_while_held_and_release_is_silent() {
        assert_eq!(
            presses(&[(100, true), (3000, false)], 4000),
            [(1630, Press::Long)]
        );
    }

    #[test]
    fn patterns() {
        let b = |p, t| brightness(p, ms(t));
        assert_eq!(b(LedPattern::Off, 123), 0.0);
        assert_eq!(b(LedPattern::On, 123), 1.0);
        assert_eq!(b(LedPattern::SlowBlink, 100), 1.0);
        assert_eq!(b(LedPattern::SlowBlink, 600), 0.0);
        assert_eq!(b(LedPattern::SlowBlink, 1100), 1.0);
        assert_eq!(b(LedPattern::FastBlink, 50), 1.0);
        assert_eq!(b(LedPattern::FastBlink, 150), 0.0);
        assert_eq!(b(LedPattern::FastBlink, 250), 1.0);
        assert_eq!(b(LedPattern::Breathing, 0), 0.0);
        assert_eq!(b(LedPattern::Breathing, 1000), 1.0);
        let mid = b(LedPattern::Breathing, 500);
        assert!(mid > 0.0 && mid < 1.0, "{mid}");
        // Rises smoothly to the peak, then falls.
        let rise: Vec<f64> = (0..=10)
            .map(|i| b(LedPattern::Breathing, i * 100))
            .collect();
        assert!(rise.windows(2).all(|w| w[0] <= w[1]), "{rise:?}");
    }
}
