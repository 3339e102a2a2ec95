//! Point-in-time recovery planning: which base backup and timeline a target time needs, whether
//! the archived WAL reaches it, and the window of times each timeline can be restored to.

use std::str::FromStr;

use jiff::Timestamp;
use serde::Serialize;

use crate::error::ErrorKind;
use crate::error::{Error, Result};
use crate::source::postgres::wal::WalArchive;
use crate::source::postgres::wal::{ArchivedWal, WalIndex, parse_lsn};
use crate::store::Store;
use crate::store::repo::{BackupMetadata, BackupRow, Listing};

/// Where a point-in-time restore goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// All the archived WAL of the newest timeline.
    Latest,
    /// The database as it was at this moment.
    Time(Timestamp),
}

impl FromStr for RestorePoint {
    type Err = Error;

    /// `latest`, an RFC 3339 time (`2026-12-05T10:00:00Z`, `...+02:00`) or PostgreSQL's
    /// format (`2026-12-05 10:00:00+00`, `2026-12-05 10:00:00 UTC`,
    /// `2026-12-05 10:00:00 Europe/Paris`). A time without a zone is refused, not guessed.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("latest") {
            return Ok(RestorePoint::Latest);
        }
        if let Ok(t) = s.parse::<Timestamp>() {
            return Ok(RestorePoint::Time(t));
        }
        if let Some((civil, zone)) = s.rsplit_once(' ')
            && zone.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && let Ok(dt) = civil.trim().parse::<jiff::civil::DateTime>()
        {
            let z = dt.in_tz(zone).map_err(|_| {
                Error::invalid(format!("restore-to-time {s:?}: unknown time zone {zone:?}"))
            })?;
            return Ok(RestorePoint::Time(z.timestamp()));
        }
        if s.parse::<jiff::civil::DateTime>().is_ok() {
            return Err(Error::invalid(format!(
                "restore-to-time {s:?} has no time zone: add one (2026-12-05T10:00:00Z, \
                 2026-12-05 10:00:00+02, 2026-12-05 10:00:00 Europe/Paris); a time is never \
                 guessed to be local"
            )));
        }
        Err(Error::invalid(format!(
            "restore-to-time {s:?} is not a time: give \"latest\", an RFC 3339 time \
             (2026-12-05T10:00:00Z) or PostgreSQL's format (2026-12-05 10:00:00+00)"
        )))
    }
}

/// A finished physical base backup of PostgreSQL, as its metadata records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackup {
    /// Its id.
    pub id: String,
    /// The cluster's system identifier.
    pub system_id: u64,
    /// The timeline it was taken on.
    pub timeline: u32,
    /// Where its WAL ends.
    pub lsn_stop: u64,
    /// When it finished: the first moment it can be restored to.
    pub finished: Timestamp,
}

impl BaseBackup {
    /// The base backup a listed backup is, if it is a finished physical PostgreSQL backup.
    pub fn from_row(row: &BackupRow) -> Option<BaseBackup> {
        if !row.is_finished() {
            return None;
        }
        BaseBackup::from_metadata(row.metadata.as_ref()?)
    }

    /// The base backup `m` records, if it is a physical PostgreSQL backup.
    pub fn from_metadata(m: &BackupMetadata) -> Option<BaseBackup> {
        let pg = m.sources.iter().find(|s| s.kind == "postgresql")?;
        let get = |k: &str| pg.details.get(k).map(String::as_str).unwrap_or("");
        if get("mode") != "physical" {
            return None;
        }
        Some(BaseBackup {
            id: m.id.clone(),
            system_id: get("system-identifier").parse().ok()?,
            timeline: get("timeline").parse().ok()?,
            lsn_stop: parse_lsn(get("lsn-stop")).ok()?,
            finished: m.finished.parse().ok()?,
        })
    }
}

/// The base backups in a listing, oldest first.
pub fn base_backups(listing: &Listing) -> Vec<BaseBackup> {
    listing
        .backups
        .iter()
        .filter_map(BaseBackup::from_row)
        .collect()
}

/// What a point-in-time restore will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The base backup restored.
    pub backup: BaseBackup,
    /// The timeline recovery follows.
    pub timeline: u32,
    /// The target time (`None`: the end of the timeline's WAL).
    pub time: Option<Timestamp>,
    /// The last archived segment recovery can reach.
    pub last: Option<ArchivedWal>,
}

fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "an unknown time".into(), |t| t.to_string())
}

/// Plans a restore of the cluster `index` describes to `point`, from `backup_id` or the newest
/// base backup that finished before it. Refuses a point outside what the backups and the
/// archived WAL can reach, and a `latest` that a missing segment would cut short.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] saying why and what can be restored instead.
pub fn plan(
    index: &WalIndex,
    backups: &[BaseBackup],
    point: RestorePoint,
    backup_id: Option<&str>,
) -> Result<RecoveryPlan> {
    let ours: Vec<&BaseBackup> = backups
        .iter()
        .filter(|b| b.system_id == index.system_id)
        .filter(|b| backup_id.is_none_or(|id| b.id == id))
        .collect();
    if ours.is_empty() {
        return Err(Error::invalid(match backup_id {
            Some(id) => format!(
                "backup {id} is not a finished physical PostgreSQL backup of cluster {}",
                index.system_id
            ),
            None => format!(
                "the store holds no finished physical base backup of cluster {}: take one with \
                 create-backup (postgresql-mode=physical)",
                index.system_id
            ),
        }));
    }
    let timeline = match point {
        RestorePoint::Latest => index.newest(),
        RestorePoint::Time(t) => index.live_at(t),
    };
    let Some(timeline) = timeline else {
        return Err(Error::invalid(format!(
            "no WAL of cluster {} is archived: turn postgresql-wal-archive on (and let it \
             archive) before restoring to a point in time",
            index.system_id
        )));
    };
    let earliest = ours.iter().map(|b| b.finished).min();
    let usable: Vec<(&BaseBackup, Vec<_>)> = ours
        .iter()
        .filter(|b| match point {
            RestorePoint::Time(t) => b.finished <= t,
            RestorePoint::Latest => true,
        })
        .filter_map(|b| Some((*b, index.path(b.timeline, b.lsn_stop, timeline)?)))
        .collect();
    let Some((backup, spans)) = usable.iter().max_by_key(|(b, _)| b.finished) else {
        return Err(Error::invalid(match point {
            RestorePoint::Time(t) if earliest.is_some_and(|e| t < e) => format!(
                "{t} is before the earliest restorable time {}: the first base backup finished \
                 then; nothing was changed",
                when(earliest)
            ),
            _ => format!(
                "no base backup lies on timeline {timeline}'s history before the target: take a \
                 base backup on it; nothing was changed"
            ),
        }));
    };
    let reach = index.reach(spans);
    let last_time = reach.last.as_ref().and_then(|w| w.modified);
    let missing = reach.missing.map(|m| {
        format!(
            "segment {m} is missing from the archive, so recovery from backup {} stops there",
            backup.id
        )
    });
    match point {
        RestorePoint::Time(t) if last_time.is_none_or(|l| l < t) => {
            return Err(Error::invalid(match missing {
                Some(m) => format!(
                    "{t} cannot be reached: {m} (WAL archived up to {}); restore to an earlier \
                     time, or put the segment back; nothing was changed",
                    when(last_time)
                ),
                None => format!(
                    "{t} is after the last archived WAL of timeline {timeline} (archived {}): \
                     what was written since is not archived yet (SELECT pg_switch_wal(), or \
                     wait postgresql-archive-timeout) or pick an earlier time; nothing was changed",
                    when(last_time)
                ),
            }));
        }
        RestorePoint::Latest if missing.is_some() => {
            return Err(Error::invalid(format!(
                "{}: a restore to latest would end there and drop what follows; restore to a \
                 time up to {} (restore-to-time=...), or put the segment back; nothing was changed",
                missing.unwrap_or_default(),
                when(last_time)
            )));
        }
        _ => {}
    }
    Ok(RecoveryPlan {
        backup: (*backup).clone(),
        timeline,
        time: match point {
            RestorePoint::Time(t) => Some(t),
            RestorePoint::Latest => None,
        },
        last: reach.last,
    })
}

/// What the archive holds after a base backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalCheck {
    /// The timelines reachable from it.
    pub timelines: Vec<u32>,
    /// Segments checked.
    pub segments: usize,
    /// When the last of them was archived.
    pub latest: Option<Timestamp>,
}

/// Checks that the WAL archived after `backup` has no hole on any timeline recovery from it can
/// follow; `None` when no WAL of its cluster is archived.
///
/// # Errors
/// [`ErrorKind::Integrity`] naming the first missing segment and how far restores reach.
pub fn check_wal(store: &dyn Store, backup: &BaseBackup) -> Result<Option<WalCheck>> {
    let index = WalIndex::load(&WalArchive::new(store, backup.system_id))?;
    if index.timelines.is_empty() {
        return Ok(None);
    }
    let mut check = WalCheck {
        timelines: Vec::new(),
        segments: 0,
        latest: None,
    };
    for &tl in index.timelines.keys() {
        let Some(spans) = index.path(backup.timeline, backup.lsn_stop, tl) else {
            continue;
        };
        let reach = index.reach(&spans);
        if let Some(m) = reach.missing {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "WAL segment {m} is missing from the archive: point-in-time restores from \
                     backup {} on timeline {tl} stop before it (archived WAL reaches {}); take a \
                     new base backup, and find why archiving skipped it",
                    backup.id,
                    when(reach.last.and_then(|l| l.modified))
                ),
            ));
        }
        check.timelines.push(tl);
        check.segments += spans
            .iter()
            .map(|s| {
                index.timelines.get(&s.timeline).map_or(0, |t| {
                    t.segments
                        .range(s.from..s.until.unwrap_or(u64::MAX))
                        .count()
                })
            })
            .sum::<usize>();
        check.latest = check.latest.max(reach.last.and_then(|l| l.modified));
    }
    Ok(Some(check))
}

/// The archived WAL that retention removes: files of a cluster archived before its oldest
/// kept base backup finished and that no kept base backup's recovery reads. History files stay
/// (they are tiny and every later timeline needs them), and so does all the WAL of a cluster
/// with no base backup left (nothing says what is needed). With `dry_run`, nothing is removed.
///
/// # Errors
/// When the store cannot be listed or refuses a deletion.
pub fn prune_wal(store: &dyn Store, listing: &Listing, dry_run: bool) -> Result<Vec<ArchivedWal>> {
    use crate::source::postgres::wal::WalFile;
    let backups = base_backups(listing);
    let mut removed = Vec::new();
    for system in WalArchive::systems(store)? {
        let kept: Vec<&BaseBackup> = backups.iter().filter(|b| b.system_id == system).collect();
        let Some(oldest) = kept.iter().map(|b| b.finished).min() else {
            continue;
        };
        let archive = WalArchive::new(store, system);
        let index = WalIndex::load(&archive)?;
        // The first segment each timeline must keep for some kept backup.
        let mut keep_from: std::collections::BTreeMap<u32, u64> = Default::default();
        for b in &kept {
            for &tl in index.timelines.keys() {
                for s in index.path(b.timeline, b.lsn_stop, tl).unwrap_or_default() {
                    let e = keep_from.entry(s.timeline).or_insert(u64::MAX);
                    *e = (*e).min(s.from);
                }
            }
        }
        let old: Vec<ArchivedWal> = archive
            .list()?
            .into_iter()
            .filter(|w| w.modified.is_some_and(|m| m < oldest))
            .filter(|w| match w.file {
                WalFile::Segment { timeline, segno }
                | WalFile::Partial { timeline, segno }
                | WalFile::BackupLabel {
                    timeline, segno, ..
                } => segno < keep_from.get(&timeline).copied().unwrap_or(u64::MAX),
                WalFile::History { .. } => false,
            })
            .collect();
        if !dry_run {
            archive.remove(&old)?;
        }
        removed.extend(old);
    }
    Ok(removed)
}

/// The times one timeline can be restored to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TimelineWindow {
    /// The cluster.
    pub system_id: String,
    /// The timeline.
    pub timeline: u32,
    /// The earliest restorable time (`None`: no base backup leads here).
    pub earliest: Option<String>,
    /// The latest restorable time: when the last segment reachable without a hole was archived.
    pub latest: Option<String>,
    /// Segments archived on this timeline.
    pub segments: usize,
    /// The last of them.
    pub last_segment: String,
    /// Holes in the timeline's segments (`first..last` missing).
    pub gaps: Vec<String>,
}

/// The window of every timeline of the cluster `index` describes.
pub fn windows(index: &WalIndex, backups: &[BaseBackup]) -> Vec<TimelineWindow> {
    let ours: Vec<&BaseBackup> = backups
        .iter()
        .filter(|b| b.system_id == index.system_id)
        .collect();
    index
        .timelines
        .values()
        .map(|tl| {
            let mut w = TimelineWindow {
                system_id: index.system_id.to_string(),
                timeline: tl.id,
                segments: tl.segments.len(),
                last_segment: tl
                    .segments
                    .values()
                    .next_back()
                    .map(|s| s.file.to_string())
                    .unwrap_or_default(),
                gaps: index
                    .gaps(tl.id)
                    .iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}..{b}")
                        }
                    })
                    .collect(),
                ..Default::default()
            };
            // The earliest: the oldest backup whose WAL reaches as far as any backup's does.
            let reaches: Vec<(&BaseBackup, Option<Timestamp>)> = ours
                .iter()
                .filter_map(|b| {
                    let spans = index.path(b.timeline, b.lsn_stop, tl.id)?;
                    let last = index.reach(&spans).last?.modified;
                    (last? >= b.finished).then_some((*b, last))
                })
                .collect();
            let latest = reaches.iter().filter_map(|(_, l)| *l).max();
            let earliest = reaches
                .iter()
                .filter(|(_, l)| *l == latest)
                .map(|(b, _)| b.finished)
                .min();
            let earliest = match (earliest, tl.began) {
                (Some(e), Some(b)) => Some(e.max(b)),
                (e, _) => e,
            };
            w.earliest = earliest.map(|t| t.to_string());
            w.latest = earliest.and(latest).map(|t| t.to_string());
            w
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_parse_with_a_zone_and_never_without() {
        let t = |s: &str| match s.parse::<RestorePoint>().unwrap() {
            RestorePoint::Time(t) => t.to_string(),
            RestorePoint::Latest => "latest".into(),
        };
        assert_eq!(t("latest"), "latest");
        assert_eq!(t("2026-12-05T10:00:00Z"), "2026-12-05T10:00:00Z");
        assert_eq!(t("2026-12-05 10:00:00+02"), "2026-12-05T08:00:00Z");
        assert_eq!(t("2026-12-05 10:00:00.5 UTC"), "2026-12-05T10:00:00.5Z");
        assert_eq!(
            t("2026-12-05 10:00:00 Europe/Paris"),
            "2026-12-05T09:00:00Z"
        );
        let e = "2026-12-05 10:00:00".parse::<RestorePoint>().unwrap_err();
        assert!(e.to_string().contains("no time zone"), "{e}");
        assert!("yesterday".parse::<RestorePoint>().is_err());
        assert!(
            "2026-12-05 10:00:00 Mars/Base"
                .parse::<RestorePoint>()
                .is_err()
        );
    }
}
