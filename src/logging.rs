//! Logging: to the journal with structured fields when systemd started us (it sets
//! `JOURNAL_STREAM`), to stderr otherwise. The level comes from the configuration; `RUST_LOG`
//! overrides it.
//!
//! A journal entry's MESSAGE reads as the terminal line does, the words and then the values
//! (`state changed state=listening`), so that `journalctl -u realtime-voiced` says which state
//! or what was said; each value is also a field of its own (`F_STATE=listening`) for
//! `journalctl F_STATE=listening`.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::LogLevel;

/// Lets a reloaded configuration change the level without restarting.
pub struct LogHandle {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

/// Libraries that write request headers (a bearer token among them) at trace level. Their
/// trace stays off unless RUST_LOG names them.
const HEADER_LOGGERS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
    "rustls",
];

fn filter(level: LogLevel) -> EnvFilter {
    let spec = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() && EnvFilter::try_new(&spec).is_ok() => {
            let mut spec = spec;
            for lib in HEADER_LOGGERS {
                if !spec.split([',', '=']).any(|part| part.trim() == *lib) {
                    spec.push_str(&format!(",{lib}=debug"));
                }
            }
            spec
        }
        // Our crate at the configured level; the libraries (webrtc, zbus, …) quieter, because
        // their lines mean little to a user, and their trace can carry secrets.
        _ => match level {
            LogLevel::Debug | LogLevel::Trace => {
                format!("info,realtime_voiced={}", level.as_str())
            }
            _ => format!("warn,realtime_voiced={}", level.as_str()),
        },
    };
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(level.as_str()))
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(level: LogLevel) -> LogHandle {
    let (filter, handle) = reload::Layer::new(filter(level));
    let registry = tracing_subscriber::registry().with(filter).with(Quiet);
    // JOURNAL_STREAM alone is not enough: without journald's socket the lines would vanish.
    let journald =
        std::env::var_os("JOURNAL_STREAM").and_then(|_| Journal::connect(JOURNAL_SOCKET).ok());
    let installed = match journald {
        Some(layer) => registry.with(layer).try_init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .compact(),
            )
            .try_init(),
    };
    LogHandle {
        handle: installed.is_ok().then_some(handle),
    }
}

/// Drops library lines that only describe a normal race. webrtc-rs warns
/// `IceHandler.handle_read got error: password is empty` when the service's first connectivity
/// check arrives before its SDP answer has been read (the answerer may start checking as soon as
/// it has answered, RFC 8445 section 7.3): the check is dropped, the service sends it again, and
/// the call connects. Seen on every loopback call; every other line of that handler stays.
struct Quiet;

impl<S: Subscriber> Layer<S> for Quiet {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        if *event.metadata().level() != Level::WARN {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        !is_ice_check_before_answer(fields.target(event), &fields.message)
    }
}

fn is_ice_check_before_answer(target: &str, message: &str) -> bool {
    target.starts_with("rtc::peer_connection::handler")
        && message.starts_with("IceHandler.handle_read")
        && message.ends_with("password is empty")
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Writes entries to journald in its native protocol (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>).
struct Journal {
    socket: UnixDatagram,
    path: std::path::PathBuf,
}

impl Journal {
    fn connect(path: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let socket = UnixDatagram::unbound()?;
        // journald discards an empty datagram: this only checks that it listens.
        socket.send_to(&[], &path)?;
        Ok(Journal { socket, path })
    }

    fn send(&self, entry: &[u8]) -> std::io::Result<()> {
        self.socket.send_to(entry, &self.path).map(|_| ())
    }
}

/// An event's message and other fields, as recorded.
#[derive(Default)]
struct Fields {
    message: String,
    values: Vec<(&'static str, String)>,
    /// Where a line from a `log` crate came from (tracing-log passes it as `log.*` fields).
    log_target: Option<String>,
    log_file: Option<String>,
    log_line: Option<String>,
}

impl Fields {
    fn target<'a>(&'a self, event: &'a Event<'_>) -> &'a str {
        self.log_target
            .as_deref()
            .unwrap_or(event.metadata().target())
    }

    fn put(&mut self, field: &Field, value: String) {
        match field.name() {
            "message" => self.message = value,
            "log.target" => self.log_target = Some(value),
            "log.file" => self.log_file = Some(value),
            "log.line" => self.log_line = Some(value),
            "log.module_path" => {}
            name => self.values.push((name, value)),
        }
    }

    /// The terminal line's words and values: `state changed state=listening`.
    fn line(&self) -> String {
        let mut line = self.message.clone();
        for (name, value) in &self.values {
            let sep = if line.is_empty() { "" } else { " " };
            if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"') {
                let _ = write!(line, "{sep}{name}={value:?}");
            } else {
                let _ = write!(line, "{sep}{name}={value}");
            }
        }
        line
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

/// Journal field names: letters, digits and underscores, upper case, not starting with `_`;
/// the event's own fields get an `F_` prefix so that they never collide with journald's.
fn journal_field_name(name: &str) -> String {
    let mut out = String::from("F_");
    out.extend(name.chars().map(|c| match c {
        'a'..='z' => c.to_ascii_uppercase(),
        'A'..='Z' | '0'..='9' => c,
        _ => '_',
    }));
    out
}

/// One field in the binary-safe form: the name, a newline, the value's length as a 64-bit
/// little-endian number, the value, a newline.
fn put_field(entry: &mut Vec<u8>, name: &str, value: &[u8]) {
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'\n');
    entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
    entry.extend_from_slice(value);
    entry.push(b'\n');
}

/// Longest value sent when a whole entry does not fit in one datagram.
const SHORTENED_VALUE: usize = 16 * 1024;

fn journal_entry(event: &Event<'_>, fields: &Fields, limit: Option<usize>) -> Vec<u8> {
    let meta = event.metadata();
    let cut = |v: &str| -> String {
        match limit {
            Some(max) if v.len() > max => {
                let mut end = max;
                while !v.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}…", &v[..end])
            }
            _ => v.to_owned(),
        }
    };
    let priority: &[u8] = match *meta.level() {
        Level::ERROR => b"3",
        Level::WARN => b"4",
        Level::INFO => b"5",
        Level::DEBUG => b"6",
        Level::TRACE => b"7",
    };
    let mut entry = Vec::with_capacity(256);
    put_field(&mut entry, "PRIORITY", priority);
    put_field(&mut entry, "MESSAGE", cut(&fields.line()).as_bytes());
    put_field(&mut entry, "SYSLOG_IDENTIFIER", b"realtime-voiced");
    put_field(&mut entry, "TARGET", fields.target(event).as_bytes());
    if let Some(file) = fields.log_file.as_deref().or(meta.file()) {
        put_field(&mut entry, "CODE_FILE", file.as_bytes());
    }
    let line = fields
        .log_line
        .clone()
        .or(meta.line().map(|l| l.to_string()));
    if let Some(line) = line {
        put_field(&mut entry, "CODE_LINE", line.as_bytes());
    }
    for (name, value) in &fields.values {
        put_field(&mut entry, &journal_field_name(name), cut(value).as_bytes());
    }
    entry
}

impl<S: Subscriber> Layer<S> for Journal {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if self.send(&journal_entry(event, &fields, None)).is_err() {
            // Too large for one datagram (a very long transcript): the same entry, shortened.
            // Nothing else can be done about a journal that is gone.
            let _ = self.send(&journal_entry(event, &fields, Some(SHORTENED_VALUE)));
        }
    }
}

impl LogHandle {
    pub fn set_level(&self, level: LogLevel) {
        if let Some(h) = &self.handle {
            let _ = h.reload(filter(level));
        }
    }
}

/// Lets a repeated warning through a few times per window and holds back the rest, so that a
/// hostile or broken peer cannot flood the journal; the next line let through says how many
/// were held back.
#[derive(Debug)]
pub struct Throttle {
    burst: u32,
    window: std::time::Duration,
    started: Option<std::time::Instant>,
    shown: u32,
    held: u64,
}

impl Throttle {
    pub const fn new(burst: u32, window: std::time::Duration) -> Self {
        Throttle {
            burst,
            window,
            started: None,
            shown: 0,
            held: 0,
        }
    }

    /// For warnings about what a peer sent: five a minute.
    pub const fn peer_input() -> Self {
        Throttle::new(5, std::time::Duration::from_secs(60))
    }

    /// `Some(held back since the last one shown)` when this occurrence is to be logged.
    pub fn admit(&mut self, now: std::time::Instant) -> Option<u64> {
        let started = *self.started.get_or_insert(now);
        if now.saturating_duration_since(started) >= self.window {
            self.started = Some(now);
            self.shown = 0;
        }
        if self.shown < self.burst {
            self.shown += 1;
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

impl Throttle {
    /// How many were held back since the last line let through (for a closing line).
    pub fn held(&self) -> u64 {
        self.held
    }
}

/// " (N more like it held back)" for a throttled line, or nothing.
pub fn held_back(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it held back)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    /// Reads one entry in journald's native protocol back into its fields.
    fn parse_entry(mut data: &[u8]) -> HashMap<String, String> {
        let mut fields = HashMap::new();
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n').expect("a name ends");
            let name = String::from_utf8(data[..nl].to_vec()).unwrap();
            assert!(!name.contains('='), "every field is length-encoded: {name}");
            let len = u64::from_le_bytes(data[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &data[nl + 9..nl + 9 + len];
            assert_eq!(data[nl + 9 + len], b'\n');
            fields.insert(name, String::from_utf8(value.to_vec()).unwrap());
            data = &data[nl + 10 + len..];
        }
        fields
    }

    /// Logs with the journal layer (and the quieting one) into a socket standing in for
    /// journald's, and returns the entries it received.
    fn journal_entries(log: impl FnOnce()) -> Vec<HashMap<String, String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let journald = UnixDatagram::bind(&path).unwrap();
        let layer = Journal::connect(&path).unwrap();
        let subscriber = tracing_subscriber::registry().with(Quiet).with(layer);
        tracing::subscriber::with_default(subscriber, log);
        journald.set_nonblocking(true).unwrap();
        let mut entries = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = journald.recv(&mut buf) {
            if n > 0 {
                entries.push(parse_entry(&buf[..n]));
            }
        }
        entries
    }

    #[test]
    fn a_journal_message_carries_the_values_as_the_terminal_line_does() {
        let entries = journal_entries(|| {
            tracing::info!(state = "listening", "state changed");
            tracing::info!(role = "user", "transcript: what is the weather like");
            tracing::warn!(attempt = 2, "reconnecting");
        });
        assert_eq!(entries.len(), 3);
        let state = &entries[0];
        assert_eq!(state["MESSAGE"], "state changed state=listening");
        assert_eq!(state["F_STATE"], "listening");
        assert_eq!(state["PRIORITY"], "5");
        assert_eq!(state["SYSLOG_IDENTIFIER"], "realtime-voiced");
        assert_eq!(state["CODE_FILE"], file!());
        assert!(state["CODE_LINE"].parse::<u32>().is_ok());
        assert_eq!(
            entries[1]["MESSAGE"],
            "transcript: what is the weather like role=user"
        );
        assert_eq!(entries[1]["F_ROLE"], "user");
        assert_eq!(entries[2]["MESSAGE"], "reconnecting attempt=2");
        assert_eq!(entries[2]["PRIORITY"], "4");
    }

    #[test]
    fn values_with_spaces_are_quoted_and_newlines_stay_in_one_entry() {
        let entries = journal_entries(|| {
            tracing::info!(tool = %"say hi", "tool call");
            tracing::error!("two\nlines");
        });
        assert_eq!(entries[0]["MESSAGE"], "tool call tool=\"say hi\"");
        assert_eq!(entries[0]["F_TOOL"], "say hi");
        assert_eq!(entries[1]["MESSAGE"], "two\nlines");
        assert_eq!(entries[1]["PRIORITY"], "3");
    }

    #[test]
    fn an_ice_check_before_the_answer_is_not_logged_other_handler_errors_are() {
        let entries = journal_entries(|| {
            tracing::warn!(
                target: "rtc::peer_connection::handler",
                "IceHandler.handle_read got error: password is empty"
            );
            tracing::warn!(
                target: "rtc::peer_connection::handler",
                "DtlsHandler.handle_read got error: alert"
            );
        });
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0]["MESSAGE"],
            "DtlsHandler.handle_read got error: alert"
        );
        assert_eq!(entries[0]["TARGET"], "rtc::peer_connection::handler");
    }

    #[test]
    fn a_flood_of_warnings_becomes_a_few_lines_that_count_the_rest() {
        let mut t = Throttle::new(5, Duration::from_secs(10));
        let start = Instant::now();
        let shown: Vec<u64> = (0..20_000)
            .filter_map(|i| t.admit(start + Duration::from_micros(i * 100)))
            .collect();
        // 2 s of a flood: five lines.
        assert_eq!(shown, vec![0, 0, 0, 0, 0]);
        // The next window's first line says how many were held back.
        assert_eq!(t.admit(start + Duration::from_secs(11)), Some(19_995));
        assert_eq!(held_back(19_995), " (19995 more like it held back)");
        assert_eq!(held_back(0), "");
    }
}
