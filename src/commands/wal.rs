//! `wal-push` and `wal-fetch`: PostgreSQL's `archive_command` and `restore_command`, one file
//! each call, between the server's `pg_wal` and the store's WAL archive.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::archive::{Identities, Recipients};
use crate::error::{Error, ErrorKind, Result};
use crate::source::postgres::wal::{
    PushOutcome, WalArchive, WalFile, system_id_of_data_dir, system_id_of_segment,
};
use crate::store::Store;

/// The largest file pushed: PostgreSQL's largest WAL segment size (1 GiB). A segment is held
/// in memory while it is compressed, so memory stays bounded by it.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// How a push is made.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WalPushOptions {
    /// Encrypt to these age recipients.
    pub recipients: Option<Recipients>,
    /// Compression threads (0: every core).
    pub threads: usize,
    /// The data directory (for the system identifier of history files); `None`: the current
    /// directory, where PostgreSQL runs `archive_command`.
    pub data_dir: Option<PathBuf>,
}

/// How a fetch is made.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WalFetchOptions {
    /// Identities that decrypt encrypted WAL.
    pub identities: Option<Identities>,
    /// The data directory whose cluster's WAL is fetched; `None`: the current directory,
    /// where PostgreSQL runs `restore_command`.
    pub data_dir: Option<PathBuf>,
    /// Tries for a store that fails for another reason than an absent file, before giving up.
    pub tries: u32,
    /// Wait after the first failed try (doubled after each).
    pub backoff: Duration,
}

impl WalFetchOptions {
    /// Three tries, one then two seconds apart.
    pub fn new() -> Self {
        WalFetchOptions {
            tries: 3,
            backoff: Duration::from_secs(1),
            ..Default::default()
        }
    }
}

fn data_dir(d: &Option<PathBuf>) -> PathBuf {
    d.clone().unwrap_or_else(|| PathBuf::from("."))
}

/// Archives the file at `path` (PostgreSQL's `%p`) as `name` (`%f`). Returns once the store
/// holds it durably, or found it there already with the same content.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for a name that is not a WAL file's or a file too large;
/// [`ErrorKind::AlreadyExists`] when other content is archived under the name; the store's
/// error when it is unreachable (PostgreSQL keeps the file and tries again).
pub fn wal_push(
    store: &dyn Store,
    path: &Path,
    name: &str,
    options: &WalPushOptions,
) -> Result<PushOutcome> {
    let file = WalFile::parse(name)?;
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io("cannot read", path, e))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(Error::invalid(format!(
            "{} is {len} bytes, more than a WAL file can be",
            path.display()
        )));
    }
    let data = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let system_id = match file {
        WalFile::Segment { .. } | WalFile::Partial { .. } => system_id_of_segment(&data)?,
        _ => system_id_of_data_dir(&data_dir(&options.data_dir))?,
    };
    WalArchive::new(store, system_id).push(
        &file,
        &data,
        options.recipients.as_ref(),
        options.threads,
    )
}

/// What a fetch found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The file was written.
    Written,
    /// The store answered that it does not hold the file.
    NotArchived,
}

/// Fetches `name` (PostgreSQL's `%f`) into `dest` (`%p`), trying again when the store fails
/// for another reason than an absent file.
///
/// # Errors
/// When every try failed (the store unreachable, a damaged copy, no identity for encrypted
/// WAL): PostgreSQL must then stop recovery rather than take the file for the end of WAL.
pub fn wal_fetch(
    store: &dyn Store,
    name: &str,
    dest: &Path,
    options: &WalFetchOptions,
) -> Result<Fetched> {
    let file = WalFile::parse(name)?;
    let system_id = system_id_of_data_dir(&data_dir(&options.data_dir))?;
    let archive = WalArchive::new(store, system_id);
    let mut wait = options.backoff;
    let mut tries = 0;
    loop {
        tries += 1;
        match archive.fetch(&file, options.identities.as_ref(), dest) {
            Ok(true) => return Ok(Fetched::Written),
            Ok(false) => return Ok(Fetched::NotArchived),
            // No identity, or no matching one: trying again cannot help.
            Err(e) if e.kind() == ErrorKind::InvalidInput => return Err(e),
            Err(e) if tries >= options.tries.max(1) => {
                return Err(e.with_context(format!("after {tries} tries")));
            }
            Err(_) => {
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
    }
}
