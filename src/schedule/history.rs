//! What became of each backup this unit took (by hand or on schedule), kept in the unit's state
//! directory, and the health an operator reads from it: the last success and its age, the next
//! scheduled run, a failing schedule, a backup too old.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::schedule::calendar::human_duration;

/// Outcomes kept (the newest); counters cover all of them.
const KEEP: usize = 100;

/// Longest error kept in the status line.
const STATUS_ERROR_CHARS: usize = 160;

/// Who asked for a backup.
pub const ORIGIN_SCHEDULED: &str = "scheduled";
/// A backup run by an action.
pub const ORIGIN_ACTION: &str = "action";

/// One backup attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Outcome {
    /// `scheduled` or `action`.
    pub origin: String,
    /// `success`, `failure`, or `skipped` (another operation held the unit).
    pub result: String,
    /// The backup's id (empty when none was started).
    #[serde(default)]
    pub id: String,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// When it ended (RFC 3339, UTC).
    pub finished: String,
    /// Stored size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl Outcome {
    /// Whether the backup finished.
    pub fn succeeded(&self) -> bool {
        self.result == "success"
    }

    /// Its end time.
    pub fn finished_at(&self) -> Option<Timestamp> {
        self.finished.parse().ok()
    }

    /// Its start time.
    pub fn started_at(&self) -> Option<Timestamp> {
        self.started.parse().ok()
    }

    /// How long it ran.
    pub fn duration(&self) -> SignedDuration {
        match (self.started_at(), self.finished_at()) {
            (Some(s), Some(f)) => f.duration_since(s),
            _ => SignedDuration::ZERO,
        }
    }
}

/// The unit's record of backup outcomes, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupHistory {
    /// The newest outcomes, oldest first.
    pub outcomes: Vec<Outcome>,
    /// Failed attempts ever recorded.
    pub failures_total: u64,
    /// Attempts ever recorded, skipped ones included.
    pub attempts_total: u64,
}

/// What the health check needs besides the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthOptions {
    /// The newest backup may be at most this old (`None`: no limit).
    pub max_age: Option<SignedDuration>,
    /// The next scheduled run, when there is a schedule.
    pub next: Option<Timestamp>,
}

/// The backup health of a unit, for its status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// `last backup 2026-12-05 02:30 UTC (3h 5m ago), next 2026-12-06 02:30 UTC`.
    pub summary: String,
    /// Why the unit needs the operator: the last scheduled run failed, or the newest backup is
    /// too old.
    pub problem: Option<String>,
}

/// `2026-12-05 02:30 UTC`.
pub fn short_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

impl BackupHistory {
    /// The file in the state directory.
    pub const FILE: &'static str = "backup-history.json";

    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(Self::FILE)
    }

    /// Reads the record in `state_dir` (empty when there is none yet).
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn load(state_dir: &Path) -> Result<Self> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::new(ErrorKind::Integrity, "the backup history is not valid JSON")
                    .with_path(&path)
                    .with_source(e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io("cannot read", &path, e)),
        }
    }

    /// Adds `outcome` to the record in `state_dir` (one writer at a time) and returns the new
    /// record.
    ///
    /// # Errors
    /// When the record cannot be written.
    pub fn record(state_dir: &Path, outcome: Outcome) -> Result<Self> {
        crate::archive::create_private_dir(state_dir)?;
        let lock_path = state_dir.join("backup-history.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at("cannot open", &lock_path)?;
        lock.lock().at("cannot lock", &lock_path)?;
        // A damaged record is started afresh rather than blocking every backup.
        let mut h = Self::load(state_dir).unwrap_or_default();
        h.attempts_total += 1;
        if outcome.result == "failure" {
            h.failures_total += 1;
        }
        h.outcomes.push(outcome);
        if h.outcomes.len() > KEEP {
            h.outcomes.drain(..h.outcomes.len() - KEEP);
        }
        let bytes = serde_json::to_vec_pretty(&h)
            .map_err(|e| Error::new(ErrorKind::Other, "cannot encode").with_source(e))?;
        let written = crate::schedule::write_atomic(&Self::path(state_dir), &bytes, 0o600);
        let _ = lock.unlock();
        written.map(|()| h)
    }

    /// The newest backup that finished.
    pub fn last_success(&self) -> Option<&Outcome> {
        self.outcomes.iter().rev().find(|o| o.succeeded())
    }

    /// The newest attempt that ran (not skipped).
    pub fn last_attempt(&self) -> Option<&Outcome> {
        self.outcomes.iter().rev().find(|o| o.result != "skipped")
    }

    /// The newest scheduled run that failed with no success after it.
    pub fn failing_schedule(&self) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .rev()
            .take_while(|o| !o.succeeded())
            .find(|o| o.origin == ORIGIN_SCHEDULED && o.result == "failure")
    }

    /// The health at `now`.
    pub fn health(&self, options: &HealthOptions, now: Timestamp) -> Health {
        let mut parts = Vec::new();
        let last = self.last_success();
        match last.and_then(|o| o.finished_at().map(|t| (o, t))) {
            Some((_, t)) => parts.push(format!(
                "last backup {} ({} ago)",
                short_time(t),
                human_duration(now.duration_since(t))
            )),
            None => parts.push("no backup yet".to_string()),
        }
        if let Some(n) = options.next {
            parts.push(format!("next {}", short_time(n)));
        }
        let mut h = Health {
            summary: parts.join(", "),
            problem: None,
        };
        if let Some(f) = self.failing_schedule() {
            let mut why: String = f.error.chars().take(STATUS_ERROR_CHARS).collect();
            if f.error.chars().count() > STATUS_ERROR_CHARS {
                why.push('…');
            }
            let at = f.started_at().map(short_time).unwrap_or_default();
            h.problem = Some(format!(
                "the scheduled backup at {at} failed: {why}; fix it, then run create-backup"
            ));
        } else if let (Some(max), Some((o, t))) = (
            options.max_age,
            last.and_then(|o| o.finished_at().map(|t| (o, t))),
        ) {
            let age = now.duration_since(t);
            if age > max {
                h.problem = Some(format!(
                    "the newest backup ({}) is {} old, over backup-max-age ({}): check the \
                     schedule and the store, then run create-backup",
                    o.id,
                    human_duration(age),
                    human_duration(max)
                ));
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn outcome(origin: &str, result: &str, finished: &str) -> Outcome {
        Outcome {
            origin: origin.into(),
            result: result.into(),
            id: format!("{finished}-0"),
            started: finished.into(),
            finished: finished.into(),
            error: if result == "failure" {
                "disk full".into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_failed_schedule_blocks_until_a_later_success() {
        let now: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let mut h = BackupHistory::default();
        h.outcomes
            .push(outcome(ORIGIN_SCHEDULED, "success", "2026-12-04T02:30:00Z"));
        h.outcomes
            .push(outcome(ORIGIN_SCHEDULED, "failure", "2026-12-05T02:30:00Z"));
        let got = h.health(&HealthOptions::default(), now);
        assert!(got.problem.unwrap().contains("failed: disk full"));
        assert!(
            got.summary
                .starts_with("last backup 2026-12-04 02:30 UTC (1d 9h ago)")
        );
        h.outcomes
            .push(outcome(ORIGIN_ACTION, "success", "2026-12-05T11:00:00Z"));
        assert_eq!(h.health(&HealthOptions::default(), now).problem, None);
    }

    #[test]
    fn max_age_is_read_from_the_newest_success() {
        let mut h = BackupHistory::default();
        h.outcomes
            .push(outcome(ORIGIN_SCHEDULED, "success", "2026-12-01T02:30:00Z"));
        let o = HealthOptions {
            max_age: Some(SignedDuration::from_hours(48)),
            next: None,
        };
        let fresh = h.health(&o, "2026-12-03T02:00:00Z".parse().unwrap());
        assert_eq!(fresh.problem, None);
        let stale = h.health(&o, "2026-12-03T03:00:00Z".parse().unwrap());
        assert!(
            stale
                .problem
                .unwrap()
                .contains("is 2d old, over backup-max-age (2d)")
        );
    }
}
