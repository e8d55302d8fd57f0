//! Options that belong to one of the two protocols. Written in the file while the other
//! protocol is chosen, they are refused at their line rather than silently ignored: a user who
//! sets `turn_detection` for GPT-Live would otherwise wonder why nothing changes.

use super::{Config, Delegation, Protocol};

/// Realtime API options with no meaning under GPT-Live, and why.
const REALTIME_ONLY: &[(&str, &str)] = &[
    (
        "api.token_url",
        "is a Realtime API option: GPT-Live has no short-lived client tokens (a backend creates the session instead: api.session_url)",
    ),
    (
        "api.token_url_headers",
        "is a Realtime API option: GPT-Live has no short-lived client tokens (use api.session_url_headers)",
    ),
    (
        "api.token_lifetime_s",
        "is a Realtime API option: GPT-Live has no short-lived client tokens",
    ),
    (
        "session.turn_detection",
        "is a Realtime API option: GPT-Live decides turns itself and takes no turn detection settings",
    ),
    (
        "session.transcription_model",
        "is a Realtime API option: GPT-Live transcribes with its own model",
    ),
];

/// GPT-Live options with no meaning under the Realtime API.
const LIVE_ONLY: &[(&str, &str)] = &[
    ("live", "is only used with api.protocol = \"live\""),
    (
        "api.session_url",
        "is only used with api.protocol = \"live\" (the Realtime API's backend is api.token_url)",
    ),
    (
        "api.session_url_headers",
        "is only used with api.protocol = \"live\"",
    ),
];

/// The fields of GPT-Live's `delegation.responses` object; the service rejects any other.
const RESPONSES_FIELDS: &[&str] = &[
    "model",
    "instructions",
    "max_output_tokens",
    "service_tier",
    "reasoning",
    "text",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
];

/// Problems only the file's text shows (which keys are written), as (key, message).
pub fn problems(text: &str, config: &Config) -> Vec<(String, String)> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let foreign = match config.api.protocol {
        Protocol::Realtime => LIVE_ONLY,
        Protocol::Live => REALTIME_ONLY,
    };
    let mut out: Vec<(String, String)> = foreign
        .iter()
        .filter(|(key, _)| is_written(&table, key))
        .map(|(key, why)| ((*key).to_owned(), format!("{key} {why}")))
        .collect();
    if config.api.protocol == Protocol::Live {
        out.extend(live_problems(config));
    }
    out
}

/// Takes out of an effective configuration what does not apply to its protocol, so that what
/// `check-config` prints reads right and parses back.
pub fn drop_foreign(table: &mut toml::Table, protocol: Protocol) {
    let foreign = match protocol {
        Protocol::Realtime => LIVE_ONLY,
        Protocol::Live => REALTIME_ONLY,
    };
    for (path, _) in foreign {
        let mut parts: Vec<&str> = path.split('.').collect();
        let Some(last) = parts.pop() else { continue };
        let mut current = Some(&mut *table);
        for part in parts {
            current = match current.and_then(|t| t.get_mut(part)) {
                Some(toml::Value::Table(t)) => Some(t),
                _ => None,
            };
        }
        if let Some(t) = current {
            t.remove(last);
        }
    }
}

fn is_written(table: &toml::Table, path: &str) -> bool {
    let mut current = table;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        match current.get(part) {
            None => return false,
            Some(toml::Value::Table(t)) if parts.peek().is_some() => current = t,
            // A section header with every key commented out (as in the shipped file) sets
            // nothing.
            Some(toml::Value::Table(t)) => return !t.is_empty(),
            Some(_) => return parts.peek().is_none(),
        }
    }
    true
}

fn live_problems(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let live = &config.live;
    for key in live.responses.keys() {
        if !RESPONSES_FIELDS.contains(&key.as_str()) {
            out.push((
                format!("live.responses.{key}"),
                format!(
                    "unknown field `{key}` (GPT-Live rejects unknown session fields; known: {})",
                    RESPONSES_FIELDS.join(", ")
                ),
            ));
        }
    }
    if live.delegation == Delegation::Client && !live.responses.is_empty() {
        out.push((
            "live.responses".to_owned(),
            "is only used with live.delegation = \"responses\" (or \"auto\")".to_owned(),
        ));
    }
    if let Some(tools) = live.responses.get("tools") {
        match tools.as_array() {
            None => out.push((
                "live.responses.tools".to_owned(),
                "must be a list of tools, e.g. [{ type = \"web_search\" }]".to_owned(),
            )),
            Some(list) => {
                for (i, tool) in list.iter().enumerate() {
                    let kind = tool.get("type").and_then(|t| t.as_str());
                    if kind.is_none() {
                        out.push((
                            format!("live.responses.tools[{i}]"),
                            "needs a `type` (\"web_search\" or \"function\")".to_owned(),
                        ));
                    }
                    let name = tool.get("name").and_then(|n| n.as_str());
                    if let Some(name) = name {
                        if config.session.tools.iter().any(|t| t.name == name) {
                            out.push((
                                format!("live.responses.tools[{i}]"),
                                format!("`{name}` is also a tool in session.tools; names must be unique"),
                            ));
                        }
                    }
                }
            }
        }
    }
    if !config.session.has(super::Capability::Audio) {
        out.push((
            "session.capabilities".to_owned(),
            "GPT-Live always speaks: include \"audio\"".to_owned(),
        ));
    }
    out
}
