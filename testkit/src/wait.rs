//! Waiting for something that happens in another process or thread, bounded in time.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some` and returns that value; panics after
/// `limit`, naming `what` it waited for.
///
/// `what` is formatted only on a timeout, so it may carry something costly to read then, such
/// as a log file: pass [`lazy`]`(|| …)`.
pub fn wait_for<T>(limit: Duration, what: impl Display, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A description formatted when it is shown, for [`wait_for`]'s message.
pub fn lazy<F: Fn() -> String>(describe: F) -> Lazy<F> {
    Lazy(describe)
}

pub struct Lazy<F>(F);

impl<F: Fn() -> String> Display for Lazy<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}
