//! The end of a point-in-time restore: the server starts on the restored base backup, replays
//! archived WAL to the target and promotes; a recovery that ends short says where it stopped.

use std::path::Path;
use std::time::Duration;

use super::start_services;
use crate::error::{Error, ErrorKind, Result, chain};
use crate::progress::Progress;
use crate::source::postgres::wal::{
    Recovered, RecoveryEnd, RecoveryTarget, clear_recovery_settings, pg_time,
};
use crate::source::postgres::{PgCtl, Postgres};

/// Replay that makes no progress for this long fails the restore.
const STALL: Duration = Duration::from_secs(600);

/// Whether a postmaster runs on `data_dir` (its `postmaster.pid` names a live process).
fn server_runs(data_dir: &Path) -> bool {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

fn start_and_wait(
    pg: &Postgres,
    data_dir: &Path,
    services: &[String],
    pg_ctl: Option<&PgCtl>,
    progress: &dyn Progress,
) -> Result<RecoveryEnd> {
    let started = start_services(services, pg_ctl);
    if let Err(e) = &started
        && !server_runs(data_dir)
    {
        progress.step(&format!("the server stopped during recovery: {}", chain(e)));
        return Ok(RecoveryEnd::Stopped(None));
    }
    let running = || server_runs(data_dir);
    pg.wait_recovery(&running, STALL, progress)
}

/// Starts the server on the restored `data_dir` (recovery settings written), waits until it
/// promotes, and removes the recovery settings. When it stops because the archive holds no
/// transaction after the target (which lies within the archive, as planned), the database at
/// the target is the end of the timeline's WAL: recovery goes on to it.
///
/// # Errors
/// When recovery stops short (the store unreachable, WAL unreadable), saying where.
pub(super) fn recover(
    pg: &Postgres,
    target: &RecoveryTarget,
    data_dir: &Path,
    services: &[String],
    pg_ctl: Option<&PgCtl>,
    progress: &dyn Progress,
) -> Result<Recovered> {
    if let Some(m) = &target.failure_marker {
        let _ = std::fs::remove_file(m);
    }
    progress.step(&format!(
        "starting PostgreSQL to replay archived WAL on timeline {} {}",
        target.timeline,
        target.time.map_or_else(
            || "to its end".to_string(),
            |t| format!("to {}", pg_time(t))
        )
    ));
    let mut end = start_and_wait(pg, data_dir, services, pg_ctl, progress)?;
    let fetch_failed = || {
        target
            .failure_marker
            .as_ref()
            .and_then(|m| std::fs::read_to_string(m).ok())
    };
    if matches!(end, RecoveryEnd::Stopped(_)) && target.time.is_some() && fetch_failed().is_none() {
        progress.step(
            "no transaction in the archived WAL committed after the target: replaying the \
             timeline's WAL to its end, which is the database as it was at the target",
        );
        target.without_time(data_dir)?;
        end = start_and_wait(pg, data_dir, services, pg_ctl, progress)?;
    }
    match end {
        RecoveryEnd::Promoted(r) => {
            clear_recovery_settings(data_dir)?;
            pg.checkpoint()?;
            progress.step(&format!(
                "recovery ended and the server promoted to timeline {}: last transaction \
                 replayed committed at {}, WAL replayed to {}",
                r.timeline, r.last_transaction, r.replay_lsn
            ));
            Ok(r)
        }
        RecoveryEnd::Stopped(last) => {
            let at = last.map_or_else(
                || "before it accepted connections".to_string(),
                |l| {
                    format!(
                        "at WAL {} (last transaction replayed committed at {})",
                        l.replay_lsn, l.last_transaction
                    )
                },
            );
            let why = fetch_failed().map_or_else(
                || "see the PostgreSQL log for why".to_string(),
                |e| format!("WAL could not be fetched: {}", e.trim()),
            );
            Err(Error::new(
                ErrorKind::SourceFailed,
                format!(
                    "recovery stopped {at}, short of the target: {why}. The base backup is in \
                     place and the server is stopped in recovery; fix the cause and start it \
                     again to resume, or restore again"
                ),
            ))
        }
    }
}
