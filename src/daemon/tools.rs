//! Function tools the model may call: the built-in `echo`, and configured programs.
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

use crate::config::Tool;

/// Runs a tool call and returns the text to give back to the model. Never fails: errors become
/// text for the model, so a broken tool cannot end a session.
pub trait ToolRunner: Send + Sync {
    fn run(
        &self,
        name: String,
        arguments: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send + '_>>;

    /// The runner for a new list of tools (a reload); `None` keeps this one.
    fn reconfigured(&self, _tools: &[crate::config::Tool]) -> Option<Arc<dyn ToolRunner>> {
        None
    }
}

/// Output beyond this is cut: the model's context is small and a runaway tool must not fill it.
const MAX_OUTPUT: usize = 16 * 1024;

pub struct Tools {
    tools: HashMap<String, Tool>,
}

impl Tools {
    pub fn new(tools: &[Tool]) -> Self {
        Tools {
            tools: tools.iter().map(|t| (t.name.clone(), t.clone())).collect(),
        }
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
                return format!("error: no tool named `{name}` on this device");
            };
            match &tool.command {
                None => builtin(&name, &arguments),
                Some(argv) => {
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

    fn reconfigured(&self, tools: &[Tool]) -> Option<Arc<dyn ToolRunner>> {
        Some(Arc::new(Tools::new(tools)))
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
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return format!("error: tool `{name}` could not start {program}: {e}"),
    };
    let work = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A tool that does not read its input is fine; ignore a broken pipe.
            let _ = stdin.write_all(arguments.as_bytes()).await;
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(out) = child.stdout.take() {
            let _ = out
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut stdout)
                .await;
        }
        if let Some(err) = child.stderr.take() {
            let _ = err.take(4096).read_to_end(&mut stderr).await;
        }
        let status = child.wait().await;
        (status, stdout, stderr)
    };
    match tokio::time::timeout(timeout, work).await {
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
        Tools::new(&[t]).run(name, args.into()).await
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
        let out = Tools::new(&[]).run("nope".into(), "{}".into()).await;
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
}
