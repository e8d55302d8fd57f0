//! Tools from other programs, end to end on a private system-style bus with the packaged
//! policy: the example provider (`docs/examples/tool-provider.py`) runs as a member of the group
//! `realtime-voice` against a stand-in Home Assistant, registers its light; the daemon (as its
//! own user) offers it to the simulator, which calls it; the provider's answer reaches the
//! model; when the provider exits, its tool leaves the running session. Refusals: a taken name,
//! bad or oversized schemas, and a user outside the group, whom the bus policy stops.
//!
//! Needs root, dbus-daemon, busctl, setpriv and python3 with python3-gi; skipped otherwise.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testkit::bus::{Bus, NAME};
use testkit::proc::run;
use testkit::sim::SimProcess;
use testkit::wait::lazy;
use testkit::{wait_for, Proc};

use crate::dbus_system_bus::{busctl_as, ensure_users, MEMBER, OTHER, SERVICE_USER};
use crate::DAEMON;

const PYTHON: &str = "/usr/bin/python3";
const TOOL: &str = "hall_light";
const TOKEN: &str = "ha-test-token-42";

/// A stand-in for Home Assistant's REST API: records each request (method, path, authorization,
/// body) and keeps one light's state.
fn home_assistant() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut on = false;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let (mut length, mut authorization) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let (key, value) = line.split_once(':').unwrap_or((&line, ""));
                match key.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => authorization = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut words = request_line.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if path.ends_with("/toggle") {
                on = !on;
            }
            log.lock().expect("log").push(format!(
                "{method} {path} [{authorization}] {}",
                String::from_utf8_lossy(&body)
            ));
            let answer = if method == "GET" {
                format!(
                    r#"{{"entity_id":"light.hall","state":"{}"}}"#,
                    if on { "on" } else { "off" }
                )
            } else {
                "[]".to_owned()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, seen)
}

fn tools_property(bus: &Bus) -> String {
    bus.property("Tools").unwrap_or_default()
}

/// RegisterTool as `user` on a connection of its own (busctl's).
fn register_as(user: &str, bus: &Bus, name: &str, parameters: &str) -> (bool, String) {
    busctl_as(
        user,
        &bus.address,
        &[
            "call",
            NAME,
            testkit::bus::PATH,
            NAME,
            "RegisterTool",
            "sss",
            name,
            "a test tool",
            parameters,
        ],
    )
}

#[test]
fn a_program_on_the_bus_offers_a_tool_the_model_calls() {
    if !testkit::proc::is_root() {
        eprintln!("SKIPPED: needs root to create test users and run processes as them");
        return;
    }
    for tool in ["dbus-daemon", "busctl", "setpriv", "useradd", PYTHON] {
        if !testkit::proc::have(tool) {
            eprintln!("SKIPPED: {tool} is not installed");
            return;
        }
    }
    if !run(&[PYTHON, "-c", "from gi.repository import Gio"])
        .status
        .success()
    {
        eprintln!("SKIPPED: python3-gi is not installed");
        return;
    }
    ensure_users();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("state dir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let bus = Bus::system(dir.path());
    let sim = SimProcess::start(dir.path(), 0, &["--tool", TOOL]);
    let (ha_url, ha_seen) = home_assistant();

    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nbase_url = \"{}\"\n[transport]\nkind = \"websocket\"\nallow_loopback = true\n\
             ice_servers = []\nfallback = false\n[audio]\ncapture_device = \"null\"\n\
             playback_device = \"null\"\n[log]\nlevel = \"debug\"\n",
            sim.base_url()
        ),
    )
    .expect("config");
    let daemon_log = dir.path().join("daemon.log");
    let _daemon = Proc::spawn(
        Command::new("setpriv")
            .args([
                "--reuid",
                SERVICE_USER,
                "--regid",
                SERVICE_USER,
                "--init-groups",
                DAEMON,
            ])
            .arg("--config")
            .arg(&config)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("OPENAI_API_KEY", "sk-tool-provider-test")
            .env("STATE_DIRECTORY", &state)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&daemon_log).expect("log")),
    );
    let daemon_text = || std::fs::read_to_string(&daemon_log).unwrap_or_default();
    wait_for(
        Duration::from_secs(15),
        lazy(|| format!("the daemon to take its name: {}", daemon_text())),
        || bus.name_has_owner(NAME).then_some(()),
    );

    // The example provider, as a member of the group.
    let provider_log = dir.path().join("provider.log");
    let example = testkit::root().join("docs/examples/tool-provider.py");
    let mut provider = Proc::spawn(
        Command::new("setpriv")
            .args([
                "--reuid",
                MEMBER,
                "--regid",
                MEMBER,
                "--init-groups",
                PYTHON,
            ])
            .arg(&example)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("HA_URL", &ha_url)
            .env("HA_TOKEN", TOKEN)
            .env("HA_ENTITY", "light.hall")
            .env("TOOL_NAME", TOOL)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&provider_log).expect("log")),
    );
    let provider_text = || std::fs::read_to_string(&provider_log).unwrap_or_default();
    wait_for(
        Duration::from_secs(15),
        lazy(|| format!("the provider's tool in Tools: {}", provider_text())),
        || tools_property(&bus).contains(TOOL).then_some(()),
    );

    // Refusals, each in one line: the name is taken, the schema is wrong or too big.
    let schema = r#"{"type":"object"}"#;
    for (name, parameters, why) in [
        (TOOL, schema, "already offered by another program"),
        ("bad_json", "{not json", "the parameters are not JSON"),
        ("not_object", r#"{"type":"string"}"#, "\"type\": \"object\""),
        ("two words", schema, "is not 1 to 64 letters"),
    ] {
        let (ok, out) = register_as(MEMBER, &bus, name, parameters);
        assert!(
            !ok && out.contains(why) && out.lines().count() == 1,
            "{name}: {out}"
        );
    }
    let huge = format!(
        r#"{{"type":"object","description":"{}"}}"#,
        "x".repeat(17_000)
    );
    let (ok, out) = register_as(MEMBER, &bus, "huge", &huge);
    assert!(!ok && out.contains("at most 16384"), "huge: {out}");
    // A user outside the group is stopped by the bus itself.
    let (ok, out) = register_as(OTHER, &bus, "intruder", schema);
    assert!(!ok && out.contains("ccess denied"), "other: {out}");
    let (ok, out) = busctl_as(
        OTHER,
        &bus.address,
        &[
            "call",
            NAME,
            testkit::bus::PATH,
            NAME,
            "UnregisterTool",
            "s",
            TOOL,
        ],
    );
    assert!(
        !ok && out.contains("ccess denied"),
        "other unregisters: {out}"
    );
    // busctl's connection left at once: what it managed to register left with it.
    let (ok, out) = register_as(MEMBER, &bus, "fleeting", schema);
    assert!(ok, "a valid registration: {out}");
    wait_for(Duration::from_secs(5), "the fleeting tool to go", || {
        (!tools_property(&bus).contains("fleeting")).then_some(())
    });

    // A conversation: the simulated model calls the tool first.
    let out = bus.call("Start", &[]);
    assert!(out.status.success(), "Start: {}", testkit::proc::text(&out));
    bus.wait_state("listening", Duration::from_secs(20));
    let configured = |sim: &SimProcess| {
        sim.logged()
            .lines()
            .filter(|l| l.contains("session configured"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("a session offering the tool: {:?}", configured(&sim))),
        || {
            configured(&sim)
                .iter()
                .any(|l| l.contains(TOOL))
                .then_some(())
        },
    );
    let out = bus.call("SendText", &["s", "switch the hall light"]);
    assert!(
        out.status.success(),
        "SendText: {}",
        testkit::proc::text(&out)
    );
    let output = wait_for(
        Duration::from_secs(20),
        lazy(|| {
            format!(
                "the tool's output at the model; provider: {}; daemon: {}",
                provider_text(),
                daemon_text()
            )
        }),
        || {
            sim.logged()
                .lines()
                .find(|l| l.contains("function_call_output"))
                .map(str::to_owned)
        },
    );
    assert!(
        output.contains("light.hall") && output.contains("on"),
        "the provider's answer reached the model: {output}"
    );
    let calls = provider_text();
    assert!(
        calls.contains(&format!(
            "call {TOOL} {{\"text\":\"switch the hall light\"}}"
        )),
        "the provider got the model's JSON arguments: {calls}"
    );
    let seen = ha_seen.lock().expect("seen").clone();
    assert!(
        seen.iter()
            .any(|r| r.starts_with("POST /api/services/light/toggle")
                && r.contains(&format!("[Bearer {TOKEN}]"))
                && r.contains(r#""entity_id": "light.hall""#)),
        "Home Assistant was asked to toggle the light: {seen:?}"
    );

    // The provider leaves: its tool leaves the list and the running session.
    let before = configured(&sim).len();
    provider.signal(libc::SIGTERM);
    assert!(
        provider.wait_exit(Duration::from_secs(5)).is_some(),
        "the provider exits on SIGTERM"
    );
    wait_for(Duration::from_secs(10), "the tool to leave Tools", || {
        (!tools_property(&bus).contains(TOOL)).then_some(())
    });
    wait_for(
        Duration::from_secs(10),
        lazy(|| format!("a session update without the tool: {:?}", configured(&sim))),
        || {
            let lines = configured(&sim);
            (lines.len() > before && lines.last().is_some_and(|l| !l.contains(TOOL))).then_some(())
        },
    );
    let stats = sim.stats();
    assert_eq!(
        stats["schema_violations"], 0,
        "every event the daemon sent follows the published schema: {stats}"
    );
    let log = daemon_text();
    assert!(
        !log.contains(TOKEN),
        "Home Assistant's token never reaches the daemon"
    );
    assert!(
        log.contains("its tools are withdrawn"),
        "the departure is logged: {log}"
    );
}
