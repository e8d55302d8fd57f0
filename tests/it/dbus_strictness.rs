//! The interface refuses what it does not offer: a call whose arguments are not the
//! introspected ones, and a write to a read-only property, each with the standard error.

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::bus::Bus;
use testkit::{wait_for, Proc};

use crate::DAEMON;

#[test]
fn wrong_arguments_and_read_only_properties_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = Bus::session(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[dbus]\nbus = \"session\"\n[audio]\ncapture_device = \"null\"\nplayback_device = \"null\"\n",
    )
    .expect("config");
    let _daemon = Proc::spawn(
        Command::new(DAEMON)
            .args(["--config", config.to_str().expect("utf-8")])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env_remove("OPENAI_API_KEY")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for(Duration::from_secs(20), "the daemon on the bus", || {
        bus.property("State")
    });
    // dbus-send prints the error's name, which busctl does not.
    let send = |args: &[&str]| {
        let out = Command::new("timeout")
            .args(["10", "dbus-send"])
            .arg(format!("--bus={}", bus.address))
            .args(["--print-reply", &format!("--dest={}", testkit::bus::NAME)])
            .arg(testkit::bus::PATH)
            .args(args)
            .output()
            .expect("dbus-send");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let method = |name: &str| format!("{}.{name}", testkit::bus::NAME);
    for (name, args) in [
        ("Start", &["string:now"][..]),
        ("Stop", &["uint32:1"][..]),
        ("Status", &["uint32:1"][..]),
        ("SendText", &[][..]),
    ] {
        let mut call = vec![method(name)];
        call.extend(args.iter().map(|a| a.to_string()));
        let call: Vec<&str> = call.iter().map(String::as_str).collect();
        let (ok, err) = send(&call);
        assert!(!ok, "{name}{args:?} was accepted");
        assert!(
            err.contains("org.freedesktop.DBus.Error.InvalidArgs"),
            "{name}{args:?}: {err}"
        );
    }
    // The daemon did not act on the refused Start.
    assert_eq!(bus.property("State").as_deref(), Some("idle"));

    let (ok, err) = send(&[
        "org.freedesktop.DBus.Properties.Set",
        &format!("string:{}", testkit::bus::NAME),
        "string:State",
        "variant:string:listening",
    ]);
    assert!(!ok);
    assert!(
        err.contains("org.freedesktop.DBus.Error.PropertyReadOnly"),
        "{err}"
    );
}
