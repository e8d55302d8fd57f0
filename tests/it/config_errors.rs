//! A configuration that is wrong: `check-config` and the daemon refuse it with exit code 78 and
//! lines that say where.

use std::path::Path;

use crate::cli::{run, text, write};

/// `check-config` on `path`, which must refuse it with exit code 78: what it printed.
fn refused(path: &Path) -> String {
    let out = run(
        &["check-config", "--config", path.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{}", path.display());
    text(&out.stderr)
}

#[test]
fn check_config_rejects_bad_files_with_exit_78_and_located_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(
        dir.path(),
        "bad.toml",
        "[audio]\nvolume = 1.5\n\n[gpio]\nbutton_pin = 99\n",
    );
    let stderr = refused(&bad);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].ends_with("bad.toml:2:10: `audio.volume`: must be between 0.0 and 1.0, got 1.5"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("bad.toml:5:14: `gpio.button_pin`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));

    let unknown = write(
        dir.path(),
        "unknown.toml",
        "[transport]\nknd = \"websocket\"\n",
    );
    let stderr = refused(&unknown);
    assert!(stderr.contains("unknown.toml:2:1: "), "{stderr}");

    let stderr = refused(Path::new("/nonexistent/x.toml"));
    assert!(
        stderr.contains("cannot read configuration /nonexistent/x.toml"),
        "{stderr}"
    );
}

#[test]
fn daemon_refuses_an_invalid_config_with_one_line_and_exit_78() {
    let out = run(&["--config", "/nonexistent/realtime-voiced.toml"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/realtime-voiced.toml"));
}

#[test]
fn files_that_never_end_block_or_are_not_text_are_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |path: &str| {
        let started = std::time::Instant::now();
        let out = run(&["check-config", "--config", path], &[]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path}: no hang"
        );
        assert_eq!(out.status.code(), Some(78), "{path}");
        text(&out.stderr)
    };
    let stderr = check("/dev/zero");
    assert!(stderr.contains("not a regular file"), "{stderr}");

    let fifo = dir.path().join("fifo.toml");
    let name = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
    // SAFETY: mkfifo reads the NUL-terminated path only.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let stderr = check(fifo.to_str().expect("utf-8"));
    assert!(stderr.contains("not a regular file"), "{stderr}");

    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"[session]\npersona = \"caf\xe9\"\n").expect("write");
    let stderr = check(latin1.to_str().expect("utf-8"));
    assert!(
        stderr.contains("latin1.toml:2:15: not UTF-8 text (the byte at offset 24)"),
        "{stderr}"
    );

    // Nesting past the parser's depth is located too.
    let deep = write(
        dir.path(),
        "deep.toml",
        &format!(
            "[session]\npersona = {}{}\n",
            "[".repeat(5000),
            "]".repeat(5000)
        ),
    );
    let stderr = check(deep.to_str().expect("utf-8"));
    assert!(stderr.contains("deep.toml:2:"), "{stderr}");
    let deep = write(
        dir.path(),
        "deep-tables.toml",
        &format!("a = {}1{}\n", "{b = ".repeat(3000), "}".repeat(3000)),
    );
    let stderr = check(deep.to_str().expect("utf-8"));
    assert!(stderr.contains("deep-tables.toml:1:"), "{stderr}");

    let key_config = write(
        dir.path(),
        "key.toml",
        "[api]\napi_key_file = \"/dev/zero\"\n",
    );
    let stderr = check(key_config.to_str().expect("utf-8"));
    assert!(
        stderr.contains("cannot read API key file /dev/zero: not a regular file"),
        "{stderr}"
    );
}

#[test]
fn two_hundred_mutated_configs_are_each_accepted_or_refused_with_a_location() {
    use realtime_voiced::config::{Config, ConfigError};
    let shipped =
        std::fs::read(testkit::root().join("config/realtime-voiced.toml")).expect("shipped");
    // A small deterministic generator: the same mutations every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let path = std::path::Path::new("mutated.toml");
    let mut refused = 0;
    for round in 0..200 {
        let mut bytes = shipped.clone();
        // Uncomment a few lines first, so the mutations meet real keys.
        for _ in 0..20 {
            let at = (next() as usize) % bytes.len();
            if let Some(hash) = bytes[at..].iter().position(|&b| b == b'#') {
                bytes[at + hash] = b' ';
            }
        }
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % bytes.len();
            match next() % 4 {
                0 => bytes[at] = (next() % 256) as u8,
                1 => bytes.truncate(at),
                2 => bytes.insert(at, b"[]{}=\"'\n0.-x#"[(next() % 13) as usize]),
                _ => {
                    bytes.remove(at);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        let result = match String::from_utf8(bytes) {
            Ok(text) => Config::parse(&text, path),
            // Non-UTF-8 goes through load, which locates the byte; parse takes text only.
            Err(_) => continue,
        };
        match result {
            Ok(_) => {}
            Err(ConfigError::Invalid { problems, .. }) => {
                refused += 1;
                for p in &problems {
                    assert!(
                        p.position.is_some(),
                        "round {round}: no location for {:?}: {}",
                        p.key,
                        p.message
                    );
                }
            }
            Err(other) => panic!("round {round}: {other}"),
        }
    }
    eprintln!("200 mutated configurations: {refused} refused, each with a location");
    assert!(
        refused > 50,
        "the mutations should break most files ({refused})"
    );
}

/// A GPT-Live configuration with a field the service would refuse, an option of the Realtime
/// API and a model of the other API: each refused at its line, before any connection.
#[test]
fn check_config_refuses_what_gpt_live_would_not_take() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(
        dir.path(),
        "live.toml",
        "[api]\nprotocol = \"live\"\nmodel = \"gpt-realtime-2.1\"\ntoken_url = \"https://example.com/t\"\n\n\
         [session.turn_detection]\nthreshold = 0.6\n\n\
         [live.responses]\nmodel = \"gpt-5.5\"\ntemperature = 0.2\n",
    );
    let stderr = refused(&bad);
    for (line, what) in [
        ("live.toml:3:9: `api.model`", "is not a GPT-Live model"),
        (
            "live.toml:4:13: `api.token_url`",
            "GPT-Live has no short-lived client tokens",
        ),
        ("live.toml:6:", "GPT-Live decides turns itself"),
        ("live.toml:11:", "unknown field `temperature`"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(line) && l.contains(what)),
            "{line} … {what}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"));

    // The other way round: a Live model and Live options under the Realtime API.
    let bad = write(
        dir.path(),
        "realtime.toml",
        "[api]\nmodel = \"gpt-live-1\"\nsession_url = \"https://example.com/live\"\n\n[live]\ndelegation = \"client\"\n",
    );
    let stderr = refused(&bad);
    for (line, what) in [
        (
            "realtime.toml:2:9: `api.model`",
            "set api.protocol = \"live\"",
        ),
        ("realtime.toml:3:", "only used with api.protocol = \"live\""),
        ("realtime.toml:5:", "only used with api.protocol = \"live\""),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(line) && l.contains(what)),
            "{line} … {what}:\n{stderr}"
        );
    }

    // A good one passes, and the model defaults to the protocol's.
    let good = write(
        dir.path(),
        "good.toml",
        "[api]\nprotocol = \"live\"\n\n[live]\ndelegation = \"responses\"\n\n[live.responses]\nmodel = \"gpt-5.5\"\ntools = [{ type = \"web_search\" }]\nreasoning = { effort = \"low\" }\n",
    );
    let out = run(
        &["check-config", "--config", good.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
