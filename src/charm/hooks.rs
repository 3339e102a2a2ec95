//! The charm's hooks: validate config and relation data and say so in the unit status.

use crate::archive::create_private_dir;
use crate::charm::config::CharmConfig;
use crate::juju::{BoxError, Context, Status};

/// Handles every hook: `install`, `config-changed`, `update-status`, `upgrade-charm`, `start`
/// and the `s3-parameters` relation hooks all end in the status the config calls for.
///
/// # Errors
/// When a hook tool fails.
pub fn handle(ctx: &mut Context, hook: &str) -> Result<(), BoxError> {
    let config = CharmConfig::read(ctx)?;
    let status = status_for(ctx, &config)?;
    if matches!(hook, "install" | "config-changed" | "upgrade-charm")
        && !matches!(status, Status::Blocked(_))
    {
        create_private_dir(std::path::Path::new(&config.local_store))?;
    }
    ctx.set_status(&status)?;
    Ok(())
}

/// Finishes or undoes a restore that was killed part way, and says so (`action-log` in an
/// action, the Juju log in a hook). Runs before every action and hook.
///
/// # Errors
/// When the recovery fails; the journal is kept for the next try.
pub fn recover_interrupted(ctx: &mut Context) -> Result<(), BoxError> {
    if let Some(msg) = crate::commands::restore::recover(&crate::charm::actions::state_dir(ctx))? {
        ctx.log(&msg);
        ctx.debug_log(crate::juju::LogLevel::Warning, &msg);
    }
    Ok(())
}

/// The status for this config and relation data.
///
/// # Errors
/// When a hook tool fails.
pub fn status_for(ctx: &Context, config: &CharmConfig) -> Result<Status, BoxError> {
    if let Some(s) = config.problem() {
        return Ok(s);
    }
    let mut dest = config.local_store.clone();
    if let Some((app, o)) = crate::charm::s3::s3_options(ctx)? {
        let missing = o.missing();
        if !missing.is_empty() {
            return Ok(Status::Blocked(format!(
                "s3-parameters from {app} lacks {}: set them on the s3-integrator",
                missing.join(", ")
            )));
        }
        let path = o.path.trim_matches('/');
        dest = if path.is_empty() {
            format!("s3://{}", o.bucket)
        } else {
            format!("s3://{}/{path}", o.bucket)
        };
    }
    let mut what: Vec<String> = config
        .paths
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !config.etcd_endpoint.is_empty() {
        what.insert(0, format!("etcd at {}", config.etcd_endpoint));
    }
    if let Ok(Some(pg)) = config.postgresql_options() {
        what.insert(0, format!("PostgreSQL ({})", pg.mode.name()));
    }
    Ok(Status::Active(format!(
        "backing up {} to {dest}",
        what.join(" ")
    )))
}
