//! The WAL archive in a store: one object per file, under
//! `wal/<system identifier>/<timeline>/<name>-<sha256 of its content>.gz[.age]`.
//!
//! The content's digest in the key (as pgBackRest keeps a SHA-1 in its names) makes a push
//! idempotent with one listing and no read: the same file pushed again finds its own key, a
//! different file under the same name finds a key with another digest and is refused, so
//! nothing archived is ever overwritten. A fetch lists the same prefix and checks the bytes it
//! writes against the digest.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::index::Ancestry;
use super::names::WalFile;
use crate::archive::{AGE_SUFFIX, Identities, Recipients, hex, open_blob, seal_blob};
use crate::error::{Error, ErrorKind, Result};
use crate::store::Store;

/// Where WAL is kept in a store.
pub const WAL_PREFIX: &str = "wal/";

/// One archived file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedWal {
    /// What it is.
    pub file: WalFile,
    /// SHA-256 of its content (as PostgreSQL wrote it).
    pub sha256: String,
    /// Its key in the store.
    pub key: String,
    /// Stored size.
    pub size: u64,
    /// When the store received it.
    pub modified: Option<jiff::Timestamp>,
    /// Whether it is encrypted with age.
    pub encrypted: bool,
}

impl ArchivedWal {
    /// Parses a key under a system's prefix (`<timeline>/<name>-<sha>.gz[.age]`); `None` for
    /// objects that are not archived WAL.
    fn from_meta(meta: &crate::store::ObjectMeta, rel: &str) -> Option<ArchivedWal> {
        let (_, file_part) = rel.split_once('/')?;
        let (stem, encrypted) = match file_part.strip_suffix(AGE_SUFFIX) {
            Some(s) => (s, true),
            None => (file_part, false),
        };
        let stem = stem.strip_suffix(".gz")?;
        let (name, sha256) = stem.rsplit_once('-')?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(ArchivedWal {
            file: WalFile::parse(name).ok()?,
            sha256: sha256.to_string(),
            key: meta.key.clone(),
            size: meta.size,
            modified: meta.modified,
            encrypted,
        })
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored under this key.
    Stored(String),
    /// The same content was archived already, under this key.
    AlreadyArchived(String),
}

/// The archive of one cluster (one system identifier) in a store.
#[derive(Debug, Clone, Copy)]
pub struct WalArchive<'a> {
    store: &'a dyn Store,
    system_id: u64,
}

impl<'a> WalArchive<'a> {
    /// The archive of the cluster `system_id` in `store`.
    pub fn new(store: &'a dyn Store, system_id: u64) -> Self {
        WalArchive { store, system_id }
    }

    /// The cluster's system identifier.
    pub fn system_id(&self) -> u64 {
        self.system_id
    }

    /// The system identifiers that have WAL in `store`.
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub fn systems(store: &dyn Store) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = store
            .list(WAL_PREFIX)?
            .iter()
            .filter_map(|m| {
                m.key
                    .strip_prefix(WAL_PREFIX)?
                    .split('/')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        ids.dedup();
        Ok(ids)
    }

    fn prefix(&self) -> String {
        format!("{WAL_PREFIX}{}/", self.system_id)
    }

    fn name_prefix(&self, file: &WalFile) -> String {
        format!("{}{:08X}/{file}-", self.prefix(), file.timeline())
    }

    /// Every archived file of the cluster, sorted by key (timeline, then name).
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub fn list(&self) -> Result<Vec<ArchivedWal>> {
        let prefix = self.prefix();
        Ok(self
            .store
            .list(&prefix)?
            .iter()
            .filter_map(|m| ArchivedWal::from_meta(m, m.key.strip_prefix(&prefix)?))
            .collect())
    }

    /// The archived copies of `file` (normally none or one), with one listing.
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub fn find(&self, file: &WalFile) -> Result<Vec<ArchivedWal>> {
        let prefix = self.prefix();
        let name = file.to_string();
        Ok(self
            .store
            .list(&self.name_prefix(file))?
            .iter()
            .filter_map(|m| ArchivedWal::from_meta(m, m.key.strip_prefix(&prefix)?))
            .filter(|w| w.file.to_string() == name)
            .collect())
    }

    /// Archives `data` as `file`: compressed, encrypted to `recipients` when given, on
    /// `threads` cores. Returns once the store holds it durably; content archived already
    /// under the name is not written again.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when `file` was archived with other content (nothing is
    /// overwritten); the store's error when it cannot be listed or written.
    pub fn push(
        &self,
        file: &WalFile,
        data: &[u8],
        recipients: Option<&Recipients>,
        threads: usize,
    ) -> Result<PushOutcome> {
        let sha256 = hex(&Sha256::digest(data));
        let existing = self.find(file)?;
        if let Some(same) = existing.iter().find(|w| w.sha256 == sha256) {
            return Ok(PushOutcome::AlreadyArchived(same.key.clone()));
        }
        if let Some(other) = existing.first() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{file} is archived already with other content ({}, sha256 {}; this one's is \
                     {sha256}): refusing to overwrite it. Two clusters with the same system \
                     identifier archive into this store, or this server's WAL diverged from \
                     what it archived; archive into another store or remove the stale copy",
                    other.key, other.sha256
                ),
            ));
        }
        let key = format!(
            "{}{sha256}.gz{}",
            self.name_prefix(file),
            if recipients.is_some() { AGE_SUFFIX } else { "" }
        );
        if let WalFile::History { timeline } = file {
            // Its ancestry first, in plaintext: the window is listed without the key.
            let text = String::from_utf8_lossy(data);
            let ancestry = Ancestry::parse(*timeline, &text)?;
            let json = serde_json::to_vec(&ancestry).map_err(|e| {
                Error::new(ErrorKind::Other, "cannot write the ancestry").with_source(e)
            })?;
            self.store
                .put(&Ancestry::key(self.system_id, *timeline), &json)?;
        }
        let w = self.store.create(&key)?;
        let w = seal_blob(data, w, recipients, threads).map_err(|e| {
            Error::new(ErrorKind::Connect, format!("cannot write {key}")).with_source(e)
        })?;
        w.commit()?;
        Ok(PushOutcome::Stored(key))
    }

    /// Fetches `file` into `dest` (written beside it, then renamed in, so `dest` is whole or
    /// absent), decrypted with `identities` when it is encrypted; its content is checked
    /// against the digest it was archived with. Returns `false` when the store does not hold
    /// it.
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] when the content does not match; [`ErrorKind::InvalidInput`]
    /// when it is encrypted and no identity opens it; the store's errors otherwise.
    pub fn fetch(
        &self,
        file: &WalFile,
        identities: Option<&Identities>,
        dest: &Path,
    ) -> Result<bool> {
        let found = self.find(file)?;
        let Some(w) = found.first() else {
            return Ok(false);
        };
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".wal-fetch-")
            .tempfile_in(dir)
            .map_err(|e| Error::io("cannot create a file", dir, e))?;
        let mut plain = open_blob(self.store.open(&w.key)?, identities)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = plain.read(&mut buf).map_err(|e| {
                Error::new(ErrorKind::Integrity, format!("cannot read {}", w.key)).with_source(e)
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| Error::io("cannot write", dest, e))?;
        }
        let got = hex(&hasher.finalize());
        if got != w.sha256 {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "{} holds content with sha256 {got}, not the {} it was archived with: the \
                     archived copy is damaged",
                    w.key, w.sha256
                ),
            ));
        }
        // No fsync: PostgreSQL reads the file at once and fetches it again after a crash.
        tmp.persist(dest)
            .map_err(|e| Error::io("cannot write", dest, e.error))?;
        Ok(true)
    }

    /// The ancestry of `timeline`, when its history file was archived.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn ancestry(&self, timeline: u32) -> Result<Option<Ancestry>> {
        let key = Ancestry::key(self.system_id, timeline);
        let mut r = match self.store.open(&key) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).map_err(|e| {
            Error::new(ErrorKind::Connect, format!("cannot read {key}")).with_source(e)
        })?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::new(ErrorKind::Integrity, format!("{key} is not an ancestry")).with_source(e)
        })
    }

    /// Removes archived files.
    ///
    /// # Errors
    /// When the store refuses.
    pub fn remove(&self, files: &[ArchivedWal]) -> Result<()> {
        files.iter().try_for_each(|w| self.store.delete(&w.key))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::LocalStore;

    #[test]
    fn pushes_are_idempotent_refuse_other_content_and_fetch_checks_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("store")).unwrap();
        let a = WalArchive::new(&store, 7);
        let seg = WalFile::parse("000000010000000000000003").unwrap();
        let data = vec![5u8; 1 << 20];
        let PushOutcome::Stored(key) = a.push(&seg, &data, None, 1).unwrap() else {
            panic!("not stored")
        };
        assert!(key.starts_with("wal/7/00000001/000000010000000000000003-"));
        assert_eq!(
            a.push(&seg, &data, None, 1).unwrap(),
            PushOutcome::AlreadyArchived(key.clone())
        );
        let e = a.push(&seg, &[6u8; 100], None, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert_eq!(a.list().unwrap().len(), 1);

        let out = dir.path().join("RECOVERYXLOG");
        assert!(a.fetch(&seg, None, &out).unwrap());
        assert_eq!(std::fs::read(&out).unwrap(), data);
        let missing = WalFile::parse("000000010000000000000004").unwrap();
        assert!(!a.fetch(&missing, None, &dir.path().join("x")).unwrap());
        assert!(!dir.path().join("x").exists());

        // Stored bytes that decode to other content are refused, and nothing is written.
        let other = seal_blob(&[9u8; 10], Vec::new(), None, 1).unwrap();
        std::fs::write(store.local_path(&key).unwrap(), other).unwrap();
        let e = a.fetch(&seg, None, &dir.path().join("y")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity);
        assert!(!dir.path().join("y").exists());
        assert_eq!(WalArchive::systems(&store).unwrap(), vec![7]);
    }
}
