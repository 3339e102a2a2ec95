//! `list-backups`: the backups in a store, oldest first, as a table or JSON.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use crate::commands::create_backup::{BACKUP_PREFIX, BackupMetadata, FAILED_NAME, METADATA_NAME};
use crate::error::Result;
use crate::store::Store;

/// One row of the listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupRow {
    /// The backup id.
    pub backup_id: String,
    /// `full`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `finished` (`finished, 2 warnings`), `damaged: <why>`, `failed: <why>` or
    /// `in progress`.
    pub status: String,
    /// Archive size in bytes.
    pub size_bytes: u64,
    /// Start time.
    pub started: String,
    /// End time.
    pub finished: String,
    /// Where the backup lies.
    pub backup_path: String,
}

/// The listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ListBackupsStats {
    /// `local` or `s3`.
    pub store_kind: String,
    /// Directory or bucket.
    pub store_name: String,
    /// Base path of the backups in it.
    pub base_path: String,
    /// How many backups the store holds.
    pub total: usize,
    /// The backups shown (the newest, when limited), sorted by id.
    pub backups: Vec<BackupRow>,
}

/// Lists the backups in `store` from one (paginated) listing plus each backup's sidecar: a
/// finished backup's archive is checked against the size its metadata records (a missing or
/// short archive is `damaged`, not `finished`), and its warnings are counted.
///
/// # Errors
/// When the store cannot be listed.
pub fn list_backups(store: &dyn Store) -> Result<ListBackupsStats> {
    #[derive(Default)]
    struct Seen {
        finished: Option<String>,
        failed: Option<String>,
        archive_bytes: u64,
        objects: BTreeMap<String, u64>,
    }
    let read = |key: &str| -> Option<BackupMetadata> {
        let mut buf = Vec::new();
        store.open(key).ok()?.read_to_end(&mut buf).ok()?;
        serde_json::from_slice(&buf).ok()
    };
    let objects = store.list(BACKUP_PREFIX)?;
    let mut by_id: BTreeMap<String, Seen> = BTreeMap::new();
    for o in objects {
        let Some((id, name)) = o
            .key
            .strip_prefix(BACKUP_PREFIX)
            .and_then(|r| r.split_once('/'))
        else {
            continue;
        };
        let e = by_id.entry(id.to_string()).or_default();
        match name {
            METADATA_NAME => e.finished = Some(o.key.clone()),
            FAILED_NAME => e.failed = Some(o.key.clone()),
            _ => {
                e.archive_bytes += o.size;
                e.objects.insert(o.key.clone(), o.size);
            }
        }
    }
    let mut backups = Vec::with_capacity(by_id.len());
    for (id, seen) in by_id {
        let mut row = BackupRow {
            kind: "full".into(),
            started: id.clone(),
            size_bytes: seen.archive_bytes,
            backup_path: format!("{}{id}", store.base_path()),
            backup_id: id,
            ..Default::default()
        };
        if let Some(key) = seen.finished {
            match read(&key) {
                Some(m) => {
                    row.status = finished_status(&m, &seen.objects);
                    row.finished = m.finished;
                }
                None => row.status = "damaged: its metadata cannot be read".into(),
            }
        } else if let Some(key) = seen.failed {
            // Read why.
            let meta = read(&key);
            row.status = meta
                .as_ref()
                .map_or_else(|| "failed".into(), |m| m.status.clone());
            row.finished = meta.map(|m| m.finished).unwrap_or_default();
        } else {
            row.status = "in progress".into();
        }
        backups.push(row);
    }
    Ok(ListBackupsStats {
        store_kind: store.kind().into(),
        store_name: store.name(),
        base_path: store.base_path(),
        total: backups.len(),
        backups,
    })
}

/// The status of a backup with metadata `m`, whose archive the listing shows in `objects`.
fn finished_status(m: &BackupMetadata, objects: &BTreeMap<String, u64>) -> String {
    match objects.get(&m.archive) {
        None => "damaged: its archive is missing".into(),
        Some(&n) if n != m.size => {
            format!(
                "damaged: its archive is {n} bytes, its metadata says {}",
                m.size
            )
        }
        Some(_) if m.warnings.is_empty() => m.status.clone(),
        Some(_) => format!(
            "{}, {} warning{}",
            m.status,
            m.warnings.len(),
            if m.warnings.len() == 1 { "" } else { "s" }
        ),
    }
}

/// Bytes as people read them: `68K`, `1.2M`, `3.4G` (powers of 1024, like `du -h`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}")
    } else if v < 10.0 {
        format!("{:.1}{}", (v * 10.0).ceil() / 10.0, UNITS[u])
    } else {
        format!("{}{}", v.ceil() as u64, UNITS[u])
    }
}

impl ListBackupsStats {
    /// Keeps only the newest `limit` backups (0 keeps all).
    pub fn keep_newest(&mut self, limit: usize) {
        if limit > 0 && self.backups.len() > limit {
            self.backups.drain(..self.backups.len() - limit);
        }
    }

    /// The table operators know from the postgresql and maas charms.
    pub fn table(&self) -> String {
        let where_line = match self.store_kind.as_str() {
            "s3" => format!("Storage bucket name: {}", self.store_name),
            _ => format!("Local directory: {}", self.store_name),
        };
        let header = [
            "backup-id",
            "type",
            "status",
            "size",
            "started",
            "finished",
            "backup-path",
        ];
        let rows: Vec<[String; 7]> = self
            .backups
            .iter()
            .map(|b| {
                [
                    b.backup_id.clone(),
                    b.kind.clone(),
                    b.status.clone(),
                    human_size(b.size_bytes),
                    b.started.clone(),
                    b.finished.clone(),
                    b.backup_path.clone(),
                ]
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| -> String {
            let last = cells.len() - 1;
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == last {
                        c.to_string()
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let head = line(header.to_vec());
        let mut out = vec![
            where_line,
            format!("Backups base path: {}", self.base_path),
            String::new(),
        ];
        if self.backups.len() < self.total {
            out.push(format!(
                "Showing the newest {} of {} backups (limit=0 shows all)",
                self.backups.len(),
                self.total
            ));
            out.push(String::new());
        }
        out.extend([head.clone(), "-".repeat(head.chars().count())]);
        for r in &rows {
            out.push(line(r.iter().map(String::as_str).collect()));
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_du() {
        assert_eq!(human_size(512), "512");
        assert_eq!(human_size(68 * 1024), "68K");
        assert_eq!(human_size(1536 * 1024), "1.5M");
    }
}
