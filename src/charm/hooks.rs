//! The charm's hooks: validate config and relation data and say so in the unit status.

use crate::archive::create_private_dir;
use crate::charm::config::CharmConfig;
use crate::juju::{BoxError, Context, Status};
use crate::schedule::Systemd;

/// The hooks the charm has: the repository's `hooks/` links (packed by `cargo xtask pack`) and
/// the local agent's charm directory are both this list (a test keeps `hooks/` in step).
pub const HOOKS: [&str; 13] = [
    "install",
    "start",
    "stop",
    "remove",
    "config-changed",
    "update-status",
    "upgrade-charm",
    "s3-parameters-relation-joined",
    "s3-parameters-relation-changed",
    "s3-parameters-relation-broken",
    "s3-source-relation-joined",
    "s3-source-relation-changed",
    "s3-source-relation-broken",
];

/// The hook handler of a charm on a machine whose systemd is `systemd`: `install`,
/// `config-changed`, `update-status`, `upgrade-charm`, `start` and the `s3-parameters`
/// relation hooks all bring the backup timer in line with the config and end in the status
/// the config and the backup health call for; `stop` and `remove` remove the timer.
pub fn handler(systemd: Systemd) -> impl Fn(&mut Context, &str) -> Result<(), BoxError> {
    move |ctx, hook| handle(ctx, hook, &systemd)
}

/// Handles one hook (see [`handler`]).
///
/// # Errors
/// When a hook tool fails, or the timer cannot be removed on `stop`/`remove`.
pub fn handle(ctx: &mut Context, hook: &str, systemd: &Systemd) -> Result<(), BoxError> {
    let config = CharmConfig::read(ctx)?;
    if matches!(hook, "stop" | "remove") {
        // The unit is going away: a timer that cannot be removed is logged, not an error that
        // would hold the removal up.
        if let Err(e) = crate::charm::schedule::remove(ctx, &config, systemd, hook == "remove") {
            ctx.debug_log(
                crate::juju::LogLevel::Warning,
                &format!(
                    "cannot remove the backup timer: {}; remove it by hand with systemctl",
                    crate::error::chain(e.as_ref())
                ),
            );
        }
        if hook == "remove" {
            // The copy of dispatch the archive_command runs goes with the unit: put the
            // server's own settings back first, or its WAL would pile up unarchived.
            let mut off = config.clone();
            off.postgresql_wal_archive = false;
            if let Err(e) = crate::charm::wal::sync(ctx, &off, Status::Active(String::new())) {
                ctx.debug_log(
                    crate::juju::LogLevel::Warning,
                    &format!(
                        "cannot turn WAL archiving off: {}; set the server's archive_command \
                         back by hand",
                        crate::error::chain(e.as_ref())
                    ),
                );
            }
        }
        return Ok(());
    }
    let status = status_for(ctx, &config)?;
    if matches!(hook, "install" | "config-changed" | "upgrade-charm")
        && !matches!(status, Status::Blocked(_))
    {
        create_private_dir(std::path::Path::new(&config.local_store))?;
    }
    let status = match status {
        Status::Blocked(_) => status,
        s => crate::charm::wal::sync(ctx, &config, s).unwrap_or_else(|e| {
            Status::Blocked(format!(
                "WAL archiving: {}",
                crate::error::chain(e.as_ref())
            ))
        }),
    };
    let status = crate::charm::schedule::sync(ctx, &config, systemd, status)?;
    ctx.set_status(&status)?;
    Ok(())
}

/// Finishes or undoes a restore that was killed part way, and says so (`action-log` in an
/// action, the Juju log in a hook). Runs before every action and hook.
///
/// # Errors
/// When the recovery fails; the journal is kept for the next try.
pub fn recover_interrupted(ctx: &mut Context) -> Result<(), BoxError> {
    let state = crate::charm::actions::state_dir(ctx);
    let mut said = Vec::new();
    if let Some(msg) = crate::commands::restore::recover(&state)? {
        said.push(msg);
    }
    // Units an operation stopped and did not start (it was killed): not while one runs.
    if state.join(crate::commands::services::RECORD).exists()
        && let Ok(_lock) = crate::commands::lock::OperationLock::acquire(&state, "recovery")
        && let Some(msg) = crate::commands::services::recover(&state)?
    {
        said.push(msg);
    }
    if state.join("open-uploads").exists()
        && let Ok(config) = CharmConfig::read(ctx)
        && let Ok(store) = crate::charm::actions::open_store(ctx, &config)
    {
        said.extend(crate::commands::create_backup::sweep_interrupted(
            store.as_ref(),
            &state,
        ));
    }
    for msg in said {
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
    if let Some(rel) = crate::charm::s3::s3_relation(ctx)? {
        let app = rel.app;
        let o = match rel.options {
            Ok(o) => o,
            Err(e) => return Ok(Status::Blocked(e.to_string())),
        };
        let missing = o.missing();
        if !missing.is_empty() {
            return Ok(Status::Blocked(format!(
                "s3-parameters from {app} lacks {}: set them on the s3-integrator",
                missing.join(", ")
            )));
        }
        if let Err(e) = o.validate() {
            return Ok(Status::Blocked(e.to_string()));
        }
        let path = o.key_prefix();
        dest = if path.is_empty() {
            format!("s3://{}", o.bucket)
        } else {
            format!("s3://{}/{path}", o.bucket)
        };
    } else if let Err(e) = crate::charm::own_dirs::refuse_inside(
        "local-store",
        std::path::Path::new(&config.local_store),
        &config.paths(),
    ) {
        return Ok(Status::Blocked(e.to_string()));
    }
    let mut what: Vec<String> = config
        .paths
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !config.etcd_endpoint.is_empty() {
        what.insert(0, format!("etcd at {}", config.etcd_endpoint));
    }
    match crate::charm::s3::s3_source(ctx, &config.s3_source_buckets) {
        Ok(Some(s)) => what.push(format!(
            "S3 buckets {} at {}",
            config.s3_source_buckets.trim(),
            s.endpoint
        )),
        Ok(None) => {}
        Err(e) => return Ok(Status::Blocked(e.to_string())),
    }
    // The password is read and the server asked now, so a problem shows before an action
    // needs the connection.
    match config.postgresql(ctx) {
        Ok(Some(pg)) => {
            if let Err(e) = pg.connect() {
                return Ok(Status::Blocked(e.to_string()));
            }
            what.insert(0, format!("PostgreSQL ({})", pg.options().mode.name()));
        }
        Ok(None) => {}
        Err(e) => return Ok(Status::Blocked(e.to_string())),
    }
    // An exclude that matches nothing is most likely a typo: say so (within a bounded look).
    let unmatched = crate::archive::Excludes::new(&config.exclude())
        .map(|x| x.unmatched(&config.paths(), 200_000))
        .unwrap_or_default();
    let note = if unmatched.is_empty() {
        String::new()
    } else {
        format!(
            "; exclude {} matches nothing",
            unmatched
                .iter()
                .map(|u| format!("{u:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    Ok(Status::Active(format!(
        "backing up {} to {dest}{note}",
        what.join(" ")
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hooks_directory_links_every_hook_to_dispatch() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks");
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        let mut expected: Vec<String> = super::HOOKS.iter().map(|h| h.to_string()).collect();
        expected.sort();
        assert_eq!(found, expected);
        for h in super::HOOKS {
            assert_eq!(
                std::fs::read_link(dir.join(h)).unwrap(),
                std::path::Path::new("../dispatch")
            );
        }
    }
}
