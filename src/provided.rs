//! Tools other programs offer over D-Bus (`RegisterTool`): the shared list, its rules, and the
//! call to the program that offers one.
//!
//! One list per daemon, shared: the bus side fills and empties it (`control/dbus`), the dialects
//! read it each time they build the session's tools, and the tool runner calls through it. The
//! bus itself is behind [`Caller`], so this module knows nothing of D-Bus.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::config::Tool;

/// Tools all programs together may offer.
pub const MAX_TOOLS: usize = 32;
/// Tools one program (one bus connection) may offer.
pub const MAX_PER_PROVIDER: usize = 8;
/// Longest description, in bytes: it goes to the model with every session.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest parameter schema, in bytes of JSON.
pub const MAX_PARAMETERS: usize = 16 * 1024;
/// How long a program has to answer a call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A longer answer is cut, like a program tool's output: the model's context is small.
pub const MAX_RESULT: usize = 16 * 1024;

/// A tool offered by a program on the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvidedTool {
    pub name: String,
    pub description: String,
    /// A JSON object (`"type": "object"`), checked at registration.
    pub parameters: Value,
    /// The offering connection's unique bus name (`:1.42`): it is called back there.
    pub owner: String,
}

/// Why a call to a program failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The program is no longer on the bus; its tools go.
    Gone(String),
    /// It answered with an error, or not at all: one line.
    Failed(String),
}

pub type CallFuture = Pin<Box<dyn Future<Output = Result<String, CallError>> + Send>>;

/// Calls `name` with `arguments` (JSON) on the program at bus name `owner`.
pub trait Caller: Send + Sync {
    fn call(&self, owner: String, name: String, arguments: String) -> CallFuture;
}

#[derive(Default)]
struct Inner {
    tools: Vec<ProvidedTool>,
    /// The configuration's tools (name, description): their names are taken.
    configured: Vec<(String, String)>,
    caller: Option<Arc<dyn Caller>>,
}

/// The tools programs offer, shared by the bus, the dialects and the tool runner.
pub struct ProvidedTools {
    inner: Mutex<Inner>,
    /// Bumped on every change of the offered tools: the event loop updates the session.
    changed: watch::Sender<u64>,
    /// [`CALL_TIMEOUT`]; shorter in tests.
    timeout: Duration,
}

impl Default for ProvidedTools {
    fn default() -> Self {
        ProvidedTools {
            inner: Mutex::default(),
            changed: watch::Sender::new(0),
            timeout: CALL_TIMEOUT,
        }
    }
}

impl ProvidedTools {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can be left half-done by a panic; a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Told of every change of the offered tools.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The configuration's tools, whose names programs may not take.
    pub fn set_configured(&self, tools: &[Tool]) {
        self.lock().configured = tools
            .iter()
            .map(|t| (t.name.clone(), t.description.clone()))
            .collect();
    }

    /// How calls reach the programs; `None` while the daemon is off the bus.
    pub fn set_caller(&self, caller: Option<Arc<dyn Caller>>) {
        self.lock().caller = caller;
    }

    /// Offers `name` on behalf of `owner`; the same owner registering a name again replaces
    /// it. Why not, in one line.
    pub fn register(
        &self,
        owner: &str,
        name: &str,
        description: &str,
        parameters_json: &str,
    ) -> Result<(), String> {
        let parameters = check(name, description, parameters_json)?;
        let tool = ProvidedTool {
            name: name.to_owned(),
            description: description.to_owned(),
            parameters,
            owner: owner.to_owned(),
        };
        {
            let mut inner = self.lock();
            if inner.configured.iter().any(|(n, _)| n == name) {
                return Err(format!("`{name}` is a tool of the configuration"));
            }
            match inner.tools.iter_mut().find(|t| t.name == name) {
                Some(old) if old.owner == owner => *old = tool,
                Some(old) => {
                    return Err(format!(
                        "`{name}` is already offered by another program ({})",
                        old.owner
                    ))
                }
                None => {
                    if inner.tools.len() >= MAX_TOOLS {
                        return Err(format!(
                            "{MAX_TOOLS} tools are offered already, the most the daemon takes"
                        ));
                    }
                    if inner.tools.iter().filter(|t| t.owner == owner).count() >= MAX_PER_PROVIDER {
                        return Err(format!(
                            "this connection offers {MAX_PER_PROVIDER} tools already, the most one program may"
                        ));
                    }
                    inner.tools.push(tool);
                }
            }
        }
        self.bump();
        Ok(())
    }

    /// Withdraws `owner`'s tool `name`.
    pub fn unregister(&self, owner: &str, name: &str) -> Result<(), String> {
        {
            let mut inner = self.lock();
            let Some(at) = inner.tools.iter().position(|t| t.name == name) else {
                return Err(format!("no tool `{name}` is registered"));
            };
            if inner.tools[at].owner != owner {
                return Err(format!("`{name}` was registered by another program"));
            }
            inner.tools.remove(at);
        }
        self.bump();
        Ok(())
    }

    /// Drops every tool of `owner` (its connection left the bus); the names dropped.
    pub fn drop_owner(&self, owner: &str) -> Vec<String> {
        let dropped: Vec<String> = {
            let mut inner = self.lock();
            let (gone, kept) = std::mem::take(&mut inner.tools)
                .into_iter()
                .partition(|t| t.owner == owner);
            inner.tools = kept;
            gone.into_iter().map(|t: ProvidedTool| t.name).collect()
        };
        if !dropped.is_empty() {
            self.bump();
        }
        dropped
    }

    /// Drops every tool (the bus went away, and every program's connection with it).
    pub fn clear(&self) {
        let had = !std::mem::take(&mut self.lock().tools).is_empty();
        if had {
            self.bump();
        }
    }

    /// The tools offered to the model, in the order they were registered. A name the
    /// configuration took since (a reload) is left out: the configuration wins.
    pub fn offered(&self) -> Vec<ProvidedTool> {
        let inner = self.lock();
        inner
            .tools
            .iter()
            .filter(|t| !inner.configured.iter().any(|(n, _)| *n == t.name))
            .cloned()
            .collect()
    }

    /// Every tool the model may call: (name, description, where from: `config` or the
    /// offering program's unique bus name).
    pub fn listing(&self) -> Vec<(String, String, String)> {
        let configured = self.lock().configured.clone();
        configured
            .into_iter()
            .map(|(n, d)| (n, d, "config".to_owned()))
            .chain(
                self.offered()
                    .into_iter()
                    .map(|t| (t.name, t.description, t.owner)),
            )
            .collect()
    }

    /// Whether `name` is a tool a program offers.
    pub fn has(&self, name: &str) -> bool {
        self.offered().iter().any(|t| t.name == name)
    }

    /// Calls the program that offers `name` and returns the text for the model; whatever goes
    /// wrong becomes that text too, and a warning in the log.
    pub async fn call(&self, name: &str, arguments: String) -> String {
        let (owner, caller) = {
            let inner = self.lock();
            let owner = inner
                .tools
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.owner.clone());
            (owner, inner.caller.clone())
        };
        let Some(owner) = owner else {
            return format!("error: no tool named `{name}` on this device");
        };
        let Some(caller) = caller else {
            return format!("error: tool `{name}` was not run: the device is off the bus");
        };
        let call = caller.call(owner.clone(), name.to_owned(), arguments);
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Failed(format!(
                "timed out after {} ms",
                self.timeout.as_millis()
            ))),
        };
        match result {
            Ok(text) => bounded(text),
            Err(CallError::Gone(why)) => {
                tracing::warn!(
                    tool = name,
                    owner,
                    "the program offering the tool is gone: {why}"
                );
                self.drop_owner(&owner);
                format!("error: tool `{name}` is gone: the program offering it left")
            }
            Err(CallError::Failed(why)) => {
                tracing::warn!(tool = name, owner, "tool call failed: {why}");
                format!("error: tool `{name}` failed: {why}")
            }
        }
    }
}

/// Checks a registration's arguments; the parsed schema.
fn check(name: &str, description: &str, parameters_json: &str) -> Result<Value, String> {
    if !Tool::valid_name(name) {
        return Err(format!(
            "the name `{}` is not 1 to 64 letters, digits, '_' or '-'",
            name.chars().take(80).collect::<String>()
        ));
    }
    if description.len() > MAX_DESCRIPTION {
        return Err(format!(
            "the description is {} bytes long; at most {MAX_DESCRIPTION} are allowed",
            description.len()
        ));
    }
    if parameters_json.len() > MAX_PARAMETERS {
        return Err(format!(
            "the parameters are {} bytes of JSON; at most {MAX_PARAMETERS} are allowed",
            parameters_json.len()
        ));
    }
    let parameters: Value = serde_json::from_str(parameters_json)
        .map_err(|e| format!("the parameters are not JSON: {e}"))?;
    if !parameters.is_object() {
        return Err("the parameters must be a JSON object (a JSON schema)".into());
    }
    if parameters.get("type") != Some(&Value::from("object")) {
        return Err("the parameters schema must have \"type\": \"object\"".into());
    }
    Ok(parameters)
}

/// The answer, cut at [`MAX_RESULT`] on a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() <= MAX_RESULT {
        return text;
    }
    let mut end = MAX_RESULT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(" [output truncated]");
    text
}

#[cfg(test)]
#[path = "provided_tests.rs"]
mod tests;
