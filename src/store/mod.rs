//! Backup stores: where `create-backup` puts archives and `list-backups` finds them. One
//! synchronous trait; the local directory store is the embedded default.
//!
//! ```
//! use charm_backup::store::{LocalStore, Store};
//! use std::io::Write;
//!
//! let dir = tempfile::tempdir()?;
//! let store = LocalStore::open(dir.path())?;
//! let mut w = store.create("backup/x/data")?;
//! w.write_all(b"hello")?;
//! w.commit()?;
//! assert_eq!(store.list("backup/")?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod local;
pub mod repo;
#[cfg(feature = "s3")]
mod s3;

use std::io::{Read, Write};

pub use local::LocalStore;
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub use s3::{
    ListedObject, ObjectHeaders, PART_BYTES, PARTS_IN_FLIGHT, RANGE_BYTES, S3Options, S3Store,
    SINGLE_PUT_MAX, Versioning, addressable,
};

use crate::error::Result;

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key, relative to the store's base path (`backup/<id>/metadata.json`).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, if the store says.
    pub modified: Option<jiff::Timestamp>,
}

/// An object being written; it appears under its key only on [`ObjectWriter::commit`].
pub trait ObjectWriter: Write + Send {
    /// Makes the object visible under its key.
    ///
    /// # Errors
    /// When the data cannot be made durable; nothing is then visible under the key.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// A place that holds backups.
///
/// Contract: keys are `/`-separated and relative; an object is visible only once whole;
/// `list` returns every object under a prefix, sorted by key.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `local` or `s3`.
    fn kind(&self) -> &'static str;
    /// The directory or bucket name, for people.
    fn name(&self) -> String;
    /// The base path of keys inside it, for people (`/backup/` style).
    fn base_path(&self) -> String;
    /// A location people can use for `key` (a path or URL).
    fn url(&self, key: &str) -> String;
    /// Starts writing `key`.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>>;
    /// Opens `key` for reading from its start. A store reached over the network resumes a
    /// dropped read where it stopped (a bounded number of times) instead of failing it.
    ///
    /// # Errors
    /// [`crate::ErrorKind::NotFound`] when absent.
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>>;
    /// Every object under `prefix`, sorted by key.
    ///
    /// # Errors
    /// When the store cannot be listed.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// The local file holding `key`, for stores that are local directories.
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        let _ = key;
        None
    }

    /// Aborts multipart uploads to `key` that were started and never finished (a backup whose
    /// server went away before its upload could be aborted). Returns how many were aborted.
    /// Stores without multipart uploads have none.
    ///
    /// # Errors
    /// When the store cannot be asked.
    fn abort_incomplete(&self, key: &str) -> Result<usize> {
        let _ = key;
        Ok(0)
    }

    /// Removes `key` (absent is fine).
    ///
    /// # Errors
    /// When the store refuses.
    fn delete(&self, key: &str) -> Result<()>;

    /// Writes a small object in one call.
    ///
    /// # Errors
    /// As [`Store::create`] and [`ObjectWriter::commit`].
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let mut w = self.create(key)?;
        w.write_all(data).map_err(|e| {
            crate::Error::new(crate::ErrorKind::Other, format!("cannot write {key}")).with_source(e)
        })?;
        w.commit()
    }
}
