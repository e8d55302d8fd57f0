use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/test.toml"))
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn empty_file_gives_working_defaults() {
    let c = parse("").expect("defaults are valid");
    assert_eq!(c, Config::default());
    assert!(c.validate().is_empty());
    assert_eq!(c.api.base_url, "https://api.openai.com/v1");
    assert_eq!(c.api.model(), "gpt-realtime-2.1");
    assert_eq!(c.transport.kind, TransportKind::Webrtc);
    assert!(!c.transport.allow_loopback);
    assert!(c.transport.ice_servers[0].urls[0].starts_with("stun:"));
    assert_eq!(c.audio.capture_device, "default");
    assert_eq!(c.dbus.bus, Bus::System);
    assert_eq!(c.session.memory, Memory::Off);
    assert!(!c.log.transcripts);
}

#[test]
fn shipped_config_file_is_valid_and_equals_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/realtime-voiced.toml");
    let c = Config::load(&path).expect("shipped file is valid");
    let mut expected = Config::default();
    // The shipped file enables the built-in echo tool as an example; everything else is default.
    expected.session.tools = c.session.tools.clone();
    assert_eq!(c, expected);
    assert!(c.session.tools.iter().any(|t| t.name == "echo"));
}

#[test]
fn the_shipped_file_switched_to_live_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/realtime-voiced.toml");
    let text = std::fs::read_to_string(path).expect("shipped file");
    let text = text.replace("# protocol = \"realtime\"", "protocol = \"live\"");
    let c = parse(&text).expect("valid under GPT-Live");
    assert_eq!(c.api.protocol, Protocol::Live);
    assert_eq!(c.api.model(), "gpt-live-1");
}

#[test]
fn full_example_parses() {
    let c = parse(
        r#"
[api]
base_url = "http://127.0.0.1:8080/v1"
token_url = "https://backend.example/token"
token_url_headers = { Authorization = "Bearer s3cret" }

[session]
voice = "verse"
capabilities = ["audio"]
memory = "on"

[session.turn_detection]
type = "semantic_vad"
threshold = 0.7

[[session.tools]]
name = "weather"
description = "Weather for a city"
command = ["/usr/local/bin/weather", "--json"]
timeout_ms = 2000
[session.tools.parameters]
type = "object"
properties = { city = { type = "string" } }

[transport]
kind = "websocket"
ice_transport_policy = "relay"
[[transport.ice_servers]]
urls = ["turn:127.0.0.1:3478"]
username = "u"
credential = "p"

[gpio]
enabled = true
led_pin = 22
"#,
    )
    .expect("valid");
    assert_eq!(
        c.session.turn_detection.kind,
        TurnDetectionKind::SemanticVad
    );
    assert_eq!(
        c.session.tools[0].parameters["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(
        c.transport.ice_servers[0]
            .credential
            .as_ref()
            .map(Secret::expose),
        Some("p")
    );
    assert_eq!(c.session.memory, Memory::On);
    assert!(!c.session.has(Capability::Tools));
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let p = problems("[audio]\nvolume = 0.5\ncapture_devce = \"hw:1\"\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].position, Some((3, 1)));
    assert!(p[0].message.contains("capture_devce"), "{}", p[0].message);
    let line = ConfigError::Invalid {
        path: "/etc/test.toml".into(),
        problems: p,
    }
    .to_string();
    assert!(line.starts_with("/etc/test.toml:3:1: "), "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
}

#[test]
fn unknown_section_is_an_error() {
    let p = problems("[audi]\nvolume = 1\n");
    assert!(p[0].message.contains("audi"), "{:?}", p[0]);
    assert_eq!(p[0].position.map(|x| x.0), Some(1));
}

#[test]
fn wrong_type_names_the_key() {
    let p = problems("[gpio]\nbutton_pin = \"seventeen\"\n");
    assert_eq!(p[0].key, "gpio.button_pin");
    assert_eq!(p[0].position, Some((2, 14)));
    let p = problems("[[session.tools]]\nname = \"echo\"\ntimeout_ms = \"soon\"\n");
    assert_eq!(p[0].key, "session.tools[0].timeout_ms");
    assert_eq!(p[0].position.map(|x| x.0), Some(3));
}

#[test]
fn syntax_error_is_located() {
    let p = problems("[audio]\nvolume = = 1\n");
    assert_eq!(p[0].position.map(|x| x.0), Some(2));
}

#[test]
fn bad_enum_value_is_an_error() {
    let p = problems("[transport]\nkind = \"carrier-pigeon\"\n");
    assert_eq!(p[0].key, "transport.kind");
    assert!(p[0].message.contains("carrier-pigeon"));
}

#[test]
fn microphone_frames_are_10_or_20_ms() {
    let p = problems("[audio]\nframe_ms = 5\n");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "audio.frame_ms");
    assert!(
        p[0].message.contains("must be 10 or 20, got 5"),
        "{}",
        p[0].message
    );
    let c = parse("[audio]\nframe_ms = 10\n").expect("10 ms frames are valid");
    assert_eq!(c.audio.frame_ms, 10);
}

#[test]
fn out_of_range_values_name_key_and_position() {
    let p = problems("[audio]\nvolume = 1.5\nperiod_ms = 7\n\n[gpio]\nbutton_pin = 40\n");
    let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["audio.period_ms", "audio.volume", "gpio.button_pin"]);
    assert_eq!(p[0].position, Some((3, 13)));
    assert_eq!(p[1].position, Some((2, 10)));
    assert_eq!(p[2].position, Some((6, 14)));
    assert!(p[1].message.contains("between 0.0 and 1.0"));
    let err = ConfigError::Invalid {
        path: "/etc/test.toml".into(),
        problems: p,
    };
    assert!(err.to_string().ends_with("(and 2 more problems)"), "{err}");
    assert_eq!(err.lines().len(), 3);
    assert!(err.lines()[1].starts_with("/etc/test.toml:2:10: `audio.volume`: "));
}

#[test]
fn more_validation_rules() {
    let cases: &[(&str, &str)] = &[
        ("[api]\nbase_url = \"ftp://x\"\n", "api.base_url"),
        ("[api]\nbase_url = \"not a url\"\n", "api.base_url"),
        ("[api]\ntoken_lifetime_s = 5\n", "api.token_lifetime_s"),
        ("[audio]\njitter_buffer_ms = 10\n", "audio.jitter_buffer_ms"),
        (
            "[audio]\njitter_buffer_ms = 301\n",
            "audio.jitter_buffer_ms",
        ),
        ("[session]\nmax_session_s = 7200\n", "session.max_session_s"),
        ("[session]\ncapabilities = []\n", "session.capabilities"),
        (
            "[session.turn_detection]\nthreshold = 2.0\n",
            "session.turn_detection.threshold",
        ),
        (
            "[[session.tools]]\nname = \"weather\"\n",
            "session.tools[0].command",
        ),
        (
            "[[session.tools]]\nname = \"bad name!\"\n",
            "session.tools[0].name",
        ),
        (
            "[[session.tools]]\nname = \"echo\"\ncommand = []\n",
            "session.tools[0].command",
        ),
        (
            "[[session.tools]]\nname = \"echo\"\n[[session.tools]]\nname = \"echo\"\n",
            "session.tools[1].name",
        ),
        (
            "[transport]\nice_transport_policy = \"relay\"\n",
            "transport.ice_transport_policy",
        ),
        (
            "[[transport.ice_servers]]\nurls = [\"http://x\"]\n",
            "transport.ice_servers[0].urls",
        ),
        (
            "[[transport.ice_servers]]\nurls = [\"turn:x:3478\"]\n",
            "transport.ice_servers[0]",
        ),
        (
            "[transport]\nconnect_timeout_ms = 1\n",
            "transport.connect_timeout_ms",
        ),
        ("[audio]\nsample_rate = 44100\n", "audio.sample_rate"),
        ("[audio]\ncapture_device = \"\"\n", "audio.capture_device"),
        ("[gpio]\nled_pin = 17\n", "gpio.led_pin"),
        ("[gpio]\nlong_press_ms = 10\n", "gpio.long_press_ms"),
    ];
    for (text, key) in cases {
        let p = problems(text);
        assert!(
            p.iter().any(|p| p.key == *key),
            "{text:?}: expected `{key}` in {p:?}"
        );
        let located = p.iter().find(|p| p.key == *key).and_then(|p| p.position);
        assert!(located.is_some(), "{text:?}: `{key}` not located");
    }
}

#[test]
fn nan_volume_is_rejected() {
    let p = problems("[audio]\nvolume = nan\n");
    assert_eq!(p[0].key, "audio.volume");
}

#[test]
fn secrets_never_print() {
    let c = parse(
        "[api]\ntoken_url_headers = { Authorization = \"Bearer hunter2\" }\n\
         [[transport.ice_servers]]\nurls = [\"turn:127.0.0.1\"]\nusername = \"u\"\ncredential = \"hunter3\"\n",
    )
    .expect("valid");
    let debug = format!("{c:?}");
    let rendered = c.to_redacted_toml();
    for out in [&debug, &rendered] {
        assert!(
            !out.contains("hunter2") && !out.contains("hunter3"),
            "{out}"
        );
    }
    assert!(rendered.contains("<redacted>"));
    // The redacted rendering is itself a valid configuration.
    parse(&rendered).expect("check-config output parses");
}

#[test]
fn errors_never_echo_secret_values() {
    // A secret in the wrong place is still reported by key, not by value.
    let p = problems(
        "[[transport.ice_servers]]\nurls = [\"turn:x\"]\nusername = \"u\"\ncredential = 12345678\n",
    );
    let joined = format!("{p:?}");
    assert!(!joined.contains("12345678"), "{joined}");
}

#[test]
fn api_key_lookup_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("key");
    std::fs::write(&file, "sk-file\n").expect("write");
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).expect("mkdir");
    std::fs::write(creds.join(CREDENTIAL_NAME), "sk-cred").expect("write");
    let env = |creds: bool, var: bool| {
        let creds_dir = creds.then(|| dir.path().join("creds").into_os_string());
        move |name: &str| match name {
            "CREDENTIALS_DIRECTORY" => creds_dir.clone(),
            "OPENAI_API_KEY" if var => Some("sk-env".into()),
            _ => None,
        }
    };

    let mut c = Config::default();
    c.api.api_key_file = Some(file.clone());
    let (k, src) = c.api_key_from(env(true, true)).expect("ok").expect("some");
    assert_eq!(
        (k.expose(), src),
        ("sk-file", KeySource::File(file.clone()))
    );

    c.api.api_key_file = None;
    let (k, src) = c.api_key_from(env(true, true)).expect("ok").expect("some");
    assert_eq!(k.expose(), "sk-cred");
    assert!(matches!(src, KeySource::Credential(_)));

    let (k, src) = c.api_key_from(env(false, true)).expect("ok").expect("some");
    assert_eq!((k.expose(), src), ("sk-env", KeySource::Environment));

    assert!(c.api_key_from(env(false, false)).expect("ok").is_none());

    c.api.api_key_file = Some(dir.path().join("missing"));
    let err = c.api_key_from(env(false, false)).expect_err("missing file");
    assert!(err.to_string().contains("missing"), "{err}");
    std::fs::write(&file, "  \n").expect("write");
    c.api.api_key_file = Some(file);
    let err = c.api_key_from(env(false, false)).expect_err("empty");
    assert!(err.to_string().contains("empty"));
}

#[test]
fn missing_default_file_means_defaults_but_missing_explicit_file_is_an_error() {
    let p = Path::new("/nonexistent/realtime-voiced.toml");
    assert_eq!(
        Config::load_or_default(p, false).expect("defaults"),
        Config::default()
    );
    let err = Config::load_or_default(p, true).expect_err("explicit");
    assert!(err
        .to_string()
        .contains("/nonexistent/realtime-voiced.toml"));
}
