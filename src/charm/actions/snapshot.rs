//! `snapshot`: an archive of the configured paths on the unit.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::charm::actions::{
    copy_result, log_warnings, seconds, services_to_stop, snapshot_options, state_dir,
};
use crate::charm::config::CharmConfig;
use crate::charm::own_dirs;
use crate::commands::snapshot::{snapshot, snapshot_file_name};
use crate::error::Error;
use crate::juju::{Action, BoxError, Context};
use crate::progress::human_size;

/// `snapshot`: archive the configured paths into `target`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot;

/// `snapshot` params.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SnapshotParams {
    /// Directory for the archive.
    pub target: String,
    /// Stop the `services` units while the data is read.
    #[serde(default)]
    pub stop_services: bool,
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
    /// How long the services were down (`stop-services`), e.g. `4.2s`.
    #[serde(rename = "services-down", skip_serializing_if = "Option::is_none")]
    pub services_down: Option<String>,
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
        let mut options = snapshot_options(ctx, &config)?;
        options.stop_services = services_to_stop(&config, p.stop_services)?;
        let target = PathBuf::from(&p.target);
        if !target.is_absolute() {
            return Err(Error::invalid(format!(
                "target {:?} must be an absolute directory",
                p.target
            ))
            .into());
        }
        own_dirs::refuse_inside("target", &target, &options.paths)?;
        let name = snapshot_file_name(ctx.juju().app_name(), &options);
        let progress = ctx.progress();
        let stats = snapshot(&target, &name, &options, &progress)?;
        log_warnings(ctx, &stats.archive.warnings);
        ctx.log(&format!(
            "wrote {} ({} of data in {} entries) in {:.1}s",
            stats.path.display(),
            human_size(stats.archive.input_bytes),
            stats.archive.entries,
            stats.elapsed.as_secs_f64()
        ));
        Ok(SnapshotResults {
            copy: copy_result(ctx, &stats.path),
            snapshot: SnapshotResult {
                path: stats.path.display().to_string(),
                sha256: stats.archive.sha256,
                size: human_size(stats.archive.bytes_written),
                bytes: stats.archive.bytes_written,
                services_down: stats.services_down.map(seconds),
            },
        })
    }
}
