//! `import-backup`: an archive on the unit (or the attached `snapshot` resource) into the
//! backup store, as `juju backups upload` does for controllers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::archive::{FileSource, Limits, WithIdentities};
use crate::charm::actions::{BackupResult, open_store, state_dir};
use crate::charm::config::CharmConfig;
use crate::commands::import::{ImportBackupOptions, import_backup};
use crate::juju::{Action, BoxError, Context};
use crate::progress::human_size;

/// `import-backup`: store an archive made elsewhere as a new backup.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportBackup;

/// `import-backup` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ImportBackupParams {
    /// The archive on the unit (default: the attached `snapshot` resource).
    pub path: Option<String>,
    /// Accept symlinks that point outside the restored paths.
    #[serde(default)]
    pub allow_external_symlinks: bool,
    /// Accept device nodes.
    #[serde(default)]
    pub allow_devices: bool,
}

/// `import-backup` results.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImportBackupResults {
    /// The new backup's id.
    pub backup_id: String,
    /// `backup.path`, `.sha256`, `.size`.
    pub backup: BackupResult,
    /// The file imported.
    pub imported_from: String,
}

impl Action for ImportBackup {
    const NAME: &'static str = "import-backup";
    type Params = ImportBackupParams;
    type Results = ImportBackupResults;

    fn run(
        &self,
        ctx: &mut Context,
        p: ImportBackupParams,
    ) -> Result<ImportBackupResults, BoxError> {
        let config = CharmConfig::read(ctx)?;
        let path = match p.path.filter(|s| !s.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => {
                ctx.log("no path given: importing the attached snapshot resource");
                ctx.resource("snapshot")?
            }
        };
        let source =
            WithIdentities::wrap(Box::new(FileSource::open(&path)?), config.identities(ctx)?);
        let store = open_store(ctx, &config)?;
        let options = ImportBackupOptions {
            limits: Limits {
                allow_external_symlinks: p.allow_external_symlinks,
                allow_devices: p.allow_devices,
                ..Limits::default()
            },
            pg_bin_dir: config.pg_bin_dir(),
            state_dir: state_dir(ctx),
            name_prefix: ctx.juju().app_name().to_string(),
            model: ctx.juju().model_name.clone(),
            model_uuid: ctx.juju().model_uuid.clone(),
            made_by: ctx.juju().unit_name.clone(),
        };
        let progress = ctx.progress();
        let stats = import_backup(store.as_ref(), source.as_ref(), &options, &progress)?;
        ctx.log(&format!(
            "imported {} as backup {}",
            path.display(),
            stats.metadata.id
        ));
        Ok(ImportBackupResults {
            backup_id: stats.metadata.id,
            backup: BackupResult {
                path: stats.url,
                sha256: stats.metadata.sha256,
                size: human_size(stats.metadata.size),
            },
            imported_from: path.display().to_string(),
        })
    }
}
