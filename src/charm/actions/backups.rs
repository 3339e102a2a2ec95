//! The actions on the backup store: `create-backup`, `list-backups`, `show-backup`,
//! `verify-backup`, `remove-backup` and `prune-backups`.

use serde::{Deserialize, Serialize};

use crate::charm::actions::restore::whose;
use crate::charm::actions::{
    CopyResult, copy_result, log_warnings, open_store, seconds, services_to_stop, snapshot_options,
    state_dir,
};
use crate::charm::config::CharmConfig;
use crate::commands::create_backup::{CreateBackupOptions, CreateBackupStats, create_backup};
use crate::commands::list_backups::{list_backups, render_fitting};
use crate::commands::manage::{prune_backups, remove_backup};
use crate::commands::verify::{VerifyBackupOptions, verify_backup};
use crate::error::Error;
use crate::juju::{Action, BoxError, Context};
use crate::progress::human_size;
use crate::schedule::history::ORIGIN_ACTION;
use crate::store::repo::{BackupMetadata, Repository};

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
    /// Write to a store path another model or application owns, taking it over.
    #[serde(default)]
    pub take_over_store: bool,
    /// Stop the `services` units while the data is read.
    #[serde(default)]
    pub stop_services: bool,
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
    /// Backups retention removed afterwards, space-separated (absent when none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pruned: String,
    /// How long the services were down (`stop-services`), e.g. `4.2s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services_down: Option<String>,
    /// `copy.cmd`: the `juju scp` command that fetches the archive, for the local store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyResult>,
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
        let stats = take_backup(
            ctx,
            &BackupRequest {
                origin: ORIGIN_ACTION,
                kind: p.kind,
                notes: p.notes,
                take_over_store: p.take_over_store,
                stop_services: p.stop_services,
                lock_wait: std::time::Duration::ZERO,
            },
        )?;
        // A backup by hand clears a failed schedule's or a stale backup's status at once.
        crate::charm::schedule::refresh_status(ctx);
        log_warnings(ctx, &stats.archive.warnings);
        let pruned: Vec<String> = stats
            .pruned
            .removed
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
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
            pruned: pruned.join(" "),
            services_down: stats.services_down.map(seconds),
            copy: stats.local_path.map(|p| copy_result(ctx, &p)),
        })
    }
}

/// Who asks for a backup, and how.
#[derive(Debug, Clone)]
pub(crate) struct BackupRequest {
    /// `action` or `scheduled`.
    pub origin: &'static str,
    /// `full`.
    pub kind: String,
    /// Notes kept in the metadata.
    pub notes: String,
    /// Write to a store path another model or application owns.
    pub take_over_store: bool,
    /// Stop the `services` units while the data is read.
    pub stop_services: bool,
    /// How long to wait for another operation on the unit.
    pub lock_wait: std::time::Duration,
}

/// The options a create-backup of `config` runs with.
pub(crate) fn backup_options(
    ctx: &Context,
    config: &CharmConfig,
    req: &BackupRequest,
) -> Result<CreateBackupOptions, BoxError> {
    let mut retention = config.retention()?;
    retention.unit = ctx.juju().unit_name.clone();
    let mut snapshot = snapshot_options(ctx, config)?;
    snapshot.stop_services = services_to_stop(config, req.stop_services)?;
    Ok(CreateBackupOptions {
        snapshot,
        kind: req.kind.clone(),
        notes: req.notes.clone(),
        name_prefix: ctx.juju().app_name().to_string(),
        model: ctx.juju().model_name.clone(),
        model_uuid: ctx.juju().model_uuid.clone(),
        made_by: ctx.juju().unit_name.clone(),
        take_over_store: req.take_over_store,
        retention,
        origin: req.origin.to_string(),
        lock_wait: req.lock_wait,
    })
}

/// Runs create-backup as `req` asks and records its outcome in the unit's history (and
/// metrics, when configured), whatever it is.
pub(crate) fn take_backup(
    ctx: &Context,
    req: &BackupRequest,
) -> Result<CreateBackupStats, BoxError> {
    let started = jiff::Timestamp::now();
    let (config, result) = match CharmConfig::read(ctx) {
        Ok(config) => {
            let result = (|| {
                let store = open_store(ctx, &config)?;
                let options = backup_options(ctx, &config, req)?;
                let progress = ctx.progress();
                Ok(create_backup(store.as_ref(), &options, &progress)?)
            })();
            (Some(config), result)
        }
        Err(e) => (None, Err(e.into())),
    };
    crate::charm::schedule::record_outcome(ctx, config.as_ref(), req.origin, started, &result);
    result
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
        let windows = crate::commands::list_backups::pitr_windows(store.as_ref(), &list)?;
        list.keep_newest(p.limit);
        let json = p.format == "json";
        let backups = render_fitting(&list, |l| {
            if json {
                let mut v = serde_json::to_value(l).unwrap_or_default();
                if !windows.is_empty() {
                    v["restorable"] = serde_json::to_value(&windows).unwrap_or_default();
                }
                v.to_string()
            } else {
                l.table() + &crate::commands::list_backups::windows_table(&windows)
            }
        })?;
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
        let b = Repository::new(store.as_ref()).find(&p.backup_id)?;
        for line in whose(ctx, &b.metadata) {
            ctx.log(&line);
        }
        Ok(ShowBackupResults { backup: b.metadata })
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
        let progress = ctx.progress();
        let keys = remove_backup(store.as_ref(), &p.backup_id, &state_dir(ctx), &progress)?;
        Ok(RemoveBackupResults {
            backup_id: p.backup_id,
            removed: keys.len(),
        })
    }
}

/// `verify-backup`: read a stored backup whole and check it.
#[derive(Debug, Default, Clone, Copy)]
pub struct VerifyBackup;

/// `verify-backup` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VerifyBackupParams {
    /// The backup (default: the newest finished one).
    pub backup_id: Option<String>,
    /// Accept symlinks that point outside the restored paths.
    #[serde(default)]
    pub allow_external_symlinks: bool,
    /// Accept device nodes.
    #[serde(default)]
    pub allow_devices: bool,
}

/// `verify-backup` results.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct VerifyBackupResults {
    /// The backup verified.
    pub backup_id: String,
    /// `verify.status`, `.entries`, `.bytes`, `.sha256`.
    pub verify: VerifyResult,
}

/// What verification found.
#[derive(Debug, Serialize)]
pub struct VerifyResult {
    /// `ok` (a damaged backup fails the action, saying what is wrong).
    pub status: String,
    /// Entries read.
    pub entries: u64,
    /// Bytes of the archive read.
    pub bytes: u64,
    /// The archive's sha256, as read.
    pub sha256: String,
    /// PostgreSQL dumps read back with `pg_restore --list`.
    #[serde(skip_serializing_if = "is_zero")]
    pub dumps: usize,
    /// For a PostgreSQL base backup: the WAL archived after it (a hole fails the action).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub wal: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Action for VerifyBackup {
    const NAME: &'static str = "verify-backup";
    type Params = VerifyBackupParams;
    type Results = VerifyBackupResults;

    fn run(
        &self,
        ctx: &mut Context,
        p: VerifyBackupParams,
    ) -> Result<VerifyBackupResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        let store = open_store(ctx, &config)?;
        let options = VerifyBackupOptions {
            backup_id: p.backup_id.filter(|s| !s.is_empty()),
            pg_bin_dir: config.pg_bin_dir(),
            identities: config.identities(ctx)?,
            limits: crate::archive::Limits {
                allow_external_symlinks: p.allow_external_symlinks,
                allow_devices: p.allow_devices,
                ..Default::default()
            },
        };
        let progress = ctx.progress();
        let stats = verify_backup(store.as_ref(), &options, &progress)?;
        for line in whose(ctx, &stats.metadata) {
            ctx.log(&line);
        }
        ctx.log(&format!(
            "backup {} is whole: {} entries, {} read in {:.1}s{}",
            stats.metadata.id,
            stats.archive.entries,
            human_size(stats.archive.bytes),
            stats.elapsed.as_secs_f64(),
            if stats.etcd_snapshot {
                ", etcd snapshot checksum ok"
            } else {
                ""
            }
        ));
        let mut wal = String::new();
        if let Some(base) = crate::commands::pitr::BaseBackup::from_metadata(&stats.metadata) {
            ctx.log("checking the WAL archived after it");
            wal = match crate::commands::pitr::check_wal(store.as_ref(), &base)? {
                Some(w) => format!(
                    "complete: {} segments on timeline(s) {}, archived up to {}",
                    w.segments,
                    w.timelines
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                    w.latest.map(|t| t.to_string()).unwrap_or_default()
                ),
                None => "none archived (restores go to the backup's end only)".into(),
            };
            ctx.log(&format!("archived WAL after backup {}: {wal}", base.id));
        }
        Ok(VerifyBackupResults {
            backup_id: stats.metadata.id,
            verify: VerifyResult {
                status: if stats.ciphertext_only {
                    "ok: the stored (encrypted) bytes match the metadata; set encryption-identity-secret to check the entries too".into()
                } else {
                    "ok".into()
                },
                entries: stats.archive.entries,
                bytes: stats.archive.bytes,
                sha256: stats.archive.sha256,
                dumps: stats.dumps,
                wal,
            },
        })
    }
}

/// `prune-backups`: apply the retention config now.
#[derive(Debug, Default, Clone, Copy)]
pub struct PruneBackups;

/// `prune-backups` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PruneBackupsParams {
    /// Only list what would go.
    #[serde(default)]
    pub dry_run: bool,
}

/// `prune-backups` results.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PruneBackupsResults {
    /// The backups removed (or, dry, that would be), space-separated.
    pub removed: String,
    /// Why each goes, one line per backup.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reasons: String,
    /// Finished backups that remain.
    pub kept: usize,
    /// Archived PostgreSQL WAL files removed (or, dry, that would be) with the base backups
    /// that needed them.
    #[serde(skip_serializing_if = "is_zero")]
    pub wal_files: usize,
    /// Whether nothing was removed on purpose.
    pub dry_run: bool,
}

impl Action for PruneBackups {
    const NAME: &'static str = "prune-backups";
    type Params = PruneBackupsParams;
    type Results = PruneBackupsResults;

    fn run(
        &self,
        ctx: &mut Context,
        p: PruneBackupsParams,
    ) -> Result<PruneBackupsResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        let mut retention = config.retention()?;
        if !retention.is_active() {
            return Err(Error::invalid(
                "no retention is configured, so nothing would be removed: set retention-count or retention-days (juju config <app> retention-count=7)",
            )
            .into());
        }
        retention.dry_run = p.dry_run;
        retention.unit = ctx.juju().unit_name.clone();
        let store = open_store(ctx, &config)?;
        let progress = ctx.progress();
        let stats = prune_backups(store.as_ref(), &retention, &state_dir(ctx), &progress)?;
        if stats.removed.is_empty() {
            ctx.log("retention removes nothing: every backup is kept");
        }
        // The reasons of the first 200 only, so the results always fit.
        let mut reasons: Vec<String> = stats
            .removed
            .iter()
            .take(200)
            .map(|(id, why)| format!("{id}: {why}"))
            .collect();
        if stats.removed.len() > 200 {
            reasons.push(format!("... and {} more", stats.removed.len() - 200));
        }
        let reasons = reasons.join("\n");
        Ok(PruneBackupsResults {
            removed: stats
                .removed
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            reasons,
            kept: stats.kept,
            wal_files: stats.wal_files,
            dry_run: p.dry_run,
        })
    }
}
