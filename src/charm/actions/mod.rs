//! The charm's actions: params in, library commands called, results out.

mod backups;
mod import;
mod pitr;
mod restore;
mod snapshot;

use std::path::{Path, PathBuf};

pub use backups::*;
pub use import::*;
pub use restore::*;
pub use snapshot::*;

use crate::charm::config::CharmConfig;
use crate::charm::own_dirs;
use crate::charm::s3::s3_options;
use crate::commands::snapshot::SnapshotOptions;
use crate::juju::{BoxError, Context};
use crate::store::{LocalStore, S3Store, Store};

/// Where the unit keeps its lock (beside the charm directory, in the unit agent's directory).
pub fn state_dir(ctx: &Context) -> PathBuf {
    let charm = &ctx.juju().charm_dir;
    charm
        .parent()
        .unwrap_or(Path::new("/var/lib/charm-backup"))
        .join("charm-backup-state")
}

pub(crate) fn snapshot_options(
    ctx: &Context,
    config: &CharmConfig,
) -> Result<SnapshotOptions, BoxError> {
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
    o.recipients = config.recipients()?;
    o.s3 = crate::charm::s3::s3_source(ctx, &config.s3_source_buckets)?;
    if !(o.paths.is_empty() && o.has_sources()) {
        // The library names the path; the charm names the option to change.
        crate::commands::snapshot::check_paths(&o.paths).map_err(|e| {
            crate::Error::new(
                e.kind(),
                format!(
                    "{e}: set the paths option (juju config {} paths=\"/etc/app /var/lib/app\")",
                    ctx.juju().app_name()
                ),
            )
        })?;
    }
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

pub(crate) fn log_warnings(ctx: &Context, warnings: &[String]) {
    if !warnings.is_empty() {
        ctx.log(&format!(
            "{} warning(s); the archive is complete but these files may be inconsistent",
            warnings.len()
        ));
    }
}

/// The units `stop-services` stops: the `services` option, which must then be set.
pub(crate) fn services_to_stop(config: &CharmConfig, stop: bool) -> Result<Vec<String>, BoxError> {
    if !stop {
        return Ok(Vec::new());
    }
    let units = config.services();
    if units.is_empty() {
        return Err(crate::Error::invalid(
            "stop-services stops the units of the services option, which is empty: juju config \
             <app> services=\"maas-regiond maas-rackd\"",
        )
        .into());
    }
    Ok(units)
}

/// A duration for results: `4.2s`.
pub(crate) fn seconds(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `copy.cmd`: the `juju scp` command that fetches `path` off this unit.
pub(crate) fn copy_result(ctx: &Context, path: &Path) -> CopyResult {
    CopyResult {
        cmd: format!("juju scp {}:{} .", ctx.juju().unit_name, path.display()),
    }
}
