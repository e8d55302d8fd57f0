//! The Debian package's description: what `cargo deb` will ship, and the maintainer scripts'
//! promises (nothing enabled or started on install, purge removes the user). Building and checking
//! the real packages is `packaging/build-deb.sh` and `packaging/check-deb.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::Proc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> toml::Table {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("read Cargo.toml");
    text.parse().expect("parse Cargo.toml")
}

fn deb_metadata() -> toml::Table {
    manifest()["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// (source, destination) of every asset.
fn assets() -> Vec<(String, String)> {
    deb_metadata()["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("asset as [source, dest, mode]");
            (
                a[0].as_str().expect("source").to_owned(),
                a[1].as_str().expect("dest").to_owned(),
            )
        })
        .collect()
}

fn read(path: impl AsRef<Path>) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn ships_the_daemon_and_not_the_simulator() {
    let assets = assets();
    let binaries: Vec<_> = assets
        .iter()
        .filter(|(src, _)| src.starts_with("target/"))
        .collect();
    assert_eq!(
        binaries,
        [&(
            "target/release/realtime-voiced".to_owned(),
            "usr/bin/".to_owned()
        )]
    );
    assert!(!assets.iter().any(|(src, _)| src.contains("realtime-sim")));
}

#[test]
fn every_other_asset_exists_and_lands_where_systemd_and_dbus_look() {
    let assets = assets();
    for (src, _) in assets.iter().filter(|(src, _)| !src.starts_with("target/")) {
        assert!(root().join(src).is_file(), "asset {src} is missing");
    }
    let dest_of = |src: &str| {
        assets
            .iter()
            .find(|(s, _)| s == src)
            .map(|(_, d)| d.as_str())
            .unwrap_or_else(|| panic!("{src} is not an asset"))
    };
    assert_eq!(
        dest_of("systemd/realtime-voiced.service"),
        "lib/systemd/system/"
    );
    assert_eq!(
        dest_of("packaging/dbus/io.thrive.RealtimeVoice1.conf"),
        "usr/share/dbus-1/system.d/"
    );
    // Under /etc, cargo-deb marks it a conffile: upgrades keep the user's edits.
    assert_eq!(
        dest_of("config/realtime-voiced.toml"),
        "etc/realtime-voiced/config.toml"
    );
    assert_eq!(
        Path::new("/")
            .join(dest_of("config/realtime-voiced.toml"))
            .to_str(),
        Some(realtime_voiced::config::DEFAULT_PATH)
    );
}

#[test]
fn depends_on_the_real_libraries_and_the_bus() {
    let deb = deb_metadata();
    let depends = deb["depends"].as_str().expect("depends");
    for wanted in ["$auto", "dbus", "ca-certificates", "adduser"] {
        assert!(
            depends.contains(wanted),
            "depends lacks {wanted}: {depends}"
        );
    }
}

#[test]
fn changelog_names_the_crate_version() {
    let changelog = read("packaging/debian/changelog");
    let first = changelog.lines().next().expect("changelog is empty");
    let expected = format!("realtime-voiced ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(
        first.starts_with(&expected),
        "changelog starts with {first:?}, expected {expected:?}"
    );
}

#[test]
fn maintainer_scripts_parse_and_start_nothing() {
    for script in ["postinst", "prerm", "postrm"] {
        let path = root().join("packaging/debian").join(script);
        let limit = Duration::from_secs(10);
        let status = Proc::spawn(Command::new("sh").arg("-n").arg(&path))
            .wait_exit(limit)
            .unwrap_or_else(|| panic!("timed out after {limit:?}"));
        assert!(status.success(), "{script} does not parse");
    }
    let postinst = read("packaging/debian/postinst");
    // The code, without comments and without the message printed for the user (a here-document).
    let mut in_message = false;
    let code = postinst.lines().map(str::trim).filter(|l| {
        if in_message {
            in_message = *l != "MSG";
            return false;
        }
        in_message = l.contains("<<'MSG'");
        !l.starts_with('#')
    });
    for line in code {
        assert!(
            !(line.contains("systemctl") && (line.contains("enable") || line.contains("start"))),
            "postinst starts or enables the service: {line}"
        );
        assert!(
            !line.contains("deb-systemd-invoke start")
                && !line.contains("deb-systemd-invoke restart"),
            "postinst starts the service: {line}"
        );
    }
    assert!(postinst.contains("systemctl enable --now realtime-voiced"));
    assert!(postinst.contains("adduser --system"));
    assert!(postinst.contains("realtime-voice"));
    let postrm = read("packaging/debian/postrm");
    assert!(postrm.contains("/var/lib/realtime-voiced"));
    assert!(postrm.contains("deluser --system"));
}

/// Debian's arm64 canceller library has no NEON code: the arm64 build takes the crate's bundled
/// source and links it statically, so the package must ship that source's licence.
#[test]
fn the_arm64_canceller_is_built_from_source_and_its_licence_ships() {
    let manifest = manifest();
    let features = manifest["target"]["cfg(target_arch = \"aarch64\")"]["dependencies"]
        ["webrtc-audio-processing-sys"]["features"]
        .as_array()
        .expect("features of the arm64 canceller");
    assert!(
        features.iter().any(|f| f.as_str() == Some("bundled")),
        "{features:?}"
    );
    let doc = "usr/share/doc/realtime-voiced/webrtc-audio-processing/";
    for file in ["COPYING", "PATENTS", "LICENSE_THIRD_PARTY"] {
        let src = format!("packaging/debian/webrtc-audio-processing/{file}");
        assert!(
            assets().contains(&(src.clone(), doc.to_owned())),
            "{src} is not shipped in {doc}"
        );
    }
    assert!(read("packaging/debian/copyright").contains("webrtc-audio-processing 0.3.1"));
}
