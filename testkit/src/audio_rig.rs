//! Sound with no sound card: PulseAudio with a null sink (real-time pacing, and what is played
//! comes back on its monitor), and an asoundrc naming ALSA devices in front of it or of alsa-lib's
//! `null` device, with `file` plugins to inject and record exact samples.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::proc::Proc;
use crate::wait::wait_for;

/// PulseAudio with a mono 48 kHz null sink named `nullsink`, on a socket in the test's
/// directory; killed when dropped.
pub struct Pulse {
    pub socket: PathBuf,
    pub proc: Proc,
}

impl Pulse {
    /// Starts the server and waits until it lists its null sink. Starting again in the same
    /// directory (after the first is dropped) reuses the socket path, so an asoundrc written
    /// for the first still holds.
    pub fn start(dir: &Path) -> Pulse {
        let socket = dir.join("pulse-native");
        let _ = std::fs::remove_file(&socket);
        let runtime = dir.join("pulse-runtime");
        std::fs::create_dir_all(&runtime).expect("runtime dir");
        let proc = Proc::spawn(
            Command::new("pulseaudio")
                .args([
                    "-n",
                    "--daemonize=no",
                    "--exit-idle-time=-1",
                    "--use-pid-file=no",
                    "--disallow-exit",
                ])
                .arg("-L")
                .arg(format!(
                    "module-native-protocol-unix socket={} auth-anonymous=1",
                    socket.display()
                ))
                .arg("-L")
                .arg("module-null-sink sink_name=nullsink rate=48000 channels=1 format=s16le")
                .env("PULSE_RUNTIME_PATH", &runtime)
                // The test's directory, not `runtime`: with the latter, a 700 ms stall of a
                // client showed no xrun at all (audio_alsa's paced-device test).
                .env("XDG_RUNTIME_DIR", dir)
                .env("HOME", dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        // The socket appears before the null sink is loaded: wait until the server lists it.
        let server = format!("unix:{}", socket.display());
        wait_for(Duration::from_secs(10), "PulseAudio's null sink", || {
            Command::new("pactl")
                .args(["--server", &server, "list", "short", "sinks"])
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("nullsink"))
                .then_some(())
        });
        Pulse { socket, proc }
    }

    /// The server address, as ALSA's pulse plugin and pactl take it.
    pub fn server(&self) -> String {
        format!("unix:{}", self.socket.display())
    }
}

/// What an ALSA device is in front of.
#[derive(Clone, Copy)]
pub enum Slave<'a> {
    /// alsa-lib's `null` device: takes anything, gives silence, not paced.
    Null,
    /// The null sink's monitor: what was played, paced in real time.
    PulseMonitor(&'a Pulse),
    /// The null sink, paced in real time.
    PulseSink(&'a Pulse),
}

impl Slave<'_> {
    fn definition(self) -> String {
        match self {
            Slave::Null => "type null".to_owned(),
            Slave::PulseMonitor(p) => {
                format!(
                    "type pulse server \"{}\" device \"nullsink.monitor\"",
                    p.server()
                )
            }
            Slave::PulseSink(p) => {
                format!("type pulse server \"{}\" device \"nullsink\"", p.server())
            }
        }
    }
}

/// An asoundrc, device by device.
#[derive(Default)]
pub struct Asoundrc {
    text: String,
}

impl Asoundrc {
    pub fn new() -> Asoundrc {
        Asoundrc::default()
    }

    /// `name` is the slave itself.
    pub fn device(mut self, name: &str, slave: Slave) -> Self {
        let _ = writeln!(self.text, "pcm.{name} {{ {} }}", slave.definition());
        self
    }

    /// `name` captures the raw S16LE samples in `infile` (paced by the slave, if it is).
    pub fn reads_file(mut self, name: &str, slave: Slave, infile: &Path) -> Self {
        let _ = writeln!(
            self.text,
            "pcm.{name} {{ type file slave.pcm {{ {} }} file \"/dev/null\" infile \"{}\" format \"raw\" }}",
            slave.definition(),
            infile.display()
        );
        self
    }

    /// `name` plays into the slave and writes every sample played to `file`, raw S16LE.
    pub fn writes_file(mut self, name: &str, slave: Slave, file: &Path) -> Self {
        let _ = writeln!(
            self.text,
            "pcm.{name} {{ type file slave.pcm {{ {} }} file \"{}\" format \"raw\" }}",
            slave.definition(),
            file.display()
        );
        self
    }

    /// Writes `dir/asound.conf`; returns the value for `ALSA_CONFIG_PATH`.
    pub fn write(&self, dir: &Path) -> String {
        let conf = dir.join("asound.conf");
        std::fs::write(&conf, &self.text).expect("write asound.conf");
        alsa_config_path(dir)
    }

    /// Writes `dir/asound.conf`; returns the value for `ALSA_CONFIG_PATH` that loads these
    /// devices alone: not alsa-lib's `alsa.conf`, so no other package's drop-ins either. This
    /// machine's PulseAudio plugin hooks into every alsa-lib user through them, loading
    /// libpulse and its dependencies (about 3 MiB resident) into a process that never uses a
    /// sound server; a device without PulseAudio does not. For `file`/`null` measurements.
    pub fn write_alone(&self, dir: &Path) -> String {
        self.write(dir);
        dir.join("asound.conf").display().to_string()
    }
}

/// `ALSA_CONFIG_PATH` for the asoundrc [`Asoundrc::write`] puts in `dir`: alsa-lib's own
/// configuration, then that.
pub fn alsa_config_path(dir: &Path) -> String {
    format!(
        "/usr/share/alsa/alsa.conf:{}",
        dir.join("asound.conf").display()
    )
}
