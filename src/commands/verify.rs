//! `verify-backup`: read a stored backup whole, as a restore would, without writing anything to
//! the unit's data: its sha256 against the metadata, every entry against the restore's rules,
//! the manifest, each PostgreSQL dump through `pg_restore --list` and an etcd snapshot's own
//! checksum.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::archive::{
    ArchiveInfo, HashingReader, Identities, Limits, SideSink, VerifyOptions, WithIdentities,
    verify_source,
};
use crate::error::{Error, ErrorKind, Result, chain};
use crate::progress::Progress;
#[cfg(feature = "etcd")]
use crate::source::etcd;
use crate::source::postgres;
use crate::store::Store;
use crate::store::repo::{BackupMetadata, Repository};

/// What to verify.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyBackupOptions {
    /// The backup (default: the newest finished one).
    pub backup_id: Option<String>,
    /// The limits a restore applies.
    pub limits: Limits,
    /// Where `pg_restore` is, when not Debian's for the dump's server version.
    pub pg_bin_dir: Option<PathBuf>,
    /// The identities that decrypt an encrypted backup. Without them an encrypted backup is
    /// checked as stored (its sha256 and size) but its entries cannot be read.
    pub identities: Option<Identities>,
}

/// What verification read.
#[derive(Debug, Clone, Default)]
pub struct VerifyBackupStats {
    /// The backup's metadata.
    pub metadata: BackupMetadata,
    /// The archive as read.
    pub archive: ArchiveInfo,
    /// PostgreSQL dumps read back.
    pub dumps: usize,
    /// Whether an etcd snapshot was checked.
    pub etcd_snapshot: bool,
    /// Whether only the stored (encrypted) bytes were checked, for want of an identity.
    pub ciphertext_only: bool,
    /// How long it took.
    pub elapsed: Duration,
}

/// Checks sources' own data as it streams past.
struct Checks {
    pg_restore: PathBuf,
    dumps: usize,
    etcd: bool,
}

impl SideSink for Checks {
    fn entry(&mut self, name: &Path, data: &mut dyn std::io::Read) -> Result<bool> {
        #[cfg(feature = "etcd")]
        if name == Path::new(etcd::SNAPSHOT_ENTRY.trim_start_matches(".charm-backup/")) {
            etcd::check_snapshot(data)?;
            self.etcd = true;
            return Ok(true);
        }
        if postgres::verify::is_dump(name) {
            postgres::verify::check_dump(&self.pg_restore, name, data)?;
            self.dumps += 1;
            return Ok(true);
        }
        Ok(false)
    }
}

/// What [`check_archive`] read.
#[derive(Debug, Clone, Default)]
pub struct CheckedArchive {
    /// The archive as read.
    pub archive: ArchiveInfo,
    /// PostgreSQL dumps read back.
    pub dumps: usize,
    /// Whether an etcd snapshot was checked.
    pub etcd_snapshot: bool,
}

/// Reads the archive in `source` whole, as a restore would, writing nothing: every entry
/// against the restore's rules and `limits`, the manifest, each PostgreSQL dump through
/// `pg_restore --list` (of the server version `sources` record) and an etcd snapshot's own
/// checksum; its sha256 against `expected_sha256` when given.
///
/// # Errors
/// [`ErrorKind::Integrity`] saying what is wrong, or [`ErrorKind::Connect`] when a stream
/// from a store breaks.
pub fn check_archive(
    source: &dyn crate::archive::ArchiveSource,
    sources: &[crate::archive::SourceInfo],
    expected_sha256: Option<String>,
    limits: Limits,
    pg_bin_dir: Option<&Path>,
    progress: &dyn Progress,
) -> Result<CheckedArchive> {
    let major = sources
        .iter()
        .find(|s| s.kind == postgres::KIND)
        .and_then(|s| s.details.get("server-version-num"))
        .and_then(|v| v.parse::<u32>().ok())
        .map_or(0, |n| n / 10_000);
    let mut checks = Checks {
        pg_restore: postgres::verify::pg_restore_for(pg_bin_dir, major),
        dumps: 0,
        etcd: false,
    };
    let verify_options = VerifyOptions {
        expected_sha256,
        limits,
    };
    // S3 objects are checked against the archive's index, as a restore checks them.
    #[cfg(feature = "s3")]
    let archive = {
        let mut collect = crate::source::s3::Collect::new(&mut checks);
        let archive = verify_source(source, &verify_options, &mut collect, progress)?;
        let seen = collect.finish();
        if sources.iter().any(|s| s.kind == crate::source::s3::KIND) {
            crate::source::s3::check_index(&seen)?;
        }
        archive
    };
    #[cfg(not(feature = "s3"))]
    let archive = verify_source(source, &verify_options, &mut checks, progress)?;
    Ok(CheckedArchive {
        archive,
        dumps: checks.dumps,
        etcd_snapshot: checks.etcd,
    })
}

/// Verifies a backup in `store`.
///
/// # Errors
/// [`ErrorKind::NotFound`] when there is no such backup (or none finished);
/// [`ErrorKind::Integrity`] naming the backup and what is wrong when it would not restore.
pub fn verify_backup(
    store: &dyn Store,
    options: &VerifyBackupOptions,
    progress: &dyn Progress,
) -> Result<VerifyBackupStats> {
    let start = Instant::now();
    let repo = Repository::new(store);
    let meta = match &options.backup_id {
        Some(id) => repo.finished(id)?,
        None => repo.newest_finished()?,
    };
    let archive = repo.archive(&meta)?;
    if !meta.encrypted_to.is_empty() && options.identities.is_none() {
        progress.step(&format!(
            "backup {} is encrypted and no identity is given: checking its stored bytes only",
            meta.id
        ));
        let (sha256, bytes) = HashingReader::new(archive.open()?).finish().map_err(|e| {
            Error::new(
                ErrorKind::Connect,
                format!("cannot read backup {}: {e}", meta.id),
            )
        })?;
        if sha256 != meta.sha256 || bytes != meta.size {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "backup {} would not restore: its archive is {bytes} bytes with sha256 {sha256}, its metadata says {} bytes with sha256 {}",
                    meta.id, meta.size, meta.sha256
                ),
            ));
        }
        return Ok(VerifyBackupStats {
            archive: ArchiveInfo {
                sha256,
                bytes,
                ..Default::default()
            },
            metadata: meta,
            ciphertext_only: true,
            elapsed: start.elapsed(),
            ..Default::default()
        });
    }
    let archive = WithIdentities::wrap(archive, options.identities.clone());
    progress.step(&format!(
        "verifying backup {} ({})",
        meta.id,
        archive.name()
    ));
    let checked = check_archive(
        archive.as_ref(),
        &meta.sources,
        Some(meta.sha256.clone()),
        options.limits,
        options.pg_bin_dir.as_deref(),
        progress,
    )
    .map_err(|e| {
        Error::new(
            if e.kind() == ErrorKind::Connect {
                ErrorKind::Connect
            } else {
                ErrorKind::Integrity
            },
            format!("backup {} would not restore: {}", meta.id, chain(&e)),
        )
    })?;
    let info = checked.archive;
    if info.bytes != meta.size {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "backup {} would not restore: its archive is {} bytes, its metadata says {}",
                meta.id, info.bytes, meta.size
            ),
        ));
    }
    Ok(VerifyBackupStats {
        metadata: meta,
        archive: info,
        dumps: checked.dumps,
        etcd_snapshot: checked.etcd_snapshot,
        ciphertext_only: false,
        elapsed: start.elapsed(),
    })
}
