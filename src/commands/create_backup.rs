//! `create-backup`: archive the configured paths into a backup store. The repository's marker
//! goes first and the metadata sidecar last, so a backup without one is visibly incomplete;
//! retention runs after a backup that finished.

use std::io::Write;

use crate::archive::{ArchiveStats, host_name};
use crate::commands::lock::OperationLock;
use crate::commands::snapshot::{
    SnapshotOptions, manifest_for, with_services_stopped, write_archive,
};
use crate::error::{Error, ErrorKind, Result, chain};
use crate::progress::Progress;
use crate::store::Store;
use crate::store::repo::{
    BackupMetadata, FAILED_NAME, METADATA_NAME, OpenUploads, Owner, PruneStats, Repository,
    RetentionOptions, STARTED_NAME, backup_id, format_time,
};

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
    /// The Juju unit making the backup (`app/N`): its number goes in the id.
    pub made_by: String,
    /// Record this application as the store path's owner even when another one is.
    pub take_over_store: bool,
    /// Applied once the backup finished.
    pub retention: RetentionOptions,
    /// Who asked for it (`action`, `scheduled`), recorded.
    pub origin: String,
    /// How long to wait for another operation on the unit to finish (zero: refuse at once).
    pub lock_wait: std::time::Duration,
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
    /// What retention removed afterwards.
    pub pruned: PruneStats,
    /// How long the `stop_services` units were down.
    pub services_down: Option<std::time::Duration>,
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Cleans up after create-backups that were interrupted (killed, or the store was down):
/// their unfinished archives are removed or aborted and the backups marked failed. Run by
/// every hook and action, so nothing stays behind. Returns what it did, for the log.
pub fn sweep_interrupted(store: &dyn Store, state_dir: &std::path::Path) -> Vec<String> {
    let open = OpenUploads::in_dir(state_dir);
    if open.lines().is_empty() {
        return Vec::new();
    }
    // Not while a backup runs: its own upload is open.
    let Ok(_lock) = OperationLock::acquire(state_dir, "clean-up") else {
        return Vec::new();
    };
    open.sweep(store, &crate::progress::NoProgress)
}

/// Creates a backup in `store`.
///
/// # Errors
/// When the store cannot be written, belongs to another application, or a path cannot be read;
/// a failed backup gets a `failed.json` sidecar saying why when the store still accepts it.
/// A retention failure after a finished backup is a warning, not an error.
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
    let scratch = &options.snapshot.scratch_dir;
    let _lock = if scratch.as_os_str().is_empty() {
        None
    } else {
        Some(OperationLock::acquire_waiting(
            scratch,
            "create-backup",
            options.lock_wait,
            progress,
        )?)
    };
    let repo = Repository::new(store);
    progress.step(&format!("checking the backup store {}", store.name()));
    repo.probe()?;
    Owner::claim(
        store,
        &Owner {
            model_uuid: options.model_uuid.clone(),
            model: options.model.clone(),
            application: options.name_prefix.clone(),
            ..Default::default()
        },
        options.take_over_store,
        progress,
    )?;
    let open = (!scratch.as_os_str().is_empty()).then(|| OpenUploads::in_dir(scratch));
    if let Some(o) = &open {
        let _ = o.sweep(store, progress);
    }
    let mut started = now();
    let mut id = backup_id(started, &options.made_by);
    if !store.list(&Repository::dir(&id))?.is_empty() {
        // Ids have one-second resolution: wait for the next one.
        std::thread::sleep(std::time::Duration::from_millis(
            1000 - (started.subsec_millisecond().max(0) as u64),
        ));
        started = now();
        id = backup_id(started, &options.made_by);
    }
    let c = options.snapshot.compression;
    let archive_key =
        Repository::archive_key(&id, &options.name_prefix, &options.snapshot.extension());
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
        made_by: options.made_by.clone(),
        application: options.name_prefix.clone(),
        model: options.model.clone(),
        model_uuid: options.model_uuid.clone(),
        host: host_name(),
        tool: manifest.tool.clone(),
        notes: options.notes.clone(),
        origin: options.origin.clone(),
        encrypted_to: options
            .snapshot
            .recipients
            .as_ref()
            .map(crate::archive::Recipients::keys)
            .unwrap_or_default(),
        ..Default::default()
    };
    progress.step(&format!("writing backup {id}"));
    // The marker first: from here on the backup is ours to list, sweep and remove.
    repo.write_sidecar(&meta, STARTED_NAME)?;
    if let Some(o) = &open {
        o.add(store, &archive_key)?;
    }
    let mut services_down = None;
    let result = store.create(&archive_key).and_then(|w| {
        let ((mut w, stats), down) =
            with_services_stopped(&options.snapshot, "create-backup", progress, || {
                write_archive(w, &options.snapshot, progress)
            })?;
        services_down = down;
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
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            meta.status = format!("failed: {}", chain(&e));
            let _ = repo.write_sidecar(&meta, FAILED_NAME);
            return Err(e);
        }
    };
    meta.status = "finished".into();
    // The archive's own record, which includes sources found while writing (etcd).
    meta.sources = stats.manifest.sources.clone();
    meta.size = stats.bytes_written;
    meta.sha256 = stats.sha256.clone();
    meta.warnings = stats.warnings.clone();
    repo.write_sidecar(&meta, METADATA_NAME)?;
    let mut out = CreateBackupStats {
        url: store.url(&archive_key),
        metadata: meta,
        archive: stats,
        pruned: PruneStats::default(),
        services_down,
    };
    if options.retention.is_active() {
        match repo.prune(&options.retention, progress) {
            Ok(p) => out.pruned = p,
            Err(e) => progress.warn(&format!(
                "the backup finished, but retention could not remove old backups: {}",
                chain(&e)
            )),
        }
    }
    Ok(out)
}
