//! `create-backup`: archive the configured paths into a backup store, with a metadata sidecar
//! written last so a backup without one is visibly incomplete.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveStats, Compression, SourceInfo, host_name};
use crate::commands::snapshot::{SnapshotOptions, manifest_for, write_archive};
use crate::error::{Error, ErrorKind, Result, chain};
use crate::progress::Progress;
use crate::store::Store;

/// Key prefix of all backups in a store.
pub const BACKUP_PREFIX: &str = "backup/";

/// Name of the sidecar of a finished backup, written last: a backup without it is incomplete.
pub const METADATA_NAME: &str = "metadata.json";

/// Name of the sidecar of a failed backup (same content, status `failed: <why>`), so listing
/// tells finished from failed without reading every sidecar.
pub const FAILED_NAME: &str = "failed.json";

/// A backup's metadata sidecar: what `juju backups info` shows, plus what a restore needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupMetadata {
    /// `%Y-%m-%dT%H:%M:%SZ`, UTC.
    pub id: String,
    /// `full`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `finished`, or `failed: <why>`.
    pub status: String,
    /// Start time (RFC 3339, UTC).
    pub started: String,
    /// End time (RFC 3339, UTC).
    pub finished: String,
    /// Archive size in bytes.
    pub size: u64,
    /// Archive SHA-256, lowercase hex.
    pub sha256: String,
    /// `gzip` or `zstd`.
    pub compression: String,
    /// The archive's key in the store.
    pub archive: String,
    /// What was archived.
    pub sources: Vec<SourceInfo>,
    /// Juju unit.
    pub unit: String,
    /// Juju model name.
    pub model: String,
    /// Juju model UUID.
    pub model_uuid: String,
    /// Host name.
    pub host: String,
    /// `charm-backup <version>`.
    pub tool: String,
    /// The operator's notes.
    pub notes: String,
    /// What went wrong without stopping the backup (a file that changed while it was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What to back up and how.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CreateBackupOptions {
    /// The paths, excludes and compression.
    pub snapshot: SnapshotOptions,
    /// Backup type (`full`).
    pub kind: String,
    /// Notes kept in the metadata.
    pub notes: String,
    /// Archive file-name prefix (the application name).
    pub name_prefix: String,
    /// Juju model name, recorded.
    pub model: String,
    /// Juju model UUID, recorded.
    pub model_uuid: String,
}

/// What a backup wrote.
#[derive(Debug, Clone, Default)]
pub struct CreateBackupStats {
    /// The metadata as written.
    pub metadata: BackupMetadata,
    /// The store's URL of the archive.
    pub url: String,
    /// The archive's stats.
    pub archive: ArchiveStats,
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Formats a time as backup ids and metadata do.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Writes and deletes a small object, so bad credentials or a read-only store fail at once.
///
/// # Errors
/// Whatever the store reports, with a hint.
pub fn probe(store: &dyn Store) -> Result<()> {
    let key = format!("{BACKUP_PREFIX}.probe-{}", std::process::id());
    store
        .put(&key, b"probe")
        .and_then(|()| store.delete(&key))
        .map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "the backup store {} cannot be written: {}",
                    store.name(),
                    chain(&e)
                ),
            )
        })
}

/// Uploads started and not known to be finished or aborted: one `<url>\t<key>` line each, in
/// the unit's state directory, so an upload the server never heard aborted (it was down) is
/// aborted by the next backup.
#[derive(Debug)]
struct OpenUploads {
    file: std::path::PathBuf,
}

impl OpenUploads {
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.file)
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn save(&self, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return match std::fs::remove_file(&self.file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                    "cannot update the list of open uploads",
                    &self.file,
                    e,
                )),
                _ => Ok(()),
            };
        }
        if let Some(dir) = self.file.parent() {
            crate::archive::create_private_dir(dir)?;
        }
        std::fs::write(&self.file, lines.join("\n") + "\n")
            .map_err(|e| Error::io("cannot update the list of open uploads", &self.file, e))
    }

    /// The record of an upload to `key` in `store`.
    fn line(store: &dyn Store, key: &str) -> String {
        format!("{}\t{key}", store.url(key))
    }

    fn add(&self, store: &dyn Store, key: &str) -> Result<()> {
        let mut lines = self.lines();
        lines.push(Self::line(store, key));
        self.save(&lines)
    }

    fn remove(&self, store: &dyn Store, key: &str) -> Result<()> {
        let line = Self::line(store, key);
        let lines: Vec<String> = self.lines().into_iter().filter(|l| *l != line).collect();
        self.save(&lines)
    }

    /// Aborts this store's recorded uploads, marking the backups they belonged to failed;
    /// keeps those that cannot be aborted yet. Returns what it did, for the log.
    fn sweep(&self, store: &dyn Store, progress: &dyn Progress) -> Vec<String> {
        let mut done = Vec::new();
        for line in self.lines() {
            let Some((url, key)) = line.split_once('\t') else {
                continue;
            };
            if url != store.url(key) {
                continue;
            }
            match store.abort_incomplete(key) {
                Ok(n) => {
                    let marked = mark_interrupted(store, key);
                    if n > 0 || marked {
                        let msg = format!(
                            "aborted the unfinished upload of {url}, left by a create-backup that did not finish{}",
                            if marked {
                                "; the backup is marked failed"
                            } else {
                                ""
                            }
                        );
                        progress.step(&msg);
                        done.push(msg);
                    }
                    let _ = self.remove(store, key);
                }
                Err(e) => progress.warn(&format!(
                    "the unfinished upload of {url} could not be aborted yet: {}",
                    chain(&e)
                )),
            }
        }
        done
    }
}

/// Gives the backup whose archive is `archive_key` a `failed.json` saying it was interrupted,
/// unless it has a sidecar already; returns whether it wrote one.
fn mark_interrupted(store: &dyn Store, archive_key: &str) -> bool {
    let Some(dir) = archive_key.rsplit_once('/').map(|(d, _)| d) else {
        return false;
    };
    let Ok(listed) = store.list(&format!("{dir}/")) else {
        return false;
    };
    if listed
        .iter()
        .any(|o| o.key.ends_with(METADATA_NAME) || o.key.ends_with(FAILED_NAME))
    {
        return false;
    }
    let id = dir.rsplit('/').next().unwrap_or(dir).to_string();
    let meta = BackupMetadata {
        id,
        status:
            "failed: interrupted before it finished (the action was killed, the machine stopped or the store was unreachable)"
                .into(),
        archive: archive_key.to_string(),
        ..Default::default()
    };
    serde_json::to_vec_pretty(&meta)
        .ok()
        .is_some_and(|json| store.put(&format!("{dir}/{FAILED_NAME}"), &json).is_ok())
}

/// Cleans up after create-backups that were interrupted (killed, or the store was down):
/// their unfinished archives are removed or aborted and the backups marked failed. Run by
/// every hook and action, so nothing stays behind. Returns what it did, for the log.
pub fn sweep_interrupted(store: &dyn Store, state_dir: &std::path::Path) -> Vec<String> {
    let open = OpenUploads {
        file: state_dir.join("open-uploads"),
    };
    if open.lines().is_empty() {
        return Vec::new();
    }
    // Not while a backup runs: its own upload is open.
    let Ok(_lock) = crate::commands::lock::OperationLock::acquire(state_dir, "clean-up") else {
        return Vec::new();
    };
    open.sweep(store, &crate::progress::NoProgress)
}

/// Creates a backup in `store`.
///
/// # Errors
/// When the store cannot be written or a path cannot be read; a failed backup gets a metadata
/// sidecar saying `failed: <why>` when the store still accepts it.
pub fn create_backup(
    store: &dyn Store,
    options: &CreateBackupOptions,
    progress: &dyn Progress,
) -> Result<CreateBackupStats> {
    if !options.snapshot.has_sources() {
        crate::commands::snapshot::check_paths(&options.snapshot.paths)?;
    }
    if let Some(pg) = &options.snapshot.postgresql {
        // Bad credentials fail here, before a backup id is taken.
        pg.connect()?;
    }
    let _lock = if options.snapshot.scratch_dir.as_os_str().is_empty() {
        None
    } else {
        Some(crate::commands::lock::OperationLock::acquire(
            &options.snapshot.scratch_dir,
            "create-backup",
        )?)
    };
    progress.step(&format!("checking the backup store {}", store.name()));
    probe(store)?;
    let open = (!options.snapshot.scratch_dir.as_os_str().is_empty()).then(|| OpenUploads {
        file: options.snapshot.scratch_dir.join("open-uploads"),
    });
    if let Some(o) = &open {
        let _ = o.sweep(store, progress);
    }
    let mut started = now();
    let mut id = format_time(started);
    if !store.list(&format!("{BACKUP_PREFIX}{id}/"))?.is_empty() {
        // Ids have one-second resolution: wait for the next one.
        std::thread::sleep(std::time::Duration::from_millis(
            1000 - (started.subsec_millisecond().max(0) as u64),
        ));
        started = now();
        id = format_time(started);
    }
    let c: Compression = options.snapshot.compression;
    let archive_key = format!(
        "{BACKUP_PREFIX}{id}/{}-backup.{}",
        options.name_prefix,
        c.extension()
    );
    let manifest = manifest_for(&options.snapshot);
    let mut meta = BackupMetadata {
        id: id.clone(),
        kind: options.kind.clone(),
        status: "in progress".into(),
        started: format_time(started),
        compression: c.name().into(),
        archive: archive_key.clone(),
        sources: manifest.sources.clone(),
        unit: options.snapshot.unit.clone(),
        model: options.model.clone(),
        model_uuid: options.model_uuid.clone(),
        host: host_name(),
        tool: manifest.tool.clone(),
        notes: options.notes.clone(),
        ..Default::default()
    };
    let meta_key = format!("{BACKUP_PREFIX}{id}/{METADATA_NAME}");
    progress.step(&format!("writing backup {id}"));
    if let Some(o) = &open {
        o.add(store, &archive_key)?;
    }
    let result = store.create(&archive_key).and_then(|w| {
        let (mut w, stats) = write_archive(w, &options.snapshot, progress)?;
        w.flush()
            .map_err(|e| Error::new(ErrorKind::Other, "cannot write the backup").with_source(e))?;
        w.commit()?;
        Ok(stats)
    });
    meta.finished = format_time(now());
    if let Some(o) = &open {
        // Finished, or aborted when the writer was dropped: unless the store is unreachable,
        // nothing stays open. Checked, since the abort on drop cannot report.
        let settled = result.is_ok() || store.abort_incomplete(&archive_key).is_ok();
        if settled {
            o.remove(store, &archive_key)?;
        }
    }
    match result {
        Ok(stats) => {
            meta.status = "finished".into();
            // The archive's own record, which includes sources found while writing (etcd).
            meta.sources = stats.manifest.sources.clone();
            meta.size = stats.bytes_written;
            meta.sha256 = stats.sha256.clone();
            meta.warnings = stats.warnings.clone();
            let json = serde_json::to_vec_pretty(&meta).map_err(|e| {
                Error::new(ErrorKind::Other, "cannot encode metadata").with_source(e)
            })?;
            store.put(&meta_key, &json)?;
            Ok(CreateBackupStats {
                url: store.url(&archive_key),
                metadata: meta,
                archive: stats,
            })
        }
        Err(e) => {
            meta.status = format!("failed: {}", chain(&e));
            if let Ok(json) = serde_json::to_vec_pretty(&meta) {
                let _ = store.put(&format!("{BACKUP_PREFIX}{id}/{FAILED_NAME}"), &json);
            }
            Err(e)
        }
    }
}
