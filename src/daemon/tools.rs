//! Function tools the model may call: the built-in `echo`, configured programs, and tools other
//! programs offer over D-Bus (`crate::provided`), called back on the bus.
//!
//! A program tool runs without a shell, gets the call's arguments as JSON on standard input and
//! answers with what it prints. Whatever goes wrong (missing program, non-zero exit, timeout,
//! a flood of output) becomes a short error text for the model: a tool never ends a session.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Session, Tool};
use crate::provided::ProvidedTools;

/// Runs a tool call and returns the text to give back to the model. Never fails: errors become
/// text for the model, so a broken tool cannot end a session.
pub trait ToolRunner: Send + Sync {
    fn run(
        &self,
        name: String,
        arguments: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send + '_>>;

    /// The runner for a reloaded session's tools; `None` keeps this one.
    fn reconfigured(&self, _session: &crate::config::Session) -> Option<Arc<dyn ToolRunner>> {
        None
    }
}

/// Output beyond this is cut: the model's context is small and a runaway tool must not fill it.
const MAX_OUTPUT: usize = 16 * 1024;
/// Of stderr, only this much is kept (the first line becomes the error text).
const MAX_ERROR: usize = 4096;

/// Calls that may wait for a free run before new ones are refused: a model that calls the
/// same tool a thousand times at once gets answers, not a thousand processes.
const MAX_WAITING: usize = 32;

pub struct Tools {
    tools: HashMap<String, Tool>,
    /// Programs running at once (`session.max_tool_runs`).
    runs: Arc<tokio::sync::Semaphore>,
    limit: u32,
    waiting: std::sync::atomic::AtomicUsize,
    /// Tools programs offer on the bus; a configured tool of the same name wins.
    provided: Arc<ProvidedTools>,
}

impl Tools {
    pub fn new(session: &Session) -> Self {
        Tools::with(&session.tools, session.max_tool_runs)
    }

    pub fn with(tools: &[Tool], max_runs: u32) -> Self {
        let limit = max_runs.max(1);
        Tools {
            tools: tools.iter().map(|t| (t.name.clone(), t.clone())).collect(),
            runs: Arc::new(tokio::sync::Semaphore::new(limit as usize)),
            limit,
            waiting: std::sync::atomic::AtomicUsize::new(0),
            provided: Arc::default(),
        }
    }

    /// These tools, and the ones programs offer in `provided`.
    pub fn with_provided(mut self, provided: Arc<ProvidedTools>) -> Self {
        self.provided = provided;
        self
    }

    /// A run of a program tool, once one is free; the refusal text when too many wait.
    async fn run_slot(&self, name: &str) -> Result<tokio::sync::OwnedSemaphorePermit, String> {
        use std::sync::atomic::Ordering::Relaxed;
        if let Ok(permit) = Arc::clone(&self.runs).try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Relaxed) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Relaxed);
            return Err(format!(
                "error: tool `{name}` was not run: {} tools are running and {MAX_WAITING} calls \
                 are waiting; call it again later",
                self.limit
            ));
        }
        let permit = Arc::clone(&self.runs).acquire_owned().await;
        self.waiting.fetch_sub(1, Relaxed);
        permit.map_err(|_| format!("error: tool `{name}` was not run: the device is stopping"))
    }
}

impl ToolRunner for Tools {
    fn run(
        &self,
        name: String,
        arguments: String,
    ) -> Pin<Box<dyn Future<Output = String> + Send + '_>> {
        Box::pin(async move {
            let Some(tool) = self.tools.get(&name) else {
                if !self.provided.has(&name) {
                    return format!("error: no tool named `{name}` on this device");
                }
                // A call on the bus counts as a run: `session.max_tool_runs` holds for these too.
                let _slot = match self.run_slot(&name).await {
                    Ok(slot) => slot,
                    Err(refusal) => return refusal,
                };
                return self.provided.call(&name, arguments).await;
            };
            match &tool.command {
                None => builtin(&name, &arguments),
                Some(argv) => {
                    let _slot = match self.run_slot(&name).await {
                        Ok(slot) => slot,
                        Err(refusal) => return refusal,
                    };
                    run_program(
                        &name,
                        argv,
                        &arguments,
                        Duration::from_millis(tool.timeout_ms),
                    )
                    .await
                }
            }
        })
    }

    fn reconfigured(&self, session: &Session) -> Option<Arc<dyn ToolRunner>> {
        Some(Arc::new(
            Tools::new(session).with_provided(Arc::clone(&self.provided)),
        ))
    }
}

fn builtin(name: &str, arguments: &str) -> String {
    match name {
        // Gives back the `text` argument, or the raw arguments when there is none.
        "echo" => serde_json::from_str::<serde_json::Value>(arguments)
            .ok()
            .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_else(|| arguments.to_owned()),
        other => format!("error: `{other}` is not a built-in tool"),
    }
}

async fn run_program(name: &str, argv: &[String], arguments: &str, timeout: Duration) -> String {
    let Some((program, args)) = argv.split_first() else {
        return format!("error: tool `{name}` has no command");
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        // A small, predictable environment: the daemon's own (with its credentials directory)
        // is none of the tool's business.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that whatever it starts ends with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return format!("error: tool `{name}` could not start {program}: {e}"),
    };
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let work = async {
        // All three pipes at once: a tool that writes much to stderr, or never reads its
        // input, must not stall on a pipe we are not reading yet.
        let write = async {
            if let Some(mut stdin) = stdin {
                // A tool that does not read its input is fine; ignore a broken pipe.
                let _ = stdin.write_all(arguments.as_bytes()).await;
            }
        };
        let read_out = async {
            let mut out = Vec::new();
            if let Some(pipe) = stdout {
                // Past the limit the pipe is closed: the tool dies of SIGPIPE if it goes on.
                let _ = pipe.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut out).await;
            }
            out
        };
        let read_err = async {
            let mut kept = Vec::new();
            if let Some(mut pipe) = stderr {
                // The first line is the reason shown; the rest is read and dropped.
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let room = MAX_ERROR.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            kept
        };
        let ((), stdout, stderr) = tokio::join!(write, read_out, read_err);
        let status = child.wait().await;
        (status, stdout, stderr)
    };
    let result = tokio::time::timeout(timeout, work).await;
    if let Some(group) = group {
        // The whole group, whatever the tool left behind (or is still doing, on a timeout).
        // SAFETY: kill has no memory preconditions; a negative pid names the group.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
    match result {
        Err(_) => format!(
            "error: tool `{name}` timed out after {} ms",
            timeout.as_millis()
        ),
        Ok((Err(e), _, _)) => format!("error: tool `{name}` failed: {e}"),
        Ok((Ok(status), mut stdout, stderr)) => {
            let truncated = stdout.len() > MAX_OUTPUT;
            // A tool cut off by us dies of SIGPIPE: its output so far is still the answer.
            if !status.success() && !truncated {
                let why = String::from_utf8_lossy(&stderr);
                let why = why.lines().next().unwrap_or("").trim();
                let code = status
                    .code()
                    .map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
                return if why.is_empty() {
                    format!("error: tool `{name}` exited with {code}")
                } else {
                    format!("error: tool `{name}` exited with {code}: {why}")
                };
            }
            stdout.truncate(MAX_OUTPUT);
            let mut text = String::from_utf8_lossy(&stdout).trim().to_owned();
            if truncated {
                text.push_str(" [output truncated]");
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, command: Option<&[&str]>, timeout_ms: u64) -> Tool {
        Tool {
            name: name.into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object"}),
            command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
            timeout_ms,
        }
    }

    async fn call(t: Tool, args: &str) -> String {
        let name = t.name.clone();
        Tools::with(&[t], 4).run(name, args.into()).await
    }

    #[tokio::test]
    async fn echo_is_built_in() {
        assert_eq!(
            call(tool("echo", None, 1000), r#"{"text":"hello"}"#).await,
            "hello"
        );
        assert_eq!(
            call(tool("echo", None, 1000), r#"{"other":1}"#).await,
            r#"{"other":1}"#
        );
    }

    #[tokio::test]
    async fn program_gets_arguments_on_stdin_and_answers_on_stdout() {
        let out = call(tool("cat", Some(&["/bin/cat"]), 5000), r#"{"city":"Oslo"}"#).await;
        assert_eq!(out, r#"{"city":"Oslo"}"#);
        let out = call(tool("args", Some(&["/bin/echo", "a b", "c"]), 5000), "{}").await;
        assert_eq!(out, "a b c", "arguments are passed without a shell");
    }

    #[tokio::test]
    async fn failures_become_text_for_the_model() {
        let out = call(tool("missing", Some(&["/nonexistent/tool"]), 1000), "{}").await;
        assert!(
            out.starts_with("error: tool `missing` could not start /nonexistent/tool"),
            "{out}"
        );
        let out = call(
            tool(
                "fails",
                Some(&["/bin/sh", "-c", "echo broken >&2; exit 3"]),
                5000,
            ),
            "{}",
        )
        .await;
        assert_eq!(out, "error: tool `fails` exited with status 3: broken");
        let started = std::time::Instant::now();
        let out = call(tool("slow", Some(&["/bin/sleep", "10"]), 200), "{}").await;
        assert_eq!(out, "error: tool `slow` timed out after 200 ms");
        assert!(started.elapsed() < Duration::from_secs(5));
        let out = Tools::with(&[], 4).run("nope".into(), "{}".into()).await;
        assert_eq!(out, "error: no tool named `nope` on this device");
    }

    #[tokio::test]
    async fn a_flood_of_output_is_cut() {
        let out = call(
            tool(
                "yes",
                Some(&["/usr/bin/head", "-c", "100000", "/dev/zero"]),
                5000,
            ),
            "{}",
        )
        .await;
        assert!(out.ends_with("[output truncated]"), "{} bytes", out.len());
        assert!(out.len() < MAX_OUTPUT + 64);
    }

    #[tokio::test]
    async fn the_daemon_environment_is_not_passed_on() {
        std::env::set_var("RTV_TOOL_TEST_SECRET", "sk-should-not-leak");
        let out = call(tool("env", Some(&["/usr/bin/env"]), 5000), "{}").await;
        assert!(!out.contains("sk-should-not-leak"), "{out}");
    }

    #[tokio::test]
    async fn the_timeout_ends_the_tools_children_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("grandchild-alive");
        // The tool starts a child that would outlive it, then hangs.
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let out = call(tool("hangs", Some(&["/bin/sh", "-c", &script]), 200), "{}").await;
        assert_eq!(out, "error: tool `hangs` timed out after 200 ms");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the tool's child outlived the timeout");
    }

    #[tokio::test]
    async fn a_chatty_stderr_or_an_unread_stdin_does_not_stall_a_tool() {
        // 1 MiB on stderr, then an answer.
        let out = call(
            tool(
                "chatty",
                Some(&["/bin/sh", "-c", "head -c 1048576 /dev/zero >&2; echo done"]),
                3000,
            ),
            "{}",
        )
        .await;
        assert_eq!(out, "done");
        // 1 MiB of arguments to a tool that never reads them.
        let big = format!("{{\"text\":\"{}\"}}", "x".repeat(1 << 20));
        let out = call(tool("deaf", Some(&["/bin/echo", "ok"]), 3000), &big).await;
        assert_eq!(out, "ok");
    }

    #[tokio::test]
    async fn calls_beyond_the_runs_wait_and_beyond_the_queue_are_refused() {
        let tools = Arc::new(Tools::with(
            &[tool("nap", Some(&["/bin/sleep", "0.3"]), 5000)],
            2,
        ));
        let started = std::time::Instant::now();
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let tools = Arc::clone(&tools);
                tokio::spawn(async move { tools.run("nap".into(), "{}".into()).await })
            })
            .collect();
        let mut answered = 0;
        let mut refused = 0;
        for call in calls {
            let out = call.await.expect("call");
            if out.is_empty() {
                answered += 1;
            } else {
                assert!(
                    out.contains("were not run") || out.contains("was not run"),
                    "{out}"
                );
                refused += 1;
            }
        }
        // Two at a time, thirty-two waiting: 34 run, 6 are told to call again.
        assert_eq!((answered, refused), (34, 6));
        assert!(started.elapsed() >= Duration::from_millis(300 * 17));
    }
}
