//! `list-backups`: the backups in a store, oldest first, as a table or JSON.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Serialize;

use crate::commands::create_backup::{BACKUP_PREFIX, BackupMetadata, METADATA_NAME};
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
    /// `finished`, `failed: <why>` or `in progress`.
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
    /// The backups, sorted by id.
    pub backups: Vec<BackupRow>,
}

/// Lists the backups in `store` with one listing call plus one read per backup's sidecar.
///
/// # Errors
/// When the store cannot be listed.
pub fn list_backups(store: &dyn Store) -> Result<ListBackupsStats> {
    let objects = store.list(BACKUP_PREFIX)?;
    let mut by_id: BTreeMap<String, (Option<String>, u64)> = BTreeMap::new();
    for o in &objects {
        let Some(rest) = o.key.strip_prefix(BACKUP_PREFIX) else {
            continue;
        };
        let Some((id, name)) = rest.split_once('/') else {
            continue;
        };
        let e = by_id.entry(id.to_string()).or_default();
        if name == METADATA_NAME {
            e.0 = Some(o.key.clone());
        } else {
            e.1 += o.size;
        }
    }
    let mut backups = Vec::new();
    for (id, (meta_key, size)) in by_id {
        let meta: Option<BackupMetadata> = meta_key.and_then(|k| {
            let mut buf = Vec::new();
            store.open(&k).ok()?.read_to_end(&mut buf).ok()?;
            serde_json::from_slice(&buf).ok()
        });
        let path = format!("{}{id}", store.base_path());
        backups.push(match meta {
            Some(m) => BackupRow {
                backup_id: id,
                kind: m.kind,
                status: m.status,
                size_bytes: m.size,
                started: m.started,
                finished: m.finished,
                backup_path: path,
            },
            None => BackupRow {
                backup_id: id,
                kind: "full".into(),
                status: "in progress".into(),
                size_bytes: size,
                backup_path: path,
                ..Default::default()
            },
        });
    }
    Ok(ListBackupsStats {
        store_kind: store.kind().into(),
        store_name: store.name(),
        base_path: store.base_path(),
        backups,
    })
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
            head.clone(),
            "-".repeat(head.chars().count()),
        ];
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
