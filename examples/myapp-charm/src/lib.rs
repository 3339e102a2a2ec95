//! An example charm built on charm-backup: `backup-myapp` archives the `data-dir` option into
//! a target directory, `restore-myapp` puts an archive back. Errors name this charm's own
//! option; progress goes to `action-log` through `ctx.progress()`.

use std::path::PathBuf;

use charm_backup::commands::restore::{RestoreOptions, restore};
use charm_backup::commands::snapshot::{SnapshotOptions, snapshot};
use charm_backup::juju::{Action, BoxError, Charm, Context};
use serde::{Deserialize, Serialize};

/// The charm's config.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Config {
    data_dir: String,
}

/// The data directory, with the option to change when it is wrong.
fn data_dir(ctx: &Context) -> Result<PathBuf, BoxError> {
    let config: Config = ctx.config()?;
    let dir = PathBuf::from(&config.data_dir);
    if !dir.is_absolute() || !dir.exists() {
        return Err(format!(
            "data-dir {:?} is not an existing absolute directory: juju config {} data-dir=...",
            config.data_dir,
            ctx.juju().app_name()
        )
        .into());
    }
    Ok(dir)
}

/// `backup-myapp`.
pub struct BackupMyApp;

/// `backup-myapp` params.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BackupParams {
    target: String,
}

/// `backup-myapp` results.
#[derive(Serialize)]
pub struct BackupResults {
    path: String,
    sha256: String,
}

impl Action for BackupMyApp {
    const NAME: &'static str = "backup-myapp";
    type Params = BackupParams;
    type Results = BackupResults;
    fn run(&self, ctx: &mut Context, p: BackupParams) -> Result<BackupResults, BoxError> {
        let options = SnapshotOptions::new(vec![data_dir(ctx)?])
            .with_exclude(vec!["*.sock".into()])
            .with_unit(ctx.juju().unit_name.clone());
        let stats = snapshot(p.target.as_ref(), "myapp.tar.gz", &options, &ctx.progress())?;
        Ok(BackupResults {
            path: stats.path.display().to_string(),
            sha256: stats.archive.sha256,
        })
    }
}

/// `restore-myapp`.
pub struct RestoreMyApp;

/// `restore-myapp` params.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RestoreParams {
    path: String,
    sha256: Option<String>,
}

/// `restore-myapp` results.
#[derive(Serialize)]
pub struct RestoreResults {
    restored: String,
}

impl Action for RestoreMyApp {
    const NAME: &'static str = "restore-myapp";
    type Params = RestoreParams;
    type Results = RestoreResults;
    fn run(&self, ctx: &mut Context, p: RestoreParams) -> Result<RestoreResults, BoxError> {
        let dir = data_dir(ctx)?;
        let state = ctx.juju().charm_dir.parent().map_or_else(
            || PathBuf::from("/var/lib/myapp-charm"),
            |d| d.join("myapp-state"),
        );
        let mut options = RestoreOptions::new(vec![dir.clone()], state);
        if let Some(sha) = p.sha256 {
            options = options.with_expected_sha256(sha);
        }
        let source = charm_backup::archive::FileSource::open(p.path.as_ref())?;
        restore(&source, &options, &ctx.progress())?;
        Ok(RestoreResults {
            restored: dir.display().to_string(),
        })
    }
}

/// The charm, as its `dispatch` binary runs it.
pub fn charm() -> Charm {
    Charm::new().action(BackupMyApp).action(RestoreMyApp)
}
