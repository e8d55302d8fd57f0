//! Range and consistency checks serde cannot express, one function per section. Each problem
//! is a (key path, message) pair; `locate` finds the key in the file for the error line.

use super::{Api, Audio, Config, Gpio, IcePolicy, Protocol, Session, Tool, Transport};

impl Config {
    /// Every problem found, in file order of the sections; empty when the configuration is valid.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut v = Validator::default();
        api(&mut v, &self.api);
        session(&mut v, &self.session);
        tools(&mut v, &self.session.tools);
        transport(&mut v, &self.transport);
        audio(&mut v, &self.audio);
        gpio(&mut v, &self.gpio);
        v.problems
    }
}

fn api(v: &mut Validator, api: &Api) {
    v.url("api.base_url", &api.base_url, &["https", "http"]);
    model_matches_protocol(v, api);
    if let Some(url) = &api.token_url {
        v.url("api.token_url", url, &["https", "http"]);
    }
    v.range("api.token_lifetime_s", api.token_lifetime_s, 10, 7200);
}

/// A model of the other API fails at connect with a message that does not say why; say it here.
fn model_matches_protocol(v: &mut Validator, api: &Api) {
    let model = api.model();
    let live_model = model.starts_with("gpt-live");
    match api.protocol {
        Protocol::Realtime if live_model => v.fail(
            "api.model",
            &format!("`{model}` is a GPT-Live model: set api.protocol = \"live\" to use it"),
        ),
        Protocol::Live if !live_model => v.fail(
            "api.model",
            &format!(
                "`{model}` is not a GPT-Live model (GPT-Live takes gpt-live-1): remove api.model, or set api.protocol = \"realtime\""
            ),
        ),
        _ => {}
    }
    if let Some(url) = &api.session_url {
        v.url("api.session_url", url, &["https", "http"]);
    }
}

fn session(v: &mut Validator, s: &Session) {
    v.non_empty("session.voice", &s.voice);
    if s.capabilities.is_empty() {
        v.fail(
            "session.capabilities",
            "needs at least one of \"text\", \"audio\", \"tools\"",
        );
    }
    v.range("session.idle_timeout_s", s.idle_timeout_s, 0, 86_400);
    v.range("session.max_session_s", s.max_session_s, 60, 3600);
    v.range("session.daily_limit_s", s.daily_limit_s, 0, 86_400);
    v.range("session.max_tool_runs", s.max_tool_runs.into(), 1, 32);
    let td = &s.turn_detection;
    v.range_f("session.turn_detection.threshold", td.threshold, 0.0, 1.0);
    v.range(
        "session.turn_detection.prefix_padding_ms",
        td.prefix_padding_ms.into(),
        0,
        5000,
    );
    v.range(
        "session.turn_detection.silence_duration_ms",
        td.silence_duration_ms.into(),
        50,
        10_000,
    );
}

fn tools(v: &mut Validator, tools: &[Tool]) {
    let mut names = std::collections::HashSet::new();
    for (i, tool) in tools.iter().enumerate() {
        let key = format!("session.tools[{i}]");
        let valid_name = Tool::valid_name(&tool.name);
        if !valid_name {
            v.fail(
                &format!("{key}.name"),
                "must be 1 to 64 letters, digits, '_' or '-'",
            );
        } else if !names.insert(tool.name.as_str()) {
            v.fail(
                &format!("{key}.name"),
                &format!("tool `{}` is defined twice", tool.name),
            );
        }
        if !tool.parameters.is_object() {
            v.fail(
                &format!("{key}.parameters"),
                "must be a table (a JSON schema)",
            );
        }
        match &tool.command {
            Some(cmd) if cmd.first().is_none_or(|p| p.is_empty()) => v.fail(
                &format!("{key}.command"),
                "must name a program: [\"/path/to/program\", \"arg\", …]",
            ),
            None if tool.name != "echo" && valid_name => v.fail(
                &format!("{key}.command"),
                &format!(
                    "tool `{}` has no command and is not a built-in (built-ins: echo)",
                    tool.name
                ),
            ),
            _ => {}
        }
        v.range(&format!("{key}.timeout_ms"), tool.timeout_ms, 1, 600_000);
    }
}

fn transport(v: &mut Validator, t: &Transport) {
    v.range(
        "transport.connect_timeout_ms",
        t.connect_timeout_ms,
        500,
        120_000,
    );
    v.range(
        "transport.reconnect_attempts",
        t.reconnect_attempts.into(),
        0,
        1000,
    );
    v.range(
        "transport.reconnect_backoff_ms",
        t.reconnect_backoff_ms,
        10,
        600_000,
    );
    v.range(
        "transport.reconnect_backoff_max_ms",
        t.reconnect_backoff_max_ms,
        t.reconnect_backoff_ms,
        3_600_000,
    );
    for (i, server) in t.ice_servers.iter().enumerate() {
        let key = format!("transport.ice_servers[{i}]");
        if server.urls.is_empty() {
            v.fail(
                &format!("{key}.urls"),
                "needs at least one stun:/turn:/turns: URL",
            );
        }
        let mut turn = false;
        for url in &server.urls {
            let scheme = url.split(':').next().unwrap_or_default();
            match scheme {
                "stun" | "stuns" => {}
                "turn" | "turns" => turn = true,
                _ => v.fail(
                    &format!("{key}.urls"),
                    &format!("`{url}` is not a stun:, turn: or turns: URL"),
                ),
            }
        }
        if turn && (server.username.is_none() || server.credential.is_none()) {
            v.fail(&key, "a TURN server needs `username` and `credential`");
        }
    }
    if t.ice_transport_policy == IcePolicy::Relay
        && !t
            .ice_servers
            .iter()
            .any(|s| s.urls.iter().any(|u| u.starts_with("turn")))
    {
        v.fail(
            "transport.ice_transport_policy",
            "\"relay\" needs a TURN server in [[transport.ice_servers]]",
        );
    }
}

fn audio(v: &mut Validator, a: &Audio) {
    v.non_empty("audio.capture_device", &a.capture_device);
    v.non_empty("audio.playback_device", &a.playback_device);
    if ![16_000, 24_000, 48_000].contains(&a.sample_rate) {
        v.fail(
            "audio.sample_rate",
            &format!("must be 16000, 24000 or 48000, got {}", a.sample_rate),
        );
    }
    if ![5, 10, 20].contains(&a.period_ms) {
        v.fail(
            "audio.period_ms",
            &format!("must be 5, 10 or 20, got {}", a.period_ms),
        );
    }
    if ![10, 20].contains(&a.frame_ms) {
        v.fail(
            "audio.frame_ms",
            &format!("must be 10 or 20, got {}", a.frame_ms),
        );
    }
    v.range("audio.jitter_buffer_ms", a.jitter_buffer_ms.into(), 20, 300);
    v.range_f("audio.volume", a.volume, 0.0, 1.0);
    v.range_f(
        "audio.barge_in_threshold_dbfs",
        a.barge_in_threshold_dbfs,
        -90.0,
        0.0,
    );
    v.range("audio.barge_in_min_ms", a.barge_in_min_ms.into(), 30, 2000);
}

fn gpio(v: &mut Validator, g: &Gpio) {
    v.range("gpio.button_pin", g.button_pin.into(), 0, 27);
    v.range("gpio.led_pin", g.led_pin.into(), 0, 27);
    if g.button_pin == g.led_pin {
        v.fail("gpio.led_pin", "must differ from gpio.button_pin");
    }
    v.range("gpio.debounce_ms", g.debounce_ms, 1, 1000);
    v.range(
        "gpio.long_press_ms",
        g.long_press_ms,
        g.debounce_ms.saturating_add(1),
        60_000,
    );
}

#[derive(Default)]
struct Validator {
    problems: Vec<(String, String)>,
}

impl Validator {
    fn fail(&mut self, key: &str, message: &str) {
        self.problems.push((key.to_owned(), message.to_owned()));
    }

    fn range(&mut self, key: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.fail(
                key,
                &format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    fn range_f(&mut self, key: &str, value: f64, min: f64, max: f64) {
        // NaN fails the comparison on both sides, so it is caught by the negation.
        if !(value >= min && value <= max) {
            self.fail(
                key,
                &format!("must be between {min:.1} and {max:.1}, got {value}"),
            );
        }
    }

    fn non_empty(&mut self, key: &str, value: &str) {
        if value.trim().is_empty() {
            self.fail(key, "must not be empty");
        }
    }

    fn url(&mut self, key: &str, value: &str, schemes: &[&str]) {
        match url::Url::parse(value) {
            Ok(u) if schemes.contains(&u.scheme()) && u.host().is_some() => {}
            Ok(u) => self.fail(
                key,
                &format!(
                    "scheme must be one of {}, got `{}`",
                    schemes.join(", "),
                    u.scheme()
                ),
            ),
            Err(e) => self.fail(key, &format!("not a URL ({e})")),
        }
    }
}
