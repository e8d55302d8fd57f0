//! The daemon on a private system-style bus with the packaged policy: who may call what, what the
//! interface answers, PropertiesChanged as a conversation fails, and surviving a bus restart.
//!
//! Needs root (it creates users and groups and runs processes as them), dbus-daemon, gdbus and
//! setpriv; skipped with a message otherwise.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use testkit::bus::{Bus, NAME, PATH};
use testkit::proc::{run, text};
use testkit::wait::lazy;
use testkit::{wait_for, Proc};

use crate::DAEMON;

pub(crate) const SERVICE_USER: &str = "realtime-voiced";
pub(crate) const GROUP: &str = "realtime-voice";
pub(crate) const MEMBER: &str = "rtv-test-member";
pub(crate) const OTHER: &str = "rtv-test-other";

pub(crate) fn ensure_users() {
    let exists = |what: &str, name: &str| run(&["getent", what, name]).status.success();
    if !exists("group", GROUP) {
        assert!(run(&["groupadd", "--system", GROUP]).status.success());
    }
    if !exists("passwd", SERVICE_USER) {
        let o = run(&[
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SERVICE_USER,
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    if !exists("passwd", MEMBER) {
        let o = run(&["useradd", "--no-create-home", "--groups", GROUP, MEMBER]);
        assert!(o.status.success(), "{}", text(&o));
    }
    if !exists("passwd", OTHER) {
        let o = run(&["useradd", "--no-create-home", OTHER]);
        assert!(o.status.success(), "{}", text(&o));
    }
}

/// `gdbus call` on our object as `user`; returns (success, output).
pub(crate) fn call_as(user: &str, address: &str, method: &str, args: &[&str]) -> (bool, String) {
    let mut argv = vec![
        "setpriv",
        "--reuid",
        user,
        "--regid",
        user,
        "--init-groups",
        "gdbus",
        "call",
        "--timeout",
        "5",
        "--address",
        address,
        "-d",
        NAME,
        "-o",
        PATH,
        "-m",
        method,
    ];
    argv.extend_from_slice(args);
    let o = run(&argv);
    (o.status.success(), text(&o))
}

pub(crate) fn busctl_as(user: &str, address: &str, args: &[&str]) -> (bool, String) {
    let addr = format!("--address={address}");
    let mut argv = vec![
        "setpriv",
        "--reuid",
        user,
        "--regid",
        user,
        "--init-groups",
        "busctl",
        &addr,
        "--timeout=5",
    ];
    argv.extend_from_slice(args);
    let o = run(&argv);
    (o.status.success(), text(&o))
}

const IFACE: &str = "io.thrive.RealtimeVoice1";

#[test]
fn system_bus_policy_interface_and_bus_restart() {
    if !testkit::proc::is_root() {
        eprintln!("SKIPPED: needs root to create test users and run processes as them");
        return;
    }
    for tool in [
        "dbus-daemon",
        "gdbus",
        "busctl",
        "setpriv",
        "useradd",
        "groupadd",
    ] {
        if !testkit::proc::have(tool) {
            eprintln!("SKIPPED: {tool} is not installed");
            return;
        }
    }
    ensure_users();
    let dir = tempfile::tempdir().expect("temp dir");
    // Other users must reach the socket and the daemon its configuration.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut bus = Bus::system(dir.path());
    let address = bus.address.clone();

    // Anyone but the service user is refused the name.
    let o = run(&[
        "setpriv",
        "--reuid",
        OTHER,
        "--regid",
        OTHER,
        "--init-groups",
        "gdbus",
        "call",
        "--address",
        &address,
        "-d",
        "org.freedesktop.DBus",
        "-o",
        "/org/freedesktop/DBus",
        "-m",
        "org.freedesktop.DBus.RequestName",
        NAME,
        "4",
    ]);
    assert!(
        text(&o).contains("AccessDenied"),
        "another user took the name: {}",
        text(&o)
    );

    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[log]\nlevel = \"debug\"\n").expect("write config");
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
    let mut daemon = Proc::spawn(
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
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(Stdio::null())
            .stderr(log),
    );
    let log_text = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    wait_for(
        Duration::from_secs(15),
        lazy(|| format!("the daemon to take its name: {}", log_text())),
        || bus.name_has_owner(NAME).then_some(()),
    );

    // Everyone: Status, properties, introspection.
    for user in [OTHER, MEMBER] {
        let (ok, out) = call_as(user, &address, &format!("{IFACE}.Status"), &[]);
        assert!(
            ok && out.contains("'state': <'idle'>"),
            "{user} Status: {out}"
        );
        let (ok, out) = call_as(
            user,
            &address,
            "org.freedesktop.DBus.Properties.Get",
            &[IFACE, "State"],
        );
        assert!(ok && out.contains("'idle'"), "{user} Get: {out}");
        let (ok, out) = call_as(
            user,
            &address,
            "org.freedesktop.DBus.Properties.GetAll",
            &[IFACE],
        );
        assert!(
            ok && out.contains("'Volume'") && out.contains("'Stats'"),
            "{user} GetAll: {out}"
        );
        let (ok, out) = busctl_as(user, &address, &["introspect", NAME, PATH]);
        assert!(
            ok && out.contains(".SendText") && out.contains(".Transcript"),
            "{user} introspect: {out}"
        );
        let o = run(&[
            "setpriv",
            "--reuid",
            user,
            "--regid",
            user,
            "--init-groups",
            "gdbus",
            "introspect",
            "--address",
            &address,
            "-d",
            NAME,
            "-o",
            PATH,
        ]);
        let out = text(&o);
        assert_eq!(
            out.matches("@org.gtk.GDBus.DocString").count(),
            20,
            "{user} docs: {out}"
        );
    }

    // A user outside the group may not steer the daemon.
    for (method, args) in [
        ("Start", vec![]),
        ("Stop", vec![]),
        ("Toggle", vec![]),
        ("SendText", vec!["hello"]),
        ("ClearMemory", vec![]),
        ("ListDevices", vec![]),
        ("TestSpeaker", vec![]),
        ("CheckEcho", vec![]),
    ] {
        let (ok, out) = call_as(OTHER, &address, &format!("{IFACE}.{method}"), &args);
        assert!(
            !ok && out.contains("org.freedesktop.DBus.Error.AccessDenied"),
            "{method}: {out}"
        );
    }
    let (ok, out) = call_as(
        OTHER,
        &address,
        "org.freedesktop.DBus.Properties.Set",
        &[IFACE, "Muted", "<true>"],
    );
    assert!(!ok && out.contains("AccessDenied"), "Set as other: {out}");
    let (ok, out) = busctl_as(
        OTHER,
        &address,
        &["set-property", NAME, PATH, IFACE, "Volume", "d", "0.3"],
    );
    assert!(
        !ok && out.contains("ccess denied"),
        "busctl set as other: {out}"
    );

    // Members of the group may; errors carry our names and one clear message.
    let (ok, out) = call_as(MEMBER, &address, &format!("{IFACE}.ListDevices"), &[]);
    assert!(
        ok && out.contains("'configured': <'both'>"),
        "ListDevices: {out}"
    );
    let (ok, out) = call_as(MEMBER, &address, &format!("{IFACE}.Stop"), &[]);
    assert!(
        !ok && out.contains("io.thrive.RealtimeVoice1.Error.NotActive"),
        "Stop idle: {out}"
    );
    let (ok, out) = call_as(MEMBER, &address, &format!("{IFACE}.SendText"), &[""]);
    assert!(
        !ok && out.contains("io.thrive.RealtimeVoice1.Error.InvalidArgument"),
        "empty text: {out}"
    );
    let long = "x".repeat(5000);
    let (ok, out) = call_as(MEMBER, &address, &format!("{IFACE}.SendText"), &[&long]);
    assert!(
        !ok && out.contains("Error.InvalidArgument") && out.contains("4096"),
        "long text: {}",
        &out[..out.len().min(300)]
    );
    let (ok, out) = call_as(MEMBER, &address, &format!("{IFACE}.SendText"), &["hello"]);
    assert!(
        !ok && out.contains("Error.NotActive"),
        "text while idle: {out}"
    );
    let (ok, out) = call_as(MEMBER, &address, &format!("{IFACE}.ClearMemory"), &[]);
    assert!(ok, "ClearMemory as a member: {out}");
    let (ok, out) = call_as(
        MEMBER,
        &address,
        "org.freedesktop.DBus.Properties.Set",
        &[IFACE, "Volume", "<1.5>"],
    );
    assert!(
        !ok && out.contains("InvalidArgs") && out.contains("between 0.0 and 1.0"),
        "volume 1.5: {out}"
    );
    let (ok, out) = busctl_as(
        MEMBER,
        &address,
        &["set-property", NAME, PATH, IFACE, "Volume", "d", "0.25"],
    );
    assert!(ok, "set volume: {out}");
    let (ok, out) = busctl_as(
        MEMBER,
        &address,
        &["get-property", NAME, PATH, IFACE, "Volume"],
    );
    assert!(ok && out.trim() == "d 0.25", "volume after set: {out}");
    let (ok, out) = call_as(
        MEMBER,
        &address,
        "org.freedesktop.DBus.Properties.Set",
        &[IFACE, "Muted", "<true>"],
    );
    assert!(ok, "set muted: {out}");

    // PropertiesChanged as a conversation is started and fails (this build cannot connect).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let changes: Vec<HashMap<String, String>> = runtime.block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .expect("address")
            .build()
            .await
            .expect("connect to the test bus");
        let props = zbus::fdo::PropertiesProxy::builder(&conn)
            .destination(NAME)
            .expect("destination")
            .path(PATH)
            .expect("path")
            .build()
            .await
            .expect("properties proxy");
        let mut stream = props.receive_properties_changed().await.expect("subscribe");
        // No key on this test machine: the call says so at once, and the state shows it too.
        let (ok, out) = call_as(MEMBER, &address, &format!("{IFACE}.Start"), &[]);
        assert!(
            !ok && out.contains("Error.NotConfigured") && out.contains("no API key"),
            "Start as member without a key: {out}"
        );
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(signal) = stream.next().await {
                let args = signal.args().expect("signal args");
                let change: HashMap<String, String> = args
                    .changed_properties()
                    .iter()
                    .map(|(k, v)| (k.to_string(), format!("{v}")))
                    .collect();
                let done = change.get("State").is_some_and(|s| s.contains("error"));
                seen.push(change);
                if done {
                    break;
                }
            }
        })
        .await;
        seen
    });
    let all: HashMap<String, String> = changes
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(
        all.get("State").is_some_and(|s| s.contains("error")),
        "{changes:?}"
    );
    assert!(
        all.get("LastError")
            .is_some_and(|s| s.contains("no API key")),
        "{changes:?}"
    );
    let (_, out) = busctl_as(
        OTHER,
        &address,
        &["get-property", NAME, PATH, IFACE, "State", "LastError"],
    );
    assert!(
        out.contains("\"error\"") && out.contains("no API key"),
        "{out}"
    );

    // The bus goes away and comes back: the daemon stays up and takes its name again.
    // Down long enough for reconnect attempts to fail first.
    bus.restart(Duration::from_millis(1500));
    assert!(
        daemon.alive(),
        "the daemon died with the bus: {}",
        log_text()
    );
    wait_for(
        Duration::from_secs(15),
        lazy(|| format!("the daemon to take its name again: {}", log_text())),
        || bus.name_has_owner(NAME).then_some(()),
    );
    let (ok, out) = call_as(OTHER, &address, &format!("{IFACE}.Status"), &[]);
    assert!(
        ok && out.contains("'state': <'error'>"),
        "Status after the restart: {out}"
    );
    assert!(daemon.alive());

    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("the daemon stops on SIGTERM");
    assert!(status.success(), "exit status {status:?}: {}", log_text());
    assert!(!log_text().contains("panicked"), "{}", log_text());
    assert!(
        log_text().contains("lost the D-Bus system bus"),
        "{}",
        log_text()
    );
}
