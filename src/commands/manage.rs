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
    Repository::new(store).prune(options, progress)
}
