//! Tests that need a process of their own, inside one test binary where tests share a process:
//! those that set process-wide things (environment variables, the log subscriber) and those
//! that run a scenario in a child with its own environment (alsa-lib reads its configuration
//! once per process).
//!
//! The child is this same test binary, filtered to one test by its exact name.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in a child started here, to the name of the one test it runs.
const CHILD_TEST: &str = "RTV_CHILD_TEST";

/// A test's name as the test binary knows it, from its `module_path!()` and function name
/// (the crate's own name is not part of it).
pub fn test_name(module_path: &str, function: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{function}"),
        None => function.to_owned(),
    }
}

/// Whether this process is a child started for `test`.
pub fn is_child_for(test: &str) -> bool {
    std::env::var(CHILD_TEST).is_ok_and(|t| t == test)
}

/// Starts this test binary running only `test`, with `env` added, stdout and stderr piped.
pub fn spawn_test(test: &str, env: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_TEST, test)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start the test binary again")
}

/// Waits up to `limit` for a child from [`spawn_test`] and asserts that its one test passed;
/// returns its stdout and stderr. A child still running at the limit is killed.
pub fn finish_test(test: &str, mut child: Child, limit: Duration) -> String {
    let end = Instant::now() + limit;
    let success = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{test} in its own process timed out after {limit:?}");
            }
        }
    };
    let out = child.wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        success && stdout.contains("1 passed"),
        "{test} failed:\n{stdout}\n{stderr}"
    );
    format!("{stdout}{stderr}")
}

/// Runs the calling test in a process of its own: in the test binary's process this starts
/// the child, waits up to `limit` for it to pass, echoes its output and returns `true` (the
/// test returns at once); in the child it returns `false` (the test runs).
///
/// `rerun_alone!(test_function, limit)` names the calling test.
pub fn rerun_alone(test: &str, limit: Duration) -> bool {
    if is_child_for(test) {
        return false;
    }
    let child = spawn_test(test, &[]);
    let out = finish_test(test, child, limit);
    eprintln!("{out}");
    true
}

/// `if testkit::rerun_alone!(this_test, limit) { return; }` at the top of a test that sets
/// something process-wide.
#[macro_export]
macro_rules! rerun_alone {
    ($function:ident, $limit:expr) => {
        $crate::own_process::rerun_alone(
            &$crate::own_process::test_name(module_path!(), stringify!($function)),
            $limit,
        )
    };
}
