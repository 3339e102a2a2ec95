//! `create-backup`: archive the configured paths into a backup store. The repository's marker
//! goes first and the metadata sidecar last, so a backup without one is visibly incomplete;
//! retention runs after a backup that finished.

use crate::archive::ArchiveStats;
use crate::commands::lock::OperationLock;
use crate::commands::new_backup::{NewBackup, Writer};
use crate::commands::snapshot::{
    SnapshotOptions, manifest_for, with_services_stopped, write_archive,
};
use crate::error::{Result, chain};
use crate::progress::Progress;
use crate::store::Store;
use crate::store::repo::{BackupMetadata, OpenUploads, PruneStats, Repository, RetentionOptions};

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
    /// The archive's file, when the store is a local directory.
    pub local_path: Option<std::path::PathBuf>,
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
    #[cfg(feature = "postgresql")]
    if let Some(pg) = &options.snapshot.postgresql {
        // Bad credentials fail here, before a backup id is taken.
        pg.connect()?;
    }
    let writer = Writer {
        what: "create-backup",
        state_dir: &options.snapshot.scratch_dir,
        lock_wait: options.lock_wait,
        application: &options.name_prefix,
        model: &options.model,
        model_uuid: &options.model_uuid,
        made_by: &options.made_by,
        take_over_store: options.take_over_store,
    };
    let mut new = NewBackup::begin(store, &writer, progress)?;
    // Held through retention too.
    let _lock = new.take_lock();
    let manifest = manifest_for(&options.snapshot);
    let m = &mut new.meta;
    m.kind = options.kind.clone();
    m.compression = options.snapshot.compression.name().into();
    m.archive = Repository::archive_key(&m.id, &options.name_prefix, &options.snapshot.extension());
    m.sources = manifest.sources.clone();
    m.unit = options.snapshot.unit.clone();
    m.tool = manifest.tool.clone();
    m.notes = options.notes.clone();
    m.origin = options.origin.clone();
    m.encrypted_to = options
        .snapshot
        .recipients
        .as_ref()
        .map(crate::archive::Recipients::keys)
        .unwrap_or_default();
    let archive_key = m.archive.clone();
    let (meta, (stats, services_down)) = new.write(
        progress,
        |w| {
            let ((w, stats), down) =
                with_services_stopped(&options.snapshot, "create-backup", progress, || {
                    write_archive(w, &options.snapshot, progress)
                })?;
            Ok((w, (stats, down)))
        },
        |meta, (stats, _)| {
            // The archive's own record, which includes sources found while writing (etcd).
            meta.sources = stats.manifest.sources.clone();
            meta.size = stats.bytes_written;
            meta.sha256 = stats.sha256.clone();
            meta.warnings = stats.warnings.clone();
        },
    )?;
    let mut out = CreateBackupStats {
        url: store.url(&archive_key),
        local_path: store.local_path(&archive_key),
        metadata: meta,
        archive: stats,
        pruned: PruneStats::default(),
        services_down,
    };
    if options.retention.is_active() {
        match crate::commands::manage::prune_with_wal(store, &options.retention, progress) {
            Ok(p) => out.pruned = p,
            Err(e) => progress.warn(&format!(
                "the backup finished, but retention could not remove old backups: {}",
                chain(&e)
            )),
        }
    }
    Ok(out)
}
