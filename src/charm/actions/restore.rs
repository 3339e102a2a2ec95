//! `restore`: put a snapshot or a stored backup back. A stored backup streams from the store
//! straight into staging: no copy of the archive on the unit's disk.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::{AGE_MAGIC, ArchiveSource, FileSource, Identities, Limits, WithIdentities};
use crate::charm::actions::{log_warnings, open_store, state_dir};
use crate::charm::config::CharmConfig;
use crate::charm::own_dirs;
use crate::commands::restore::{RestoreOptions, restore};
use crate::error::{Error, ErrorKind};
use crate::juju::{Action, BoxError, Context};
use crate::source::postgres::LogicalRestoreOptions;
use crate::store::repo::{BackupMetadata, Repository};

/// How to give the charm an identity, for messages.
pub(crate) const NO_IDENTITY_HINT: &str = "juju add-secret backup-key identity=\"$(cat key.txt)\"; juju grant-secret backup-key <app>; juju config <app> encryption-identity-secret=secret:...";

/// Whether the file at `path` is an age file.
fn is_sealed(path: &Path) -> bool {
    let mut head = [0u8; 21];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head == AGE_MAGIC)
}

/// Refuses, before anything is read, a backup encrypted to `recipients` that `identities`
/// cannot decrypt, saying which recipients it is encrypted to.
pub(crate) fn check_identities(
    id: &str,
    recipients: &[String],
    identities: Option<&Identities>,
) -> Result<(), Error> {
    if recipients.is_empty() {
        return Ok(());
    }
    match identities {
        None => Err(Error::invalid(format!(
            "backup {id} is encrypted to {}: set encryption-identity-secret to a secret holding the identity of one of them ({NO_IDENTITY_HINT})",
            recipients.join(" ")
        ))),
        Some(ids) if !ids.recipients().iter().any(|r| recipients.contains(r)) => {
            Err(Error::invalid(format!(
                "backup {id} is encrypted to {}, and the identities in encryption-identity-secret are those of {}: put the identity of one of its recipients in the secret",
                recipients.join(" "),
                ids.recipients().join(" ")
            )))
        }
        Some(_) => Ok(()),
    }
}

/// What the operator should know of whose backup `meta` is, when it is not this unit's own.
pub(crate) fn whose(ctx: &Context, meta: &BackupMetadata) -> Vec<String> {
    let j = ctx.juju();
    let mut out = Vec::new();
    if !meta.model_uuid.is_empty() && meta.model_uuid != j.model_uuid {
        out.push(format!(
            "backup {} comes from another model: {} ({})",
            meta.id, meta.model, meta.model_uuid
        ));
    }
    let made_by = if meta.made_by.is_empty() {
        &meta.unit
    } else {
        &meta.made_by
    };
    if !made_by.is_empty() && made_by != &j.unit_name && meta.unit != j.workload_unit() {
        out.push(format!(
            "backup {} was made by unit {made_by} (data of {}), not by this unit {}",
            meta.id, meta.unit, j.unit_name
        ));
    }
    out
}

/// `restore`: put a snapshot or backup back.
#[derive(Debug, Default, Clone, Copy)]
pub struct Restore;

/// `restore` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RestoreParams {
    /// A backup in the store.
    pub backup_id: Option<String>,
    /// PostgreSQL point-in-time recovery: `latest` or a time with its zone.
    pub restore_to_time: Option<String>,
    /// An archive on the unit.
    pub path: Option<String>,
    /// The expected SHA-256.
    pub sha256: Option<String>,
    /// Where to save the existing data.
    pub target: String,
    /// Do not save the existing data.
    #[serde(default)]
    pub skip_backup: bool,
    /// Accept symlinks that point outside the restored paths.
    #[serde(default)]
    pub allow_external_symlinks: bool,
    /// Accept device nodes in the archive (restored as root).
    #[serde(default)]
    pub allow_devices: bool,
    /// Restore a volume's data though nothing is mounted where it was.
    #[serde(default)]
    pub allow_unmounted: bool,
    /// End other sessions on the databases a logical restore replaces.
    #[serde(default)]
    pub terminate_sessions: bool,
    /// Replace S3 objects that exist with other content than the backup's.
    #[serde(default)]
    pub overwrite_objects: bool,
    /// Restore etcd though its member cannot be asked whether it is alone in its cluster.
    #[serde(default)]
    pub allow_unreachable_etcd: bool,
    /// Give existing roles their backed-up passwords and attributes.
    #[serde(default)]
    pub restore_roles: bool,
}

/// `restore` results.
#[derive(Debug, Serialize)]
pub struct RestoreResults {
    /// `restore.source`, `.sha256`, `.paths`, `.bytes`.
    pub restore: RestoreResult,
    /// `backup.path`, `backup.sha256` of the saved existing data (absent with skip-backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<SavedResult>,
}

/// What was restored.
#[derive(Debug, Serialize)]
pub struct RestoreResult {
    /// The archive restored from.
    pub source: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The paths put back, space-separated.
    pub paths: String,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Databases put back by a logical restore, space-separated.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub databases: String,
    /// The databases they replaced, kept under these names (drop them once satisfied).
    #[serde(rename = "kept-databases", skip_serializing_if = "String::is_empty")]
    pub kept_databases: String,
    /// What went back into S3: `restore.s3.objects`, `.identical`, `.replaced`,
    /// `.buckets-created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Result>,
    /// The etcd member restored: `restore.etcd.cluster-id`, `.name`, `.peer-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdResult>,
    /// Where a point-in-time recovery ended: `restore.recovery.timeline`,
    /// `.last-transaction`, `.wal-replayed-to`, `.target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryResult>,
}

/// Where a point-in-time recovery ended.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RecoveryResult {
    /// What was asked: the target time, or `latest`.
    pub target: String,
    /// The timeline the server runs on now.
    pub timeline: u32,
    /// The commit time of the last transaction replayed.
    pub last_transaction: String,
    /// The last WAL location replayed.
    pub wal_replayed_to: String,
}

/// What a restore put back into S3.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct S3Result {
    /// Objects written.
    pub objects: usize,
    /// Objects already there with the backup's content.
    pub identical: usize,
    /// Objects replaced (`overwrite-objects`).
    pub replaced: usize,
    /// Buckets created, space-separated.
    pub buckets_created: String,
}

/// Where the S3 objects of an archive go back: the `s3-source` gateway, when related.
fn s3_target(
    ctx: &Context,
    config: &CharmConfig,
    overwrite: bool,
) -> Result<Option<crate::source::s3::S3RestoreTarget>, BoxError> {
    let buckets = if config.s3_source_buckets.trim().is_empty() {
        "*"
    } else {
        &config.s3_source_buckets
    };
    if crate::charm::s3::s3_relation_on(ctx, crate::charm::s3::SOURCE_ENDPOINT)?.is_none() {
        return Ok(None);
    }
    Ok(
        crate::charm::s3::s3_source(ctx, buckets)?.map(|s| crate::source::s3::S3RestoreTarget {
            client: s.client,
            overwrite,
            parallel: s.parallel,
        }),
    )
}

/// The new single-member etcd cluster a restore made.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EtcdResult {
    /// The new cluster's id.
    pub cluster_id: String,
    /// The member's name.
    pub name: String,
    /// The member's peer URL.
    pub peer_url: String,
}

/// The archive of the data that was replaced.
#[derive(Debug, Serialize)]
pub struct SavedResult {
    /// Its path.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
}

impl Action for Restore {
    const NAME: &'static str = "restore";
    type Params = RestoreParams;
    type Results = RestoreResults;

    fn run(&self, ctx: &mut Context, p: RestoreParams) -> Result<RestoreResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        if !p.skip_backup {
            own_dirs::refuse_inside("target", Path::new(&p.target), &config.paths())?;
        }
        if let Some(path) = &p.path {
            own_dirs::refuse_inside("path", Path::new(path), &config.paths())
                .map_err(|e| Error::invalid(format!("{e} (copy the archive out first)")))?;
        }
        let identities = config.identities(ctx)?;
        let store;
        let repo;
        let mut expected = p.sha256.clone();
        let mut pitr = None;
        let mut backup_id = p.backup_id.clone();
        if let Some(point) = &p.restore_to_time {
            if p.path.is_some() {
                return Err(Error::invalid(
                    "restore-to-time restores a base backup from the store: give backup-id (or \
                     nothing), not path",
                )
                .into());
            }
            let s = open_store(ctx, &config)?;
            let planned =
                super::pitr::prepare(ctx, &config, s.as_ref(), point, p.backup_id.as_deref())?;
            backup_id = Some(planned.backup_id.clone());
            pitr = Some(planned);
        }
        let source: Box<dyn ArchiveSource + '_> = if let Some(id) = &backup_id {
            store = open_store(ctx, &config)?;
            repo = Repository::new(store.as_ref());
            let meta = repo.finished(id)?;
            if let Some(e) = &expected
                && !e.eq_ignore_ascii_case(&meta.sha256)
            {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "backup {id} has sha256 {}, not the {e} you gave",
                        meta.sha256
                    ),
                )
                .into());
            }
            expected = Some(meta.sha256.clone());
            if pitr.is_none() && config.postgresql_wal_archive {
                pitr = super::pitr::prepare_plain(ctx, &config, store.as_ref(), &meta)?;
            }
            for line in whose(ctx, &meta) {
                ctx.log(&line);
            }
            check_identities(&meta.id, &meta.encrypted_to, identities.as_ref())?;
            repo.archive(&meta)?
        } else {
            let path = match &p.path {
                Some(path) => PathBuf::from(path),
                None => {
                    ctx.log("no backup-id or path given: restoring the attached snapshot resource");
                    ctx.resource("snapshot")?
                }
            };
            let file = FileSource::open(&path)?;
            if identities.is_none() && is_sealed(&path) {
                return Err(Error::invalid(format!(
                    "{} is encrypted with age: set encryption-identity-secret to a secret holding its identity ({NO_IDENTITY_HINT})",
                    path.display()
                ))
                .into());
            }
            Box::new(file)
        };
        let source = WithIdentities::wrap(source, identities);
        let options = RestoreOptions {
            expected_sha256: expected,
            allowed_paths: config.paths(),
            save_existing_to: (!p.skip_backup).then(|| PathBuf::from(&p.target)),
            name_prefix: ctx.juju().app_name().to_string(),
            compression: config.compression()?,
            services: config.services(),
            state_dir: state_dir(ctx),
            unit: ctx.juju().workload_unit().to_string(),
            limits: Limits {
                allow_external_symlinks: p.allow_external_symlinks,
                allow_devices: p.allow_devices,
                allow_unmounted: p.allow_unmounted,
                ..Limits::default()
            },
            etcd: config.etcd_restore().map(|mut e| {
                e.allow_unreachable = p.allow_unreachable_etcd;
                e
            }),
            postgresql: config.postgresql(ctx)?,
            recipients: config.recipients()?,
            s3: s3_target(ctx, &config, p.overwrite_objects)?,
            keep: own_dirs::agent_dirs(ctx),
            logical: LogicalRestoreOptions {
                terminate_sessions: p.terminate_sessions,
                restore_roles: p.restore_roles,
            },
            recovery: pitr.as_ref().map(|r| r.target.clone()),
        };
        let progress = ctx.progress();
        let stats = restore(source.as_ref(), &options, &progress)?;
        log_warnings(ctx, &stats.warnings);
        let what: Vec<String> = stats
            .databases
            .iter()
            .map(|d| format!("database {d}"))
            .chain(stats.paths.iter().map(|p| p.display().to_string()))
            .collect();
        ctx.log(&format!(
            "restored {} from {} in {:.1}s",
            what.join(", "),
            source.name(),
            stats.elapsed.as_secs_f64()
        ));
        if !stats.kept_databases.is_empty() {
            ctx.log(&format!(
                "the replaced databases are kept as {}: drop them once the restore is checked",
                stats.kept_databases.join(" ")
            ));
        }
        Ok(RestoreResults {
            restore: RestoreResult {
                source: source.name(),
                sha256: stats.archive.sha256,
                paths: stats
                    .paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                bytes: stats.extracted.bytes_written,
                databases: stats.databases.join(" "),
                kept_databases: stats.kept_databases.join(" "),
                s3: stats.s3.map(|s| S3Result {
                    objects: s.objects,
                    identical: s.identical,
                    replaced: s.replaced,
                    buckets_created: s.buckets_created.join(" "),
                }),
                etcd: stats.etcd.map(|e| EtcdResult {
                    cluster_id: e.cluster_id,
                    name: e.name,
                    peer_url: e.peer_url,
                }),
                recovery: stats.recovered.map(|r| RecoveryResult {
                    target: p
                        .restore_to_time
                        .clone()
                        .unwrap_or_else(|| "the end of the base backup".into()),
                    timeline: r.timeline,
                    last_transaction: r.last_transaction,
                    wal_replayed_to: r.replay_lsn,
                }),
            },
            backup: stats.saved.map(|s| SavedResult {
                path: s.path.display().to_string(),
                sha256: s.archive.sha256,
            }),
        })
    }
}
