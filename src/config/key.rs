//! Where the API key comes from: a file named in the configuration, a systemd credential, or
//! the environment. The key is read into a [`Secret`] and never printed.

use std::ffi::{CStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Config, ConfigError, Secret, CREDENTIAL_NAME};

const KEY_VARIABLE: &str = "OPENAI_API_KEY";

/// `$OPENAI_API_KEY` as the process found it, once [`take_key_from_environment`] has run.
static ENVIRONMENT_KEY: OnceLock<Option<OsString>> = OnceLock::new();

/// Keeps `$OPENAI_API_KEY` in the process and takes it out of the environment, where it would
/// stay readable in `/proc/PID/environ` (and pass to every program a tool runs) for the
/// process's life. The bytes in the environment block the kernel shows are overwritten too:
/// removing the variable alone leaves them there. Call first thing in `main`, before any
/// thread exists.
pub fn take_key_from_environment() {
    let name = c"OPENAI_API_KEY";
    // SAFETY: no other thread runs yet (the caller's contract), so nothing reads or writes
    // the environment meanwhile. getenv returns a pointer to the value's NUL-terminated bytes
    // inside the environment block, which is writable memory of this process; the length
    // comes from that NUL, so the write stays within the value.
    let key = unsafe {
        let value = libc::getenv(name.as_ptr());
        if value.is_null() {
            None
        } else {
            let key = OsString::from(
                std::str::from_utf8(CStr::from_ptr(value).to_bytes())
                    .unwrap_or_default()
                    .to_owned(),
            );
            let len = libc::strlen(value);
            std::ptr::write_bytes(value, b'x', len);
            libc::unsetenv(name.as_ptr());
            Some(key)
        }
    };
    let _ = ENVIRONMENT_KEY.set(key);
}

impl Config {
    /// Finds the API key: `api.api_key_file`, then `$CREDENTIALS_DIRECTORY/openai-api-key`
    /// (systemd `LoadCredential=`), then `$OPENAI_API_KEY`. `Ok(None)` when none is set anywhere.
    pub fn api_key(&self) -> Result<Option<(Secret, KeySource)>, ConfigError> {
        self.api_key_from(|name| match (name, ENVIRONMENT_KEY.get()) {
            (KEY_VARIABLE, Some(taken)) => taken.clone(),
            _ => std::env::var_os(name),
        })
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
        if let Some(key) = env(KEY_VARIABLE) {
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
