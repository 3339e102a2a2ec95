//! The backup repository: the one place that knows how a store holds backups.
//!
//! Layout, under the store's base path:
//! - `charm-backup.owner.json`: who writes here (see [`Owner`]);
//! - `backup/<id>/started.json`: written first, removed last; names the archive;
//! - `backup/<id>/<app>-backup.tar.gz` (or `.tar.zst`): the archive;
//! - `backup/<id>/metadata.json` (finished) or `failed.json` (failed), written last.
//!
//! Only folders holding one of those sidecars, written by this crate for that id, are backups:
//! anything else under the same path (a pgBackRest repository, stray objects) is never listed,
//! verified, pruned or removed.
//!
//! ```
//! use charm_backup::store::{LocalStore, repo::Repository};
//!
//! let dir = tempfile::tempdir()?;
//! let store = LocalStore::open(dir.path())?;
//! let repo = Repository::new(&store);
//! assert!(repo.list()?.backups.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod listing;
mod metadata;
mod owner;
mod retention;
mod uploads;

use std::io::Read;

pub use listing::{BackupRow, Listing};
pub use metadata::{
    BackupMetadata, FAILED_NAME, METADATA_NAME, STARTED_NAME, TOOL_NAME, backup_id, check_id,
    format_time, parse_time,
};
pub use owner::{OWNER_NAME, Owner};
pub use retention::{PruneStats, RetentionOptions};
pub(crate) use uploads::OpenUploads;

use crate::archive::{ArchiveSource, FileSource};
use crate::error::{Error, ErrorKind, Result, chain};
use crate::store::Store;

/// Key prefix of all backups in a store.
pub const BACKUP_PREFIX: &str = "backup/";

/// Sidecars larger than this are not ours.
const MAX_SIDECAR: u64 = 4 << 20;

/// A store seen as a set of backups.
#[derive(Debug, Clone, Copy)]
pub struct Repository<'a> {
    store: &'a dyn Store,
}

/// One backup found in the store: its metadata (from the newest sidecar it has) and where it
/// lies.
#[derive(Debug, Clone)]
pub struct Backup {
    /// What its sidecar records.
    pub metadata: BackupMetadata,
    /// Which sidecar that was ([`METADATA_NAME`], [`FAILED_NAME`] or [`STARTED_NAME`]).
    pub sidecar: &'static str,
    /// Every object of its folder, with sizes.
    pub objects: Vec<crate::store::ObjectMeta>,
}

impl<'a> Repository<'a> {
    /// The repository in `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Repository { store }
    }

    /// The store.
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// The folder of backup `id`.
    pub fn dir(id: &str) -> String {
        format!("{BACKUP_PREFIX}{id}/")
    }

    /// The key of sidecar `name` of backup `id`.
    pub fn sidecar_key(id: &str, name: &str) -> String {
        format!("{BACKUP_PREFIX}{id}/{name}")
    }

    /// The key of the archive of backup `id` of application `app`.
    pub fn archive_key(id: &str, app: &str, extension: &str) -> String {
        format!("{BACKUP_PREFIX}{id}/{app}-backup.{extension}")
    }

    /// Writes and removes a small object where backups go, so bad credentials or a read-only
    /// store fail at once.
    ///
    /// # Errors
    /// Whatever the store reports, with a hint.
    pub fn probe(&self) -> Result<()> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let key = format!("{BACKUP_PREFIX}.probe-{}-{nanos}", std::process::id());
        self.store
            .put(&key, b"probe")
            .and_then(|()| self.store.delete(&key))
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "the backup store {} cannot be written: {}",
                        self.store.name(),
                        chain(&e)
                    ),
                )
            })
    }

    /// Reads a small object whole.
    pub(crate) fn read_small(&self, key: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.store
            .open(key)?
            .take(MAX_SIDECAR)
            .read_to_end(&mut buf)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Connect,
                    format!("cannot read {}", self.store.url(key)),
                )
                .with_source(e)
            })?;
        Ok(buf)
    }

    /// Writes sidecar `name` of `meta`'s backup.
    ///
    /// # Errors
    /// When the store refuses.
    pub fn write_sidecar(&self, meta: &BackupMetadata, name: &str) -> Result<()> {
        self.store
            .put(&Self::sidecar_key(&meta.id, name), &meta.to_json()?)
    }

    /// Backup `id`, from its folder's one listing.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the store holds no backup of ours with that id;
    /// [`ErrorKind::Integrity`] when its sidecar cannot be read as ours.
    pub fn find(&self, id: &str) -> Result<Backup> {
        check_id(id)?;
        let objects = self.store.list(&Self::dir(id))?;
        match self.classify(id, objects) {
            Some(Ok(b)) => Ok(b),
            Some(Err(why)) => Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "backup {id} is damaged: {why}; remove it with remove-backup and use another"
                ),
            )),
            None => Err(self.not_found(id)),
        }
    }

    fn not_found(&self, id: &str) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no backup {id} in {}{}: run list-backups to see the ids",
                self.store.name(),
                self.store.base_path().trim_end_matches('/')
            ),
        )
    }

    /// What folder `id`, holding `objects`, is: `None` when nothing in it is ours; a backup,
    /// from its newest sidecar; or, when that sidecar cannot be read though the folder's
    /// marker says the backup is ours, an [`ErrorKind::Integrity`] error saying only why.
    pub(crate) fn classify(
        &self,
        id: &str,
        objects: Vec<crate::store::ObjectMeta>,
    ) -> Option<Result<Backup>> {
        let has = |name: &str| {
            let key = Self::sidecar_key(id, name);
            objects.iter().any(|o| o.key == key)
        };
        let read = |name: &str| -> Result<BackupMetadata> {
            let bytes = self.read_small(&Self::sidecar_key(id, name))?;
            BackupMetadata::parse(id, &bytes)
        };
        // The marker is read only when needed: one request per backup in the common case.
        let marker = || {
            if has(STARTED_NAME) {
                read(STARTED_NAME).ok()
            } else {
                None
            }
        };
        for sidecar in [METADATA_NAME, FAILED_NAME] {
            if !has(sidecar) {
                continue;
            }
            match read(sidecar) {
                Ok(metadata) => {
                    return Some(Ok(Backup {
                        metadata,
                        sidecar,
                        objects,
                    }));
                }
                // Ours (the marker says so), but unreadable; else not ours.
                Err(e) => {
                    if marker().is_some() {
                        return Some(Err(Error::new(ErrorKind::Integrity, chain(&e))));
                    }
                }
            }
        }
        marker().map(|metadata| {
            Ok(Backup {
                metadata,
                sidecar: STARTED_NAME,
                objects,
            })
        })
    }

    /// Backup `id`, which must be finished and whole (its archive present with the size its
    /// metadata records).
    ///
    /// # Errors
    /// As [`Repository::find`]; [`ErrorKind::InvalidInput`] for a backup that did not finish;
    /// [`ErrorKind::Integrity`] for one whose archive is missing or of the wrong size.
    pub fn finished(&self, id: &str) -> Result<BackupMetadata> {
        let b = self.find(id)?;
        if b.sidecar != METADATA_NAME || !b.metadata.is_finished() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "backup {id} is not finished (status: {}): pick another with list-backups",
                    b.metadata.status
                ),
            ));
        }
        if let Some(why) = listing::damage(&b.metadata, &b.objects) {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("backup {id} is damaged: {why}; use another backup"),
            ));
        }
        Ok(b.metadata)
    }

    /// The newest finished, whole backup.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when there is none.
    pub fn newest_finished(&self) -> Result<BackupMetadata> {
        let listing = self.list()?;
        let row = listing
            .backups
            .iter()
            .rev()
            .find(|r| r.is_finished())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "{}{} holds no finished backup: run create-backup first",
                        self.store.name(),
                        self.store.base_path().trim_end_matches('/')
                    ),
                )
            })?;
        self.finished(&row.backup_id)
    }

    /// The archive of `meta`'s backup, to read: the local file where the store is a local
    /// directory, else a stream from the store.
    ///
    /// # Errors
    /// When the local file cannot be opened.
    pub fn archive(&self, meta: &BackupMetadata) -> Result<Box<dyn ArchiveSource + 'a>> {
        if !meta.archive.starts_with(&Self::dir(&meta.id)) {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "backup {} names an archive outside its folder ({:?}): refusing it",
                    meta.id, meta.archive
                ),
            ));
        }
        match self.store.local_path(&meta.archive) {
            Some(p) => Ok(Box::new(FileSource::open(&p)?)),
            None => Ok(Box::new(StoredArchive {
                store: self.store,
                key: meta.archive.clone(),
            })),
        }
    }

    /// Removes backup `id`: only the objects it wrote (its sidecars and the archive they
    /// name), the finished sidecar first, so a half-removed backup is never listed as
    /// finished, and its marker last, so it stays recognisable until it is gone. Returns the
    /// keys removed.
    ///
    /// # Errors
    /// As [`Repository::find`]; when the store refuses a deletion.
    pub fn remove(
        &self,
        id: &str,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Vec<String>> {
        check_id(id)?;
        let objects = self.store.list(&Self::dir(id))?;
        let b = match self.classify(id, objects.clone()) {
            Some(Ok(b)) => b,
            // Damaged metadata in a folder our marker vouches for: its sidecars can still go.
            Some(Err(_)) => Backup {
                metadata: BackupMetadata::default(),
                sidecar: METADATA_NAME,
                objects,
            },
            None => return Err(self.not_found(id)),
        };
        let mut keys: Vec<String> = Vec::new();
        let dir = Self::dir(id);
        for name in [METADATA_NAME, FAILED_NAME] {
            keys.push(Self::sidecar_key(id, name));
        }
        // The archives its sidecars name.
        for name in [METADATA_NAME, FAILED_NAME, STARTED_NAME] {
            let key = Self::sidecar_key(id, name);
            if !b.objects.iter().any(|o| o.key == key) {
                continue;
            }
            if let Ok(m) = self
                .read_small(&key)
                .and_then(|bytes| BackupMetadata::parse(id, &bytes))
                && m.archive.starts_with(&dir)
                && !keys.contains(&m.archive)
            {
                keys.push(m.archive);
            }
        }
        keys.push(Self::sidecar_key(id, STARTED_NAME));
        let present: Vec<String> = keys
            .into_iter()
            .filter(|k| b.objects.iter().any(|o| o.key == *k))
            .collect();
        for k in &present {
            self.store.delete(k)?;
            progress.step(&format!("removed {}", self.store.url(k)));
        }
        Ok(present)
    }
}

/// An archive read as a stream from a store.
struct StoredArchive<'a> {
    store: &'a dyn Store,
    key: String,
}

impl ArchiveSource for StoredArchive<'_> {
    fn name(&self) -> String {
        self.store.url(&self.key)
    }
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        self.store.open(&self.key)
    }
}
