//! What the archive of one cluster holds, by timeline: each timeline's ancestry (from its
//! history file), when it began, its segments, and the paths recovery follows through them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::archive::{ArchivedWal, WalArchive};
use super::names::{SEGMENT_BYTES, WalFile, format_lsn, parse_lsn};
use crate::error::{Error, Result};

/// A timeline's ancestry, kept beside its history file in plaintext (the history file itself
/// is encrypted with the WAL) so the window can be listed without the key: only timeline
/// numbers and LSNs, never the history's free text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestry {
    /// The timeline.
    pub timeline: u32,
    /// Its ancestors, oldest first: each timeline and the LSN where it was left.
    pub parents: Vec<(u32, String)>,
}

impl Ancestry {
    /// Parses a history file (`parent<TAB>switch LSN<TAB>reason` lines).
    ///
    /// # Errors
    /// When a line is not of that form.
    pub fn parse(timeline: u32, text: &str) -> Result<Ancestry> {
        let mut parents = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(tli), Some(lsn)) = (it.next(), it.next()) else {
                return Err(Error::invalid(format!(
                    "a history line without an LSN: {line:?}"
                )));
            };
            let tli: u32 = tli.parse().map_err(|_| {
                Error::invalid(format!("a history line without a timeline: {line:?}"))
            })?;
            parents.push((tli, format_lsn(parse_lsn(lsn)?)));
        }
        Ok(Ancestry { timeline, parents })
    }

    /// The key of the ancestry of `timeline` in the archive of `system_id`.
    pub fn key(system_id: u64, timeline: u32) -> String {
        format!(
            "{}{system_id}/{timeline:08X}/{timeline:08X}.ancestry.json",
            super::archive::WAL_PREFIX
        )
    }
}

/// One timeline of the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Its number.
    pub id: u32,
    /// Its ancestors and where each was left (empty for the first timeline).
    pub parents: Vec<(u32, u64)>,
    /// When its history file was archived: when the promotion that began it happened.
    pub began: Option<jiff::Timestamp>,
    /// Its archived segments, by number.
    pub segments: BTreeMap<u64, ArchivedWal>,
}

/// A stretch of WAL recovery reads: segments `from..until` of `timeline` (`until`: `None` to
/// the end of what the timeline has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The timeline.
    pub timeline: u32,
    /// The first segment read.
    pub from: u64,
    /// The segment where recovery moves to the next timeline (exclusive).
    pub until: Option<u64>,
}

/// How far recovery can go along a path of spans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// The last segment reached without a hole, with its archive time.
    pub last: Option<ArchivedWal>,
    /// The first segment missing before the end of the path, when later ones exist.
    pub missing: Option<WalFile>,
}

/// The archive of one cluster, by timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalIndex {
    /// The cluster.
    pub system_id: u64,
    /// Its timelines.
    pub timelines: BTreeMap<u32, Timeline>,
}

impl WalIndex {
    /// Lists the archive (one listing, plus one small read per timeline past the first).
    ///
    /// # Errors
    /// When the store cannot be listed or an ancestry read.
    pub fn load(archive: &WalArchive<'_>) -> Result<WalIndex> {
        let mut index = WalIndex {
            system_id: archive.system_id(),
            timelines: BTreeMap::new(),
        };
        for w in archive.list()? {
            let t = index
                .timelines
                .entry(w.file.timeline())
                .or_insert_with(|| Timeline {
                    id: w.file.timeline(),
                    ..Default::default()
                });
            match w.file {
                WalFile::Segment { segno, .. } => {
                    t.segments.insert(segno, w);
                }
                WalFile::History { .. } => t.began = w.modified,
                _ => {}
            }
        }
        for t in index.timelines.values_mut() {
            if (t.id > 1 || t.began.is_some())
                && let Some(a) = archive.ancestry(t.id)?
            {
                t.parents = a
                    .parents
                    .iter()
                    .filter_map(|(tli, lsn)| Some((*tli, parse_lsn(lsn).ok()?)))
                    .collect();
            }
        }
        Ok(index)
    }

    /// The timeline the server ran on at `t`: the last one begun by then.
    pub fn live_at(&self, t: jiff::Timestamp) -> Option<u32> {
        self.timelines
            .values()
            .filter(|tl| tl.began.is_none_or(|b| b <= t))
            .max_by_key(|tl| (tl.began, tl.id))
            .map(|tl| tl.id)
    }

    /// The newest timeline.
    pub fn newest(&self) -> Option<u32> {
        self.timelines
            .values()
            .max_by_key(|tl| (tl.began, tl.id))
            .map(|tl| tl.id)
    }

    /// The spans recovery reads from a base backup that stopped at `stop_lsn` on `from` to the
    /// end of `target`; `None` when `from` is not on `target`'s history at that point (the
    /// backup was taken after the branch, on another line).
    pub fn path(&self, from: u32, stop_lsn: u64, target: u32) -> Option<Vec<Span>> {
        let mut chain: Vec<(u32, Option<u64>)> = self
            .timelines
            .get(&target)
            .map(|t| {
                t.parents
                    .iter()
                    .map(|&(tli, lsn)| (tli, Some(lsn)))
                    .collect()
            })
            .unwrap_or_default();
        chain.push((target, None));
        let pos = chain.iter().position(|(tli, _)| *tli == from)?;
        // A backup that ended after its timeline was left lies on another line.
        if chain[pos].1.is_some_and(|left| stop_lsn > left) {
            return None;
        }
        let mut cur = stop_lsn / SEGMENT_BYTES;
        Some(
            chain[pos..]
                .iter()
                .map(|&(timeline, left)| {
                    let until = left.map(|lsn| lsn / SEGMENT_BYTES);
                    let span = Span {
                        timeline,
                        from: cur,
                        until,
                    };
                    cur = until.unwrap_or(cur);
                    span
                })
                .collect(),
        )
    }

    /// How far recovery gets along `spans` with what the archive holds.
    pub fn reach(&self, spans: &[Span]) -> Reach {
        let mut reach = Reach::default();
        for span in spans {
            let segments = self.timelines.get(&span.timeline).map(|t| &t.segments);
            // To the branch point, or to the last segment the timeline has.
            let end = span.until.unwrap_or_else(|| {
                segments
                    .and_then(|s| s.keys().next_back())
                    .map_or(span.from, |l| l + 1)
            });
            for segno in span.from..end {
                match segments.and_then(|s| s.get(&segno)) {
                    Some(w) => reach.last = Some(w.clone()),
                    None => {
                        reach.missing = Some(WalFile::segment(span.timeline, segno));
                        return reach;
                    }
                }
            }
        }
        reach
    }

    /// Holes in each timeline's own run of segments: (first, last) missing segment.
    pub fn gaps(&self, timeline: u32) -> Vec<(WalFile, WalFile)> {
        let Some(tl) = self.timelines.get(&timeline) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut prev: Option<u64> = None;
        for &segno in tl.segments.keys() {
            if let Some(p) = prev
                && segno > p + 1
            {
                out.push((
                    WalFile::segment(timeline, p + 1),
                    WalFile::segment(timeline, segno - 1),
                ));
            }
            prev = Some(segno);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn seg(tli: u32, segno: u64, at: i64) -> ArchivedWal {
        ArchivedWal {
            file: WalFile::segment(tli, segno),
            sha256: String::new(),
            key: String::new(),
            size: 1,
            modified: Some(jiff::Timestamp::from_second(at).unwrap()),
            encrypted: false,
        }
    }

    #[test]
    fn recovery_follows_the_history_and_stops_at_holes() {
        let a = Ancestry::parse(2, "1\t0/5000000\tbefore 2026-12-05 10:00:00+00\n").unwrap();
        assert_eq!(a.parents, vec![(1, "0/5000000".to_string())]);
        let mut index = WalIndex::default();
        let mut t1 = Timeline {
            id: 1,
            ..Default::default()
        };
        for s in 2..9 {
            t1.segments.insert(s, seg(1, s, 100 + s as i64));
        }
        let mut t2 = Timeline {
            id: 2,
            parents: vec![(1, 0x5000000)],
            began: Some(jiff::Timestamp::from_second(200).unwrap()),
            ..Default::default()
        };
        for s in [5, 6, 8] {
            t2.segments.insert(s, seg(2, s, 200 + s as i64));
        }
        index.timelines.insert(1, t1);
        index.timelines.insert(2, t2);

        assert_eq!(
            index.live_at(jiff::Timestamp::from_second(150).unwrap()),
            Some(1)
        );
        assert_eq!(
            index.live_at(jiff::Timestamp::from_second(250).unwrap()),
            Some(2)
        );
        assert_eq!(index.newest(), Some(2));
        // From a backup stopped in segment 3 of timeline 1: 3, 4 on 1, then 5, 6 on 2; 7 is
        // missing though 8 exists.
        let spans = index.path(1, 0x3000100, 2).unwrap();
        assert_eq!(spans.len(), 2);
        let r = index.reach(&spans);
        assert_eq!(r.last.unwrap().file, WalFile::segment(2, 6));
        assert_eq!(r.missing, Some(WalFile::segment(2, 7)));
        assert_eq!(
            index.gaps(2),
            vec![(WalFile::segment(2, 7), WalFile::segment(2, 7))]
        );
        // Timeline 1 alone runs to its end.
        let r = index.reach(&index.path(1, 0x3000100, 1).unwrap());
        assert_eq!(r.last.unwrap().file, WalFile::segment(1, 8));
        assert_eq!(r.missing, None);
        // A backup taken on timeline 1 after the branch is not on timeline 2's history.
        assert!(index.path(1, 0x6000000, 2).is_none());
    }
}
