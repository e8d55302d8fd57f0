//! What a running process costs, read from `/proc`: CPU time, context switches (wake-ups), peak
//! RSS, and the same per thread, by name. The benches compare the daemon with other programs
//! through these, so each figure is read the same way for every process.

/// One thread's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadStat {
    pub tid: u32,
    /// The thread's name (`comm`), e.g. `tokio-runtime-w`.
    pub name: String,
    /// User + system CPU seconds.
    pub cpu_s: f64,
    /// Voluntary + involuntary context switches.
    pub switches: u64,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds from a `stat` file's text (a process's or a thread's).
fn stat_cpu_seconds(stat: &str) -> f64 {
    // The name may hold spaces and parentheses: the fields start after the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / ticks_per_second()
}

fn status_switches(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// CPU seconds (user + system, all threads, ended ones included) of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// Peak resident set size (`VmHWM`) in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The process's live threads.
pub fn threads(pid: u32) -> Vec<ThreadStat> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<ThreadStat> = tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            Some(ThreadStat {
                tid,
                name: read("comm").trim().to_owned(),
                cpu_s: stat_cpu_seconds(&read("stat")),
                switches: status_switches(&read("status")),
            })
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// Voluntary and involuntary context switches of all of a process's live threads: each is a
/// wake-up, and the thread hops per frame are what a small CPU pays for.
pub fn context_switches(pid: u32) -> u64 {
    threads(pid).iter().map(|t| t.switches).sum()
}

/// Per thread name, what happened between two readings: (name, threads, CPU seconds,
/// switches), the busiest first. Threads that came or went count from zero or to their end.
pub fn by_name(before: &[ThreadStat], after: &[ThreadStat]) -> Vec<(String, usize, f64, u64)> {
    let mut rows: Vec<(String, usize, f64, u64)> = Vec::new();
    for t in after {
        let (cpu0, sw0) = before
            .iter()
            .find(|b| b.tid == t.tid)
            .map_or((0.0, 0), |b| (b.cpu_s, b.switches));
        let (cpu, sw) = ((t.cpu_s - cpu0).max(0.0), t.switches.saturating_sub(sw0));
        match rows.iter_mut().find(|r| r.0 == t.name) {
            Some(r) => {
                r.1 += 1;
                r.2 += cpu;
                r.3 += sw;
            }
            None => rows.push((t.name.clone(), 1, cpu, sw)),
        }
    }
    rows.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_read_after_a_name_with_parentheses() {
        let hz = ticks_per_second();
        let stat = format!(
            "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 {} {} 0 0",
            hz * 2.0,
            hz
        );
        assert!((stat_cpu_seconds(&stat) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn threads_are_grouped_by_name() {
        let t = |tid, name: &str, cpu_s, switches| ThreadStat {
            tid,
            name: name.into(),
            cpu_s,
            switches,
        };
        let before = [t(1, "main", 1.0, 10), t(2, "w", 1.0, 10)];
        let after = [t(1, "main", 1.5, 12), t(2, "w", 2.0, 30), t(3, "w", 0.5, 5)];
        let rows = by_name(&before, &after);
        assert_eq!(rows[0], ("w".into(), 2, 1.5, 25));
        assert_eq!(rows[1], ("main".into(), 1, 0.5, 2));
    }

    #[test]
    fn this_process_has_threads_and_cpu() {
        let pid = std::process::id();
        assert!(!threads(pid).is_empty());
        assert!(peak_rss_mib(pid) > 0.0);
        assert!(cpu_seconds(pid) >= 0.0);
    }
}
