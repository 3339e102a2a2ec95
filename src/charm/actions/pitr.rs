//! `restore restore-to-time=...`: plans a point-in-time restore before anything is touched,
//! and readies what PostgreSQL's `restore_command` runs with.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::charm::config::CharmConfig;
use crate::charm::wal::{WalPaths, install};
use crate::commands::pitr::{BaseBackup, RestorePoint, base_backups, plan};
use crate::error::Error;
use crate::juju::{BoxError, Context};
use crate::source::postgres::wal::{RecoveryTarget, WalArchive, WalIndex, pg_time};
use crate::store::Store;
use crate::store::repo::{BackupMetadata, Repository};

/// The identity file `wal-fetch` decrypts with during recovery (`0600`, the server's user);
/// removed when the restore ends, whatever happens.
#[derive(Debug)]
pub(crate) struct IdentityFile(PathBuf);

impl Drop for IdentityFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A planned point-in-time restore.
#[derive(Debug)]
pub(crate) struct PitrRestore {
    /// The base backup to restore.
    pub backup_id: String,
    /// The recovery settings.
    pub target: RecoveryTarget,
    /// Held until the restore ends.
    pub _identity: Option<IdentityFile>,
}

/// The cluster whose WAL is used: the given backup's, else the only one the store has base
/// backups of, else the running server's.
fn system_id(
    ctx: &Context,
    config: &CharmConfig,
    backups: &[BaseBackup],
    backup_id: Option<&str>,
) -> Result<u64, BoxError> {
    if let Some(id) = backup_id {
        return backups
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.system_id)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "backup {id} is not a finished physical PostgreSQL backup: a point-in-time \
                     restore starts from one (list-backups shows their LSNs)"
                ))
                .into()
            });
    }
    let mut ids: Vec<u64> = backups.iter().map(|b| b.system_id).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [] => Err(Error::invalid(
            "the store holds no finished physical PostgreSQL base backup: take one with \
             create-backup (postgresql-mode=physical) while postgresql-wal-archive is on",
        )
        .into()),
        [one] => Ok(*one),
        many => {
            let running = config
                .postgresql(ctx)?
                .and_then(|pg| pg.inspect().ok())
                .and_then(|i| i.system_identifier.parse::<u64>().ok());
            running.filter(|r| many.contains(r)).ok_or_else(|| {
                Error::invalid(format!(
                    "the store holds base backups of several clusters ({}): give backup-id",
                    many.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into()
            })
        }
    }
}

/// Plans the restore to `point` (refusing, before anything is touched, a time the backups and
/// archived WAL cannot reach), installs what the `restore_command` runs, and writes the
/// identity file when the WAL is encrypted.
///
/// # Errors
/// When the point cannot be reached, or an identity is needed and missing.
pub(crate) fn prepare(
    ctx: &Context,
    config: &CharmConfig,
    store: &dyn Store,
    point: &str,
    backup_id: Option<&str>,
) -> Result<PitrRestore, BoxError> {
    let point: RestorePoint = point.parse()?;
    if config.postgresql_uri.trim().is_empty() {
        return Err(Error::invalid(
            "restore-to-time restores PostgreSQL: set postgresql-uri to the server",
        )
        .into());
    }
    // The running server's last writes go to the archive first: they belong to the timeline
    // this restore leaves, and a later restore may want them.
    if let Some(pg) = config.postgresql(ctx)?
        && config.postgresql_wal_archive
        && pg.connect().is_ok()
    {
        match pg.switch_and_wait_archived(std::time::Duration::from_secs(120)) {
            Ok(seg) => ctx.log(&format!("the server's WAL is archived up to {seg}")),
            Err(e) => ctx.log(&format!(
                "the server's last WAL could not be archived ({e}); what it wrote since the \
                 last archived segment is not in the archive"
            )),
        }
    }
    let repo = Repository::new(store);
    let listing = repo.list()?;
    let backups = base_backups(&listing);
    let system_id = system_id(ctx, config, &backups, backup_id)?;
    let index = WalIndex::load(&WalArchive::new(store, system_id))?;
    let plan = plan(&index, &backups, point, backup_id)?;
    ctx.log(&format!(
        "restoring base backup {} (finished {}) and replaying archived WAL on timeline {} {}",
        plan.backup.id,
        plan.backup.finished,
        plan.timeline,
        plan.time.map_or_else(
            || "to its end".to_string(),
            |t| format!("to {}", pg_time(t))
        )
    ));
    let meta = repo.finished(&plan.backup.id)?;
    ready(ctx, config, &index, &meta, plan.time, false, plan.timeline)
}

/// Readies the recovery of a plain restore of the base backup `meta` while its cluster's WAL is
/// archived: recovery to the backup's end, then promotion, so the server goes on on a new
/// timeline and never archives over what its old self archived. `None` when none of its
/// cluster's WAL is archived.
///
/// # Errors
/// When the store cannot be read or an identity is needed and missing.
pub(crate) fn prepare_plain(
    ctx: &Context,
    config: &CharmConfig,
    store: &dyn Store,
    meta: &BackupMetadata,
) -> Result<Option<PitrRestore>, BoxError> {
    let Some(base) = BaseBackup::from_metadata(meta) else {
        return Ok(None);
    };
    let index = WalIndex::load(&WalArchive::new(store, base.system_id))?;
    if index.timelines.is_empty() {
        return Ok(None);
    }
    ctx.log(&format!(
        "the WAL of cluster {} is archived: the restored server recovers to the end of backup {} \
         and goes on on a new timeline",
        base.system_id, base.id
    ));
    ready(ctx, config, &index, meta, None, true, base.timeline).map(Some)
}

/// Installs what the `restore_command` runs and, for encrypted WAL, the identity file.
fn ready(
    ctx: &Context,
    config: &CharmConfig,
    index: &WalIndex,
    meta: &BackupMetadata,
    time: Option<jiff::Timestamp>,
    immediate: bool,
    timeline: u32,
) -> Result<PitrRestore, BoxError> {
    let encrypted = index
        .timelines
        .values()
        .any(|t| t.segments.values().any(|s| s.encrypted));
    let identity_text = if encrypted {
        let uri = config.encryption_identity_secret.trim();
        if uri.is_empty() {
            return Err(Error::invalid(format!(
                "the archived WAL is encrypted: set encryption-identity-secret ({})",
                crate::charm::actions::NO_IDENTITY_HINT
            ))
            .into());
        }
        config.identities(ctx)?;
        Some(ctx.secret(uri, "identity")?)
    } else {
        None
    };
    let data_dir = meta
        .sources
        .iter()
        .find(|s| s.kind == "postgresql")
        .and_then(|s| s.paths.first())
        .map(PathBuf::from)
        .unwrap_or_default();
    let owner = std::fs::metadata(&data_dir)
        .or_else(|_| std::fs::metadata(data_dir.parent().unwrap_or(Path::new("/"))))
        .map(|m| (m.uid(), m.gid()))
        .map_err(|e| Error::io("cannot read", &data_dir, e))?;
    let paths: WalPaths = install(ctx, config, owner)?;
    let identity = match identity_text {
        Some(text) => {
            let path = paths.private.join("identity");
            let guard = IdentityFile(path.clone());
            crate::schedule::write_atomic(&path, text.as_bytes(), 0o600)?;
            std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1))
                .map_err(|e| Error::io("cannot change the owner of", &path, e))?;
            Some(guard)
        }
        None => None,
    };
    Ok(PitrRestore {
        backup_id: meta.id.clone(),
        target: RecoveryTarget {
            restore_command: paths.restore_command(identity.as_ref().map(|i| i.0.as_path())),
            time,
            immediate,
            timeline,
            failure_marker: Some(paths.fetch_failure()),
        },
        _identity: identity,
    })
}
