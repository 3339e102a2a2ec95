//! A backup being written into a store, shared by `create-backup` and `import-backup`: the
//! unit's lock, the store probed and claimed, a free id, then the marker first, the archive,
//! and the metadata (or `failed.json`) last.

use std::path::Path;
use std::time::Duration;

use crate::archive::host_name;
use crate::commands::lock::OperationLock;
use crate::error::{Result, chain};
use crate::progress::Progress;
use crate::store::repo::{
    BackupMetadata, FAILED_NAME, METADATA_NAME, OpenUploads, Owner, Repository, STARTED_NAME,
    backup_id, format_time,
};
use crate::store::{ObjectWriter, Store};

/// Who writes a backup, and how long it may wait for the unit.
#[derive(Debug, Clone)]
pub(crate) struct Writer<'a> {
    /// The operation, for the lock and the log (`create-backup`).
    pub what: &'a str,
    /// The unit's state directory (empty: no lock, no record of open uploads).
    pub state_dir: &'a Path,
    /// How long to wait for another operation.
    pub lock_wait: Duration,
    /// The application (the store path's owner, and the archive name's prefix).
    pub application: &'a str,
    /// The model's name.
    pub model: &'a str,
    /// The model's UUID.
    pub model_uuid: &'a str,
    /// The unit writing (`app/N`): its number goes in the id.
    pub made_by: &'a str,
    /// Take the store path over from another owner.
    pub take_over_store: bool,
}

/// A backup with its id taken and the store ready; [`NewBackup::write`] stores it.
pub(crate) struct NewBackup<'a> {
    store: &'a dyn Store,
    open: Option<OpenUploads>,
    /// Its metadata so far: id, times, who; the caller adds what it holds.
    pub meta: BackupMetadata,
    lock: Option<OperationLock>,
}

impl<'a> NewBackup<'a> {
    /// Takes the unit's lock, checks that `store` takes writes and is this application's,
    /// sweeps uploads an earlier run left open, and takes a free id.
    ///
    /// # Errors
    /// When another operation holds the unit, the store cannot be written or belongs to
    /// another application.
    pub fn begin(store: &'a dyn Store, w: &Writer<'_>, progress: &dyn Progress) -> Result<Self> {
        let state = w.state_dir;
        let lock = if state.as_os_str().is_empty() {
            None
        } else {
            Some(OperationLock::acquire_waiting(
                state,
                w.what,
                w.lock_wait,
                progress,
            )?)
        };
        let repo = Repository::new(store);
        progress.step(&format!("checking the backup store {}", store.name()));
        repo.probe()?;
        Owner::claim(
            store,
            &Owner {
                model_uuid: w.model_uuid.to_string(),
                model: w.model.to_string(),
                application: w.application.to_string(),
                ..Default::default()
            },
            w.take_over_store,
            progress,
        )?;
        let open = (!state.as_os_str().is_empty()).then(|| OpenUploads::in_dir(state));
        if let Some(o) = &open {
            let _ = o.sweep(store, progress);
        }
        let mut started = jiff::Timestamp::now();
        let mut id = backup_id(started, w.made_by);
        if !store.list(&Repository::dir(&id))?.is_empty() {
            // Ids have one-second resolution: wait for the next one.
            std::thread::sleep(Duration::from_millis(
                1000 - (started.subsec_millisecond().max(0) as u64),
            ));
            started = jiff::Timestamp::now();
            id = backup_id(started, w.made_by);
        }
        Ok(NewBackup {
            store,
            open,
            meta: BackupMetadata {
                id,
                status: "in progress".into(),
                started: format_time(started),
                made_by: w.made_by.to_string(),
                application: w.application.to_string(),
                model: w.model.to_string(),
                model_uuid: w.model_uuid.to_string(),
                host: host_name(),
                ..Default::default()
            },
            lock,
        })
    }

    /// The unit's lock, for the caller to hold past [`NewBackup::write`] (through retention).
    pub fn take_lock(&mut self) -> Option<OperationLock> {
        self.lock.take()
    }

    /// Stores the backup as `self.meta` describes it (its `archive` key set): the marker,
    /// then the archive `fill` writes (returning the writer, the stored bytes' sha256 and
    /// size, and anything else), then the metadata, which `finish` completes. A failure is
    /// recorded in `failed.json` when the store still takes it.
    ///
    /// # Errors
    /// As `fill`, or when the store cannot be written.
    pub fn write<T>(
        mut self,
        progress: &dyn Progress,
        fill: impl FnOnce(Box<dyn ObjectWriter>) -> Result<(Box<dyn ObjectWriter>, T)>,
        finish: impl FnOnce(&mut BackupMetadata, &T),
    ) -> Result<(BackupMetadata, T)> {
        let store = self.store;
        let repo = Repository::new(store);
        let key = self.meta.archive.clone();
        progress.step(&format!("writing backup {}", self.meta.id));
        // The marker first: from here on the backup is ours to list, sweep and remove.
        repo.write_sidecar(&self.meta, STARTED_NAME)?;
        if let Some(o) = &self.open {
            o.add(store, &key)?;
        }
        let result = store.create(&key).and_then(|w| {
            let (mut w, t) = fill(w)?;
            std::io::Write::flush(&mut w).map_err(|e| {
                crate::Error::new(crate::ErrorKind::Other, "cannot write the backup").with_source(e)
            })?;
            w.commit()?;
            Ok(t)
        });
        self.meta.finished = format_time(jiff::Timestamp::now());
        if let Some(o) = &self.open {
            // Finished, or aborted when the writer was dropped: unless the store is
            // unreachable, nothing stays open. Checked, since the abort on drop cannot report.
            let settled = result.is_ok() || store.abort_incomplete(&key).is_ok();
            if settled {
                o.remove(store, &key)?;
            }
        }
        let t = match result {
            Ok(t) => t,
            Err(e) => {
                self.meta.status = format!("failed: {}", chain(&e));
                let _ = repo.write_sidecar(&self.meta, FAILED_NAME);
                return Err(e);
            }
        };
        self.meta.status = "finished".into();
        finish(&mut self.meta, &t);
        repo.write_sidecar(&self.meta, METADATA_NAME)?;
        Ok((self.meta, t))
    }
}
