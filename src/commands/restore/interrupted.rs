//! Restores that a kill interrupted: finished or undone by the next action or hook, as the
//! journal says.

use std::path::Path;

use super::start_services;
use crate::commands::journal::{Journal, Phase};
use crate::commands::lock::OperationLock;
use crate::commands::trash::sweep_trash;
use crate::error::{ErrorKind, Result};

/// Finishes or undoes a restore that was killed, if the journal shows one, and says what it
/// did. Does nothing (and returns `None`) when there is no journal or another operation holds
/// the lock.
///
/// # Errors
/// When the journal cannot be read or the recovery fails (the journal is kept, so the next
/// try starts over).
pub fn recover(state_dir: &Path) -> Result<Option<String>> {
    if Journal::load(state_dir)?.is_none() && !state_dir.join("trash").exists() {
        return Ok(None);
    }
    let _lock = match OperationLock::acquire(state_dir, "recovery") {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::Busy => return Ok(None),
        Err(e) => return Err(e),
    };
    recover_locked(state_dir)
}

pub(super) fn recover_locked(state_dir: &Path) -> Result<Option<String>> {
    sweep_trash(state_dir)?;
    let Some(journal) = Journal::load(state_dir)? else {
        return Ok(None);
    };
    let paths = journal
        .paths
        .iter()
        .map(|p| p.path.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let msg = match journal.phase {
        Phase::Staging | Phase::Swapping => {
            journal.roll_back()?;
            format!(
                "a restore from {} was interrupted before it finished; it was undone: {paths} hold the data they held before it",
                journal.source
            )
        }
        Phase::DatabasesSwapped => {
            journal.roll_forward()?;
            journal.clean_up(state_dir)?;
            format!(
                "a restore from {} was interrupted after its databases were in place; it was finished: {paths} hold the restored data too",
                journal.source
            )
        }
        Phase::Swapped => {
            journal.clean_up(state_dir)?;
            format!(
                "a restore from {} was interrupted after the new data was in place; it was finished: {paths} hold the restored data",
                journal.source
            )
        }
    };
    Journal::clear(state_dir)?;
    // Services may have been stopped in any phase; starting a running one does nothing.
    start_services(&journal.services, journal.pg_ctl.as_ref())?;
    Ok(Some(msg))
}
