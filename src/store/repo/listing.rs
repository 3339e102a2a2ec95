//! Listing a repository: one listing of the store plus each backup's sidecar.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::progress::human_size;
use crate::store::ObjectMeta;
use crate::store::repo::{
    BACKUP_PREFIX, BackupMetadata, METADATA_NAME, Owner, Repository, STARTED_NAME,
};

/// One backup, as listed.
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
    /// The unit whose data it is.
    pub unit: String,
    /// `action` or `scheduled`.
    pub origin: String,
    /// Archive size in bytes.
    pub size_bytes: u64,
    /// Start time, as recorded.
    pub started: String,
    /// End time, as recorded.
    pub finished: String,
    /// The age recipients it is encrypted to (empty: not encrypted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encrypted_to: Vec<String>,
    /// A PostgreSQL base backup's first WAL location (empty for other backups).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lsn_start: String,
    /// A PostgreSQL base backup's last WAL location.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lsn_stop: String,
    /// The PostgreSQL timeline a base backup was taken on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub timeline: String,
    /// Where the backup lies.
    pub backup_path: String,
    /// Its metadata, when it could be read.
    #[serde(skip)]
    pub metadata: Option<BackupMetadata>,
}

impl BackupRow {
    /// Whether the backup finished and is whole.
    pub fn is_finished(&self) -> bool {
        self.status == "finished" || self.status.starts_with("finished, ")
    }
}

/// What a repository holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Listing {
    /// `local` or `s3`.
    pub store_kind: String,
    /// Directory or bucket.
    pub store_name: String,
    /// Base path of the backups in it.
    pub base_path: String,
    /// Who writes here, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// How many backups the store holds.
    pub total: usize,
    /// The backups (the newest, when limited), oldest first.
    pub backups: Vec<BackupRow>,
}

/// Why a backup whose metadata says finished is not whole, judged from its folder's listing.
pub(crate) fn damage(m: &BackupMetadata, objects: &[ObjectMeta]) -> Option<String> {
    match objects.iter().find(|o| o.key == m.archive) {
        None => Some("its archive is missing".into()),
        Some(o) if o.size != m.size => Some(format!(
            "its archive is {} bytes, its metadata says {}",
            o.size, m.size
        )),
        Some(_) => None,
    }
}

impl Repository<'_> {
    /// Every backup of ours in the store, oldest first: a finished backup's archive is
    /// checked against the size its metadata records (a missing or short archive is
    /// `damaged`, not `finished`), unreadable metadata is `damaged` with the reason, and
    /// folders without a sidecar of ours are not backups.
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub fn list(&self) -> Result<Listing> {
        let mut by_id: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for o in self.store.list(BACKUP_PREFIX)? {
            let Some((id, _)) = o
                .key
                .strip_prefix(BACKUP_PREFIX)
                .and_then(|r| r.split_once('/'))
            else {
                continue;
            };
            by_id.entry(id.to_string()).or_default().push(o);
        }
        let mut backups = Vec::with_capacity(by_id.len());
        for (id, objects) in by_id {
            if let Some(row) = self.row(&id, objects) {
                backups.push(row);
            }
        }
        Ok(Listing {
            store_kind: self.store.kind().into(),
            store_name: self.store.name(),
            base_path: self.store.base_path(),
            owner: Owner::read(self.store).ok().flatten(),
            total: backups.len(),
            backups,
        })
    }

    /// The row of folder `id`, or `None` when nothing in it is ours.
    fn row(&self, id: &str, objects: Vec<ObjectMeta>) -> Option<BackupRow> {
        let mut row = BackupRow {
            backup_id: id.to_string(),
            kind: "full".into(),
            backup_path: format!("{}{id}", self.store.base_path()),
            size_bytes: objects
                .iter()
                .filter(|o| !o.key.ends_with(".json"))
                .map(|o| o.size)
                .sum(),
            ..Default::default()
        };
        let b = match self.classify(id, objects)? {
            Ok(b) => b,
            Err(why) => {
                row.status = format!("damaged: {why}");
                return Some(row);
            }
        };
        let (m, sidecar, objects) = (b.metadata, b.sidecar, b.objects);
        let objects = &objects;
        row.status = match sidecar {
            METADATA_NAME => match damage(&m, objects) {
                Some(why) => format!("damaged: {why}"),
                None if m.warnings.is_empty() => m.status.clone(),
                None => format!(
                    "{}, {} warning{}",
                    m.status,
                    m.warnings.len(),
                    if m.warnings.len() == 1 { "" } else { "s" }
                ),
            },
            STARTED_NAME => "in progress".into(),
            _ => m.status.clone(),
        };
        row.kind = if m.kind.is_empty() {
            "full".into()
        } else {
            m.kind.clone()
        };
        row.unit = if m.unit.is_empty() {
            m.made_by.clone()
        } else {
            m.unit.clone()
        };
        row.origin = if m.origin.is_empty() {
            "action".into()
        } else {
            m.origin.clone()
        };
        row.started = if m.started.is_empty() {
            id.to_string()
        } else {
            m.started.clone()
        };
        row.finished = m.finished.clone();
        row.encrypted_to = m.encrypted_to.clone();
        if let Some(pg) = m.sources.iter().find(|s| s.kind == "postgresql") {
            let get = |k: &str| pg.details.get(k).cloned().unwrap_or_default();
            row.lsn_start = get("lsn-start");
            row.lsn_stop = get("lsn-stop");
            row.timeline = get("timeline");
        }
        row.metadata = Some(m);
        Some(row)
    }
}

impl Listing {
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
        // The postgresql charm's columns, when a PostgreSQL base backup is listed.
        let wal = self.backups.iter().any(|b| !b.lsn_start.is_empty());
        let mut header = vec![
            "backup-id",
            "type",
            "status",
            "unit",
            "origin",
            "size",
            "started",
            "finished",
            "encrypted",
        ];
        if wal {
            header.extend(["LSN start/stop", "timeline"]);
        }
        header.push("backup-path");
        let rows: Vec<Vec<String>> = self
            .backups
            .iter()
            .map(|b| {
                let mut row = vec![
                    b.backup_id.clone(),
                    b.kind.clone(),
                    b.status.clone(),
                    b.unit.clone(),
                    b.origin.clone(),
                    human_size(b.size_bytes),
                    b.started.clone(),
                    b.finished.clone(),
                    if b.encrypted_to.is_empty() {
                        "no".into()
                    } else {
                        format!("age ({})", b.encrypted_to.len())
                    },
                ];
                if wal {
                    row.push(if b.lsn_start.is_empty() {
                        String::new()
                    } else {
                        format!("{} / {}", b.lsn_start, b.lsn_stop)
                    });
                    row.push(b.timeline.clone());
                }
                row.push(b.backup_path.clone());
                row
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
        let head = line(header.clone());
        let mut out = vec![where_line, format!("Backups base path: {}", self.base_path)];
        if let Some(o) = &self.owner {
            out.push(format!("Owner: {o}"));
        }
        out.push(String::new());
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
