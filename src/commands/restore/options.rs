//! What a restore takes and what it reports.

use std::path::PathBuf;
use std::time::Duration;

use crate::archive::{ArchiveInfo, Compression, ExtractStats, Limits};
use crate::commands::snapshot::SnapshotStats;
#[cfg(feature = "etcd")]
use crate::source::etcd::{self, EtcdRestoreOptions};
#[cfg(feature = "postgresql")]
use crate::source::postgres::{LogicalRestoreOptions, Postgres};
#[cfg(feature = "s3")]
use crate::source::s3;

/// How to restore.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// The SHA-256 the archive must have, if known.
    pub expected_sha256: Option<String>,
    /// The paths this unit backs up; the archive may only restore these or paths inside them.
    pub allowed_paths: Vec<PathBuf>,
    /// Where to save the existing data first (`None`: do not save it).
    pub save_existing_to: Option<PathBuf>,
    /// File-name prefix of the saved archive (the application name).
    pub name_prefix: String,
    /// Compression of the saved archive.
    pub compression: Compression,
    /// systemd units to stop before the swap and start after.
    pub services: Vec<String>,
    /// Directory for the unit's lock.
    pub state_dir: PathBuf,
    /// The unit, recorded in the saved archive's manifest.
    pub unit: String,
    /// Archive size limits.
    pub limits: Limits,
    /// How to restore an etcd snapshot the archive holds.
    #[cfg(feature = "etcd")]
    pub etcd: Option<EtcdRestoreOptions>,
    /// The PostgreSQL server to restore a database backup onto.
    #[cfg(feature = "postgresql")]
    pub postgresql: Option<Postgres>,
    /// How a logical PostgreSQL restore treats sessions and existing roles.
    #[cfg(feature = "postgresql")]
    pub logical: LogicalRestoreOptions,
    /// Directories never replaced, even inside a restored path (the Juju agent's, which holds
    /// the unit's state and this restore's journal).
    pub keep: Vec<PathBuf>,
    /// Encrypt the saved existing data to these age recipients.
    pub recipients: Option<crate::archive::Recipients>,
    /// Where the S3 objects an archive holds are put back.
    #[cfg(feature = "s3")]
    pub s3: Option<s3::S3RestoreTarget>,
    /// After a physical PostgreSQL restore, replay archived WAL to this point in time.
    #[cfg(feature = "postgresql")]
    pub recovery: Option<crate::source::postgres::wal::RecoveryTarget>,
}

impl RestoreOptions {
    /// Options for a restore that may put back `allowed_paths` (and paths inside them),
    /// keeping its lock and journal in `state_dir`; the existing data is not saved first
    /// unless [`RestoreOptions::with_save_existing_to`] says where.
    pub fn new(allowed_paths: Vec<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            allowed_paths,
            state_dir: state_dir.into(),
            ..Default::default()
        }
    }

    /// Refuses an archive whose SHA-256 is not `sha256` (lowercase hex).
    #[must_use]
    pub fn with_expected_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.expected_sha256 = Some(sha256.into());
        self
    }

    /// Saves the existing data as an archive in `dir` before it is replaced.
    #[must_use]
    pub fn with_save_existing_to(mut self, dir: impl Into<PathBuf>) -> Self {
        self.save_existing_to = Some(dir.into());
        self
    }

    /// Stops these systemd units around the swap.
    #[must_use]
    pub fn with_services(mut self, units: Vec<String>) -> Self {
        self.services = units;
        self
    }

    /// Applies these limits (symlinks out of the paths, devices, unmounted volumes).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    /// The verified archive.
    pub archive: ArchiveInfo,
    /// The paths put back.
    pub paths: Vec<PathBuf>,
    /// The archive of the data that was there before, if saved.
    pub saved: Option<SnapshotStats>,
    /// What extraction wrote.
    pub extracted: ExtractStats,
    /// How long it took.
    pub elapsed: Duration,
    /// Databases a logical restore put back.
    pub databases: Vec<String>,
    /// The databases they replaced, kept under new names (not with `skip-backup`).
    pub kept_databases: Vec<String>,
    /// Non-fatal problems (e.g. a role that could not be restored).
    pub warnings: Vec<String>,
    /// The etcd member restored from the archive's snapshot.
    #[cfg(feature = "etcd")]
    pub etcd: Option<etcd::EtcdRestored>,
    /// What went back into S3.
    #[cfg(feature = "s3")]
    pub s3: Option<s3::S3RestoreStats>,
    /// Where a point-in-time recovery ended.
    #[cfg(feature = "postgresql")]
    pub recovered: Option<crate::source::postgres::wal::Recovered>,
}
