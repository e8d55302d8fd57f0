//! Where the API key comes from: a file named in the configuration, a systemd credential, or
//! the environment. The key is read into a [`Secret`] and never printed.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError, Secret, CREDENTIAL_NAME};

impl Config {
    /// Finds the API key: `api.api_key_file`, then `$CREDENTIALS_DIRECTORY/openai-api-key`
    /// (systemd `LoadCredential=`), then `$OPENAI_API_KEY`. `Ok(None)` when none is set anywhere.
    pub fn api_key(&self) -> Result<Option<(Secret, KeySource)>, ConfigError> {
        self.api_key_from(|name| std::env::var_os(name))
    }

    pub fn api_key_from(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Option<(Secret, KeySource)>, ConfigError> {
        if let Some(path) = &self.api.api_key_file {
            return read_key_file(path).map(|k| Some((k, KeySource::File(path.clone()))));
        }
        if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
            let path = PathBuf::from(dir).join(CREDENTIAL_NAME);
            if path.exists() {
                return read_key_file(&path).map(|k| Some((k, KeySource::Credential(path))));
            }
        }
        if let Some(key) = env("OPENAI_API_KEY") {
            let key = key.to_string_lossy().trim().to_owned();
            if !key.is_empty() {
                return Ok(Some((Secret::new(key), KeySource::Environment)));
            }
        }
        Ok(None)
    }
}

/// Where the API key was found (for messages; never the key itself).
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    File(PathBuf),
    Credential(PathBuf),
    Environment,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "api.api_key_file ({})", p.display()),
            KeySource::Credential(p) => write!(f, "systemd credential ({})", p.display()),
            KeySource::Environment => f.write_str("$OPENAI_API_KEY"),
        }
    }
}

fn read_key_file(path: &Path) -> Result<Secret, ConfigError> {
    let bytes = super::file::read_bounded(path, super::file::KEY_LIMIT).map_err(|e| {
        ConfigError::Credentials(format!("cannot read API key file {}: {e}", path.display()))
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        ConfigError::Credentials(format!("API key file {} is not text", path.display()))
    })?;
    let key = text.trim();
    if key.is_empty() {
        return Err(ConfigError::Credentials(format!(
            "API key file {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(key.to_owned()))
}
