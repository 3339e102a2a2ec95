//! Retention: which backups a policy removes, and removing them.
//!
//! Counted from the newest finished backup, as restic counts `--keep-within`, so a unit that
//! stopped backing up never loses its last backups to the passing of time. The newest finished
//! backup is never removed.

use crate::error::Result;
use crate::progress::Progress;
use crate::store::repo::{BackupRow, Repository, parse_time};

/// Retention settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionOptions {
    /// Keep the newest this many finished backups (0: no limit by count).
    pub count: u32,
    /// Remove finished backups started more than this many days before the newest finished
    /// one (0: no limit by age).
    pub days: u32,
    /// Only say what would go.
    pub dry_run: bool,
    /// The unit pruning (`app/N`): its own backups still marked in progress are not running
    /// (it holds the operation lock), so they go when older than the newest finished one.
    pub unit: String,
}

impl RetentionOptions {
    /// A policy keeping `count` backups and `days` days (0 for either: no limit).
    pub fn new(count: u32, days: u32) -> Self {
        RetentionOptions {
            count,
            days,
            ..Default::default()
        }
    }

    /// Whether the policy removes anything at all.
    pub fn is_active(&self) -> bool {
        self.count > 0 || self.days > 0
    }
}

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// The backups removed, with why, oldest first.
    pub removed: Vec<(String, String)>,
    /// How many finished backups remain.
    pub kept: usize,
    /// Objects deleted.
    pub objects: usize,
    /// Archived PostgreSQL WAL files removed (or, dry, that would be) with the backups that
    /// needed them.
    pub wal_files: usize,
}

/// Backups marked in progress by another unit are taken for abandoned only this long before
/// the newest finished backup started (one may still be running).
const ABANDONED_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The backups of `rows` (oldest first) that `options` removes, with why.
pub fn plan(rows: &[BackupRow], options: &RetentionOptions) -> Vec<(String, String)> {
    let started = |r: &BackupRow| parse_time(&r.started);
    let finished: Vec<&BackupRow> = rows.iter().filter(|r| r.is_finished()).collect();
    let Some(newest) = finished.last() else {
        return Vec::new();
    };
    let Some(newest_start) = started(newest) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let keep_from = finished.len().saturating_sub(options.count as usize);
    for (i, r) in finished.iter().enumerate() {
        if r.backup_id == newest.backup_id {
            continue;
        }
        if options.count > 0 && i < keep_from {
            out.push((
                r.backup_id.clone(),
                format!(
                    "beyond the newest {} finished backups (retention-count)",
                    options.count
                ),
            ));
            continue;
        }
        if options.days > 0
            && let Some(t) = started(r)
            && t < newest_start - jiff::SignedDuration::from_hours(24 * i64::from(options.days))
        {
            out.push((
                r.backup_id.clone(),
                format!(
                    "started more than {} days before the newest finished backup (retention-days)",
                    options.days
                ),
            ));
        }
    }
    if options.is_active() {
        for r in rows.iter().filter(|r| !r.is_finished()) {
            let Some(t) = started(r) else { continue };
            if t >= newest_start {
                continue;
            }
            let mine = r
                .metadata
                .as_ref()
                .is_some_and(|m| !options.unit.is_empty() && m.made_by == options.unit);
            if r.status == "in progress" && !mine && t >= newest_start - ABANDONED_AFTER {
                continue;
            }
            out.push((
                r.backup_id.clone(),
                format!("{} and older than the newest finished backup", r.status),
            ));
        }
    }
    out.sort();
    out
}

impl Repository<'_> {
    /// Applies `options`: removes (or, dry, lists) what the retention plan says, one backup at a time,
    /// each sidecar first so that an interrupted prune never leaves a backup listed as
    /// finished that is not whole.
    ///
    /// # Errors
    /// When the store cannot be listed or refuses a deletion (what went before stays gone).
    pub fn prune(&self, options: &RetentionOptions, progress: &dyn Progress) -> Result<PruneStats> {
        let listing = self.list()?;
        let removed = plan(&listing.backups, options);
        let finished = listing.backups.iter().filter(|r| r.is_finished()).count();
        let mut stats = PruneStats {
            kept: finished
                - removed
                    .iter()
                    .filter(|(id, _)| {
                        listing
                            .backups
                            .iter()
                            .any(|r| r.backup_id == *id && r.is_finished())
                    })
                    .count(),
            ..Default::default()
        };
        for (id, why) in &removed {
            if options.dry_run {
                progress.step(&format!("would remove backup {id}: {why}"));
            } else {
                progress.step(&format!("removing backup {id}: {why}"));
                stats.objects += self.remove(id, progress)?.len();
            }
            stats.removed.push((id.clone(), why.clone()));
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: &str) -> BackupRow {
        BackupRow {
            backup_id: id.into(),
            status: status.into(),
            started: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_finished_backup_is_never_removed() {
        let rows = [
            row("2026-01-01T00:00:00Z", "finished"),
            row("2026-01-02T00:00:00Z", "failed: x"),
            row("2026-01-03T00:00:00Z", "finished, 1 warning"),
            row("2026-01-09T00:00:00Z", "failed: y"),
        ];
        let ids = |v: Vec<(String, String)>| v.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(
            ids(plan(&rows, &RetentionOptions::new(1, 0))),
            ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
        );
        assert_eq!(
            ids(plan(&rows, &RetentionOptions::new(0, 1))),
            ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
        );
        assert_eq!(
            ids(plan(&rows, &RetentionOptions::new(0, 2))),
            ["2026-01-02T00:00:00Z"]
        );
        assert!(plan(&rows, &RetentionOptions::new(0, 0)).is_empty());
        assert!(plan(&rows[1..2], &RetentionOptions::new(1, 1)).is_empty());
    }

    #[test]
    fn another_units_recent_backup_in_progress_is_left_running() {
        let rows = [
            row("2026-01-02T23:00:00Z", "in progress"),
            row("2026-01-03T00:00:00Z", "finished"),
        ];
        assert!(plan(&rows, &RetentionOptions::new(1, 0)).is_empty());
        let old = [row("2026-01-01T00:00:00Z", "in progress"), rows[1].clone()];
        assert_eq!(plan(&old, &RetentionOptions::new(1, 0)).len(), 1);
    }
}
