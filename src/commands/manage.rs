//! `remove-backup` and `prune-backups`: removing backups from a store, under the unit's
//! operation lock so they never race a backup of the same unit.

use std::path::Path;

use crate::commands::lock::OperationLock;
use crate::error::Result;
use crate::progress::Progress;
use crate::store::Store;
use crate::store::repo::{PruneStats, Repository, RetentionOptions};

/// Takes the lock in `state_dir` unless it is empty (a library caller without one).
fn lock(state_dir: &Path, what: &str) -> Result<Option<OperationLock>> {
    if state_dir.as_os_str().is_empty() {
        Ok(None)
    } else {
        OperationLock::acquire(state_dir, what).map(Some)
    }
}

/// Removes backup `id` (only what it wrote); returns the keys removed.
///
/// # Errors
/// [`crate::ErrorKind::NotFound`] when the store holds no such backup of ours;
/// [`crate::ErrorKind::Busy`] when another operation runs; when the store refuses.
pub fn remove_backup(
    store: &dyn Store,
    id: &str,
    state_dir: &Path,
    progress: &dyn Progress,
) -> Result<Vec<String>> {
    let _lock = lock(state_dir, "remove-backup")?;
    Repository::new(store).remove(id, progress)
}

/// Applies a retention policy (see [`Repository::prune`]).
///
/// # Errors
/// [`crate::ErrorKind::Busy`] when another operation runs; when the store cannot be listed
/// or refuses a deletion.
pub fn prune_backups(
    store: &dyn Store,
    options: &RetentionOptions,
    state_dir: &Path,
    progress: &dyn Progress,
) -> Result<PruneStats> {
    let _lock = lock(state_dir, "prune-backups")?;
    prune_with_wal(store, options, progress)
}

/// Applies a retention policy, then removes the archived WAL no kept base backup needs.
///
/// # Errors
/// When the store cannot be listed or refuses a deletion.
pub(crate) fn prune_with_wal(
    store: &dyn Store,
    options: &RetentionOptions,
    progress: &dyn Progress,
) -> Result<PruneStats> {
    let repo = Repository::new(store);
    #[cfg_attr(not(feature = "postgresql"), allow(unused_mut))]
    let mut stats = repo.prune(options, progress)?;
    #[cfg(feature = "postgresql")]
    {
        let mut listing = repo.list()?;
        // A dry run removed nothing: count as if it had.
        listing
            .backups
            .retain(|b| !stats.removed.iter().any(|(id, _)| *id == b.backup_id));
        let wal = crate::commands::pitr::prune_wal(store, &listing, options.dry_run)?;
        if !wal.is_empty() {
            progress.step(&format!(
                "{} {} archived WAL files no kept base backup needs",
                if options.dry_run {
                    "would remove"
                } else {
                    "removed"
                },
                wal.len()
            ));
        }
        stats.wal_files = wal.len();
    }
    Ok(stats)
}
