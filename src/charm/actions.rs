//! The charm's actions: params in, library commands called, results out.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::Limits;
use crate::charm::config::CharmConfig;
use crate::charm::own_dirs;
use crate::charm::progress::ActionProgress;
use crate::charm::s3::s3_options;
use crate::commands::create_backup::{
    BACKUP_PREFIX, BackupMetadata, CreateBackupOptions, FAILED_NAME, METADATA_NAME, create_backup,
};
use crate::commands::list_backups::{human_size, list_backups};
use crate::commands::restore::{RestoreOptions, restore};
use crate::commands::snapshot::{SnapshotOptions, snapshot, snapshot_file_name};
use crate::error::{Error, ErrorKind};
use crate::juju::{Action, BoxError, Context};
use crate::source::postgres::LogicalRestoreOptions;
use crate::store::{LocalStore, S3Store, Store};

/// Where the unit keeps its lock (beside the charm directory, in the unit agent's directory).
pub fn state_dir(ctx: &Context) -> PathBuf {
    let charm = &ctx.juju().charm_dir;
    charm
        .parent()
        .unwrap_or(Path::new("/var/lib/charm-backup"))
        .join("charm-backup-state")
}

fn snapshot_options(ctx: &Context, config: &CharmConfig) -> Result<SnapshotOptions, BoxError> {
    let paths = config.paths();
    for (configured, resolved) in config.resolved_paths() {
        ctx.log(&format!(
            "path {configured} resolves to {} (a symlink): backing up {}",
            resolved.display(),
            resolved.display()
        ));
    }
    let mut o = SnapshotOptions::new(paths.clone());
    o.exclude = config.exclude();
    for (pattern, line) in own_dirs::agent_excludes(ctx, &paths) {
        ctx.log(&line);
        o.exclude.push(pattern);
    }
    o.compression = config.compression()?;
    o.compression_threads = config.compression_threads()?;
    o.unit = ctx.juju().workload_unit().to_string();
    o.etcd = config.etcd();
    o.scratch_dir = state_dir(ctx);
    o.postgresql = config.postgresql(ctx)?;
    Ok(o)
}

/// The backup store: the `s3-parameters` bucket when related, else the local store (which
/// must not be inside the configured paths).
pub(crate) fn open_store(ctx: &Context, config: &CharmConfig) -> Result<Box<dyn Store>, BoxError> {
    match s3_options(ctx)? {
        Some((_, o)) => Ok(Box::new(S3Store::open(&o)?)),
        None => {
            own_dirs::refuse_inside(
                "local-store",
                Path::new(&config.local_store),
                &config.paths(),
            )?;
            Ok(Box::new(LocalStore::open(Path::new(&config.local_store))?))
        }
    }
}

fn log_warnings(ctx: &Context, warnings: &[String]) {
    if !warnings.is_empty() {
        ctx.log(&format!(
            "{} warning(s); the archive is complete but these files may be inconsistent",
            warnings.len()
        ));
    }
}

/// `snapshot`: archive the configured paths into `target`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot;

/// `snapshot` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SnapshotParams {
    /// Directory for the archive.
    pub target: String,
}

/// `snapshot` results, as the etcd charm reports them, plus the exact byte count.
#[derive(Debug, Serialize)]
pub struct SnapshotResults {
    /// `snapshot.path`, `.sha256`, `.size`, `.bytes`.
    pub snapshot: SnapshotResult,
    /// `copy.cmd`.
    pub copy: CopyResult,
}

/// The archive written.
#[derive(Debug, Serialize)]
pub struct SnapshotResult {
    /// Its path on the unit.
    pub path: String,
    /// Its SHA-256, as `sha256sum` prints it.
    pub sha256: String,
    /// Its size for people (`68K`).
    pub size: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// How to fetch it.
#[derive(Debug, Serialize)]
pub struct CopyResult {
    /// `juju scp <unit>:<path> .`
    pub cmd: String,
}

impl Action for Snapshot {
    const NAME: &'static str = "snapshot";
    type Params = SnapshotParams;
    type Results = SnapshotResults;

    fn run(&self, ctx: &mut Context, p: SnapshotParams) -> Result<SnapshotResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        let _lock = crate::commands::lock::OperationLock::acquire(&state_dir(ctx), "snapshot")?;
        let options = snapshot_options(ctx, &config)?;
        let target = PathBuf::from(&p.target);
        if !target.is_absolute() {
            return Err(Error::invalid(format!(
                "target {:?} must be an absolute directory",
                p.target
            ))
            .into());
        }
        own_dirs::refuse_inside("target", &target, &options.paths)?;
        let name = snapshot_file_name(ctx.juju().app_name(), options.compression);
        let progress = ActionProgress::new(ctx);
        let stats = snapshot(&target, &name, &options, &progress)?;
        log_warnings(ctx, &stats.archive.warnings);
        ctx.log(&format!(
            "wrote {} ({} of data in {} entries) in {:.1}s",
            stats.path.display(),
            human_size(stats.archive.input_bytes),
            stats.archive.entries,
            stats.elapsed.as_secs_f64()
        ));
        let path = stats.path.display().to_string();
        Ok(SnapshotResults {
            copy: CopyResult {
                cmd: format!("juju scp {}:{path} .", ctx.juju().unit_name),
            },
            snapshot: SnapshotResult {
                path,
                sha256: stats.archive.sha256,
                size: human_size(stats.archive.bytes_written),
                bytes: stats.archive.bytes_written,
            },
        })
    }
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
        let mut expected = p.sha256.clone();
        let source: PathBuf = if let Some(id) = &p.backup_id {
            let store = open_store(ctx, &config)?;
            let meta = read_metadata(store.as_ref(), id)?;
            if !meta.status.starts_with("finished") {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "backup {id} is not finished (status: {}): pick another with list-backups",
                        meta.status
                    ),
                )
                .into());
            }
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
            match store.local_path(&meta.archive) {
                Some(p) => p,
                None => download(ctx, store.as_ref(), &meta)?,
            }
        } else if let Some(path) = &p.path {
            PathBuf::from(path)
        } else {
            ctx.log("no backup-id or path given: restoring the attached snapshot resource");
            ctx.resource("snapshot")?
        };
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
            etcd: config.etcd_restore(),
            postgresql: config.postgresql(ctx)?,
            keep: own_dirs::agent_dirs(ctx),
            logical: LogicalRestoreOptions {
                terminate_sessions: p.terminate_sessions,
                restore_roles: p.restore_roles,
            },
        };
        let progress = ActionProgress::new(ctx);
        let stats = restore(&source, &options, &progress)?;
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
            source.display(),
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
                source: source.display().to_string(),
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
            },
            backup: stats.saved.map(|s| SavedResult {
                path: s.path.display().to_string(),
                sha256: s.archive.sha256,
            }),
        })
    }
}

/// Streams a backup's archive from the store into the unit's state directory.
fn download(ctx: &Context, store: &dyn Store, meta: &BackupMetadata) -> Result<PathBuf, BoxError> {
    ctx.log(&format!("downloading {}", store.url(&meta.archive)));
    let name = meta.archive.rsplit('/').next().unwrap_or("backup.tar.gz");
    let dest = state_dir(ctx).join("download").join(name);
    let _ = std::fs::remove_file(&dest);
    let mut out = crate::archive::AtomicFile::create(&dest)?;
    let mut r = store.open(&meta.archive)?;
    std::io::copy(&mut r, &mut out)?;
    Ok(out.commit()?)
}

fn read_metadata(store: &dyn Store, id: &str) -> Result<BackupMetadata, BoxError> {
    let failed = format!("{BACKUP_PREFIX}{id}/{FAILED_NAME}");
    let key = match store.list(&failed)?.is_empty() {
        true => format!("{BACKUP_PREFIX}{id}/{METADATA_NAME}"),
        false => failed,
    };
    let mut buf = Vec::new();
    let mut r = store.open(&key).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "no backup {id} in {}: run list-backups to see the ids",
                    store.name()
                ),
            )
        } else {
            e
        }
    })?;
    std::io::Read::read_to_end(&mut r, &mut buf)?;
    Ok(serde_json::from_slice(&buf)?)
}

/// `create-backup`: a backup in the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct CreateBackup;

/// `create-backup` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CreateBackupParams {
    /// `full`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Notes.
    #[serde(default)]
    pub notes: String,
}

/// `create-backup` results.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateBackupResults {
    /// The new backup's id.
    pub backup_id: String,
    /// `backup.path`, `.sha256`, `.size`.
    pub backup: BackupResult,
    /// Start time.
    pub started: String,
    /// End time.
    pub finished: String,
}

/// The stored archive.
#[derive(Debug, Serialize)]
pub struct BackupResult {
    /// Where it is.
    pub path: String,
    /// Its SHA-256.
    pub sha256: String,
    /// Its size for people.
    pub size: String,
}

impl Action for CreateBackup {
    const NAME: &'static str = "create-backup";
    type Params = CreateBackupParams;
    type Results = CreateBackupResults;

    fn run(
        &self,
        ctx: &mut Context,
        p: CreateBackupParams,
    ) -> Result<CreateBackupResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        let store = open_store(ctx, &config)?;
        let options = CreateBackupOptions {
            snapshot: snapshot_options(ctx, &config)?,
            kind: p.kind,
            notes: p.notes,
            name_prefix: ctx.juju().app_name().to_string(),
            model: ctx.juju().model_name.clone(),
            model_uuid: ctx.juju().model_uuid.clone(),
        };
        let progress = ActionProgress::new(ctx);
        let stats = create_backup(store.as_ref(), &options, &progress)?;
        log_warnings(ctx, &stats.archive.warnings);
        let m = stats.metadata;
        Ok(CreateBackupResults {
            backup_id: m.id,
            backup: BackupResult {
                path: stats.url,
                sha256: m.sha256,
                size: human_size(m.size),
            },
            started: m.started,
            finished: m.finished,
        })
    }
}

/// `list-backups`: the backups in the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListBackups;

/// `list-backups` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListBackupsParams {
    /// `table` or `json`.
    pub format: String,
    /// Show only the newest this many (0: all).
    pub limit: usize,
}

/// `list-backups` results.
#[derive(Debug, Serialize)]
pub struct ListBackupsResults {
    /// The table, or JSON.
    pub backups: String,
}

impl Action for ListBackups {
    const NAME: &'static str = "list-backups";
    type Params = ListBackupsParams;
    type Results = ListBackupsResults;

    fn run(&self, ctx: &mut Context, p: ListBackupsParams) -> Result<ListBackupsResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        let store = open_store(ctx, &config)?;
        let mut list = list_backups(store.as_ref())?;
        list.keep_newest(p.limit);
        let backups = match p.format.as_str() {
            "json" => serde_json::to_string(&list)?,
            _ => list.table(),
        };
        Ok(ListBackupsResults { backups })
    }
}

/// Params of the actions that name one backup.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BackupIdParams {
    /// The backup's id.
    pub backup_id: String,
}

/// `show-backup`: one backup's metadata, as `juju backups info` shows it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShowBackup;

/// `show-backup` results.
#[derive(Debug, Serialize)]
pub struct ShowBackupResults {
    /// Every recorded field, under `backup.`.
    pub backup: BackupMetadata,
}

impl Action for ShowBackup {
    const NAME: &'static str = "show-backup";
    type Params = BackupIdParams;
    type Results = ShowBackupResults;

    fn run(&self, ctx: &mut Context, p: BackupIdParams) -> Result<ShowBackupResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        let store = open_store(ctx, &config)?;
        Ok(ShowBackupResults {
            backup: read_metadata(store.as_ref(), &p.backup_id)?,
        })
    }
}

/// `remove-backup`: delete one backup's archive and metadata.
#[derive(Debug, Default, Clone, Copy)]
pub struct RemoveBackup;

/// `remove-backup` results.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RemoveBackupResults {
    /// The id removed.
    pub backup_id: String,
    /// Objects deleted.
    pub removed: usize,
}

impl Action for RemoveBackup {
    const NAME: &'static str = "remove-backup";
    type Params = BackupIdParams;
    type Results = RemoveBackupResults;

    fn run(&self, ctx: &mut Context, p: BackupIdParams) -> Result<RemoveBackupResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        let store = open_store(ctx, &config)?;
        let prefix = format!("{BACKUP_PREFIX}{}/", p.backup_id);
        if p.backup_id.is_empty() || p.backup_id.contains('/') {
            return Err(Error::invalid(format!(
                "{:?} is not a backup id: see list-backups",
                p.backup_id
            ))
            .into());
        }
        let objects = store.list(&prefix)?;
        if objects.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no backup {} in {}: run list-backups to see the ids",
                    p.backup_id,
                    store.name()
                ),
            )
            .into());
        }
        // The sidecar goes first, so a half-removed backup is listed as incomplete, not finished.
        let mut keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
        keys.sort_by_key(|k| !k.ends_with(METADATA_NAME));
        for k in &keys {
            store.delete(k)?;
            ctx.log(&format!("removed {}", store.url(k)));
        }
        Ok(RemoveBackupResults {
            backup_id: p.backup_id,
            removed: keys.len(),
        })
    }
}
