//! The daily conversation budget (`session.daily_limit_s`): seconds spent in live sessions per
//! local calendar day, kept under the state directory so a restart does not reset it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    day: i64,
    used_s: f64,
}

pub struct DailyBudget {
    limit: Option<Duration>,
    path: PathBuf,
    stored: Stored,
}

/// The local calendar day of `t` as year·1000 + day of year (a key, not a count).
pub fn local_day(t: SystemTime) -> i64 {
    let unix = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // time_t is 32 bits on armhf: the fallback below works from the 64-bit count instead.
    let secs = unix as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` we hand it; a zeroed tm is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if ok {
        i64::from(tm.tm_year + 1900) * 1000 + i64::from(tm.tm_yday)
    } else {
        (unix / 86_400) as i64
    }
}

impl DailyBudget {
    /// `limit_s = 0` means unlimited. An unreadable file counts as nothing spent today.
    pub fn load(dir: &Path, limit_s: u64) -> Self {
        let path = dir.join("daily-usage.json");
        let stored = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        DailyBudget {
            limit: (limit_s > 0).then(|| Duration::from_secs(limit_s)),
            path,
            stored,
        }
    }

    pub fn set_limit(&mut self, limit_s: u64) {
        self.limit = (limit_s > 0).then(|| Duration::from_secs(limit_s));
    }

    fn roll(&mut self, today: i64) {
        if self.stored.day != today {
            self.stored = Stored {
                day: today,
                used_s: 0.0,
            };
        }
    }

    /// Time left today; `None` when unlimited.
    pub fn remaining(&mut self, today: i64) -> Option<Duration> {
        self.roll(today);
        let used = Duration::from_secs_f64(self.stored.used_s.max(0.0));
        self.limit.map(|l| l.saturating_sub(used))
    }

    pub fn exhausted(&mut self, today: i64) -> bool {
        self.remaining(today).is_some_and(|r| r.is_zero())
    }

    pub fn used(&mut self, today: i64) -> Duration {
        self.roll(today);
        Duration::from_secs_f64(self.stored.used_s.max(0.0))
    }

    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }

    /// Adds live time and saves.
    pub fn spend(&mut self, today: i64, spent: Duration) -> std::io::Result<()> {
        self.roll(today);
        self.stored.used_s += spent.as_secs_f64();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&self.stored).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_persists_and_resets_on_a_new_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = DailyBudget::load(dir.path(), 60);
        assert_eq!(b.remaining(2_026_326), Some(Duration::from_secs(60)));
        b.spend(2_026_326, Duration::from_secs(45)).expect("save");
        let mut b = DailyBudget::load(dir.path(), 60);
        assert_eq!(b.remaining(2_026_326), Some(Duration::from_secs(15)));
        assert!(!b.exhausted(2_026_326));
        b.spend(2_026_326, Duration::from_secs(20)).expect("save");
        assert!(b.exhausted(2_026_326));
        assert_eq!(
            b.remaining(2_026_327),
            Some(Duration::from_secs(60)),
            "a new day"
        );
    }

    #[test]
    fn zero_is_unlimited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = DailyBudget::load(dir.path(), 0);
        b.spend(1, Duration::from_secs(100_000)).expect("save");
        assert_eq!(b.remaining(1), None);
        assert!(!b.exhausted(1));
    }

    #[test]
    fn local_day_is_stable_within_a_day() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(local_day(t), local_day(t + Duration::from_secs(1)));
        assert_ne!(local_day(t), local_day(t + Duration::from_secs(2 * 86_400)));
    }
}
