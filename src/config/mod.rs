//! The daemon's configuration: the TOML schema with its defaults, loading with errors that point at
//! file, line, column and key, validation of ranges, and where the API key comes from.
//!
//! Every field has a default that works, so an empty file (or none at all) is a valid configuration.
//! Secrets are held in [`Secret`], which never prints its contents.

mod file;
mod key;
mod locate;
mod protocol_options;
mod schema;
mod secret;
mod validate;

use std::path::{Path, PathBuf};

pub use key::{take_key_from_environment, KeySource};
pub use schema::*;
pub use secret::{redact_url, Secret};

/// Where the packaged daemon looks for its configuration.
pub const DEFAULT_PATH: &str = "/etc/realtime-voiced/config.toml";

/// The name of the API key file systemd hands over with `LoadCredential=`.
pub const CREDENTIAL_NAME: &str = "openai-api-key";

/// One thing wrong with a configuration file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted key path, e.g. `audio.volume`; empty when the problem is not about one key.
    pub key: String,
    /// 1-based line and column, when the key is in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", format_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("{0}")]
    Credentials(String),
}

impl ConfigError {
    /// Each problem on a line of its own, for `check-config`.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { path, problems } => {
                problems.iter().map(|p| format_problem(path, p)).collect()
            }
            other => vec![other.to_string()],
        }
    }
}

fn format_problem(path: &Path, p: &Problem) -> String {
    let mut out = path.display().to_string();
    if let Some((line, col)) = p.position {
        out.push_str(&format!(":{line}:{col}"));
    }
    out.push_str(": ");
    if !p.key.is_empty() {
        out.push_str(&format!("`{}`: ", p.key));
    }
    out.push_str(&p.message);
    out
}

fn format_problems(path: &Path, problems: &[Problem]) -> String {
    let mut lines = problems.iter().map(|p| format_problem(path, p));
    let first = lines.next().unwrap_or_else(|| path.display().to_string());
    match problems.len() {
        0 | 1 => first,
        n => format!(
            "{first} (and {} more problem{})",
            n - 1,
            if n > 2 { "s" } else { "" }
        ),
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes =
            file::read_bounded(path, file::CONFIG_LIMIT).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            ConfigError::Invalid {
                path: path.to_owned(),
                problems: vec![Problem {
                    key: String::new(),
                    position: Some(file::position_of_byte(e.as_bytes(), offset)),
                    message: format!("not UTF-8 text (the byte at offset {offset})"),
                }],
            }
        })?;
        Config::parse(&text, path)
    }

    /// Like [`Config::load`], but a missing file at the default path means "all defaults".
    pub fn load_or_default(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::metadata(path) {
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            _ => Config::load(path),
        }
    }

    /// Parses and validates TOML text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        };
        let config: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => return Err(invalid(vec![locate::problem_from_toml_error(text, &e)])),
        };
        let mut found = config.validate();
        found.extend(protocol_options::problems(text, &config));
        let problems: Vec<Problem> = found
            .into_iter()
            .map(|(key, message)| Problem {
                position: locate::position_of_key(text, &key),
                key,
                message,
            })
            .collect();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }

    /// The effective configuration as TOML, with every secret replaced by a placeholder.
    pub fn to_redacted_toml(&self) -> String {
        // The model in effect, not the empty "protocol's default".
        let mut effective = self.clone();
        effective.api.model = self.api.model().to_owned();
        let rendered = toml::Table::try_from(&effective).map(|mut table| {
            protocol_options::drop_foreign(&mut table, self.api.protocol);
            table
        });
        rendered
            .and_then(|table| toml::to_string_pretty(&table))
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
