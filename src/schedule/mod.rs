//! Backups on a schedule, and what an operator sees of them: the systemd timer and service that
//! run them ([`units`]), the calendar expressions they follow ([`calendar`]), the record of each
//! outcome and the health read from it ([`history`]), and Prometheus metrics for node-exporter's
//! textfile collector ([`metrics`]). Nothing here knows of Juju.

pub mod calendar;
pub mod history;
pub mod metrics;
pub mod units;

pub use calendar::Calendar;
pub use history::{BackupHistory, Health, HealthOptions, Outcome};
pub use metrics::MetricLabels;
pub use units::{Systemd, TimerUnits};

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, renamed over
/// it) with `mode`, so a reader sees the old content or the new, never a part.
///
/// # Errors
/// When the directory cannot be written.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8], mode: u32) -> crate::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use crate::error::IoContext;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".charm-backup-")
        .tempfile_in(dir)
        .at("cannot write a file in", dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .at("cannot set the mode of a file in", dir)?;
    tmp.write_all(bytes).at("cannot write", path)?;
    tmp.as_file().sync_all().at("cannot write", path)?;
    tmp.persist(path)
        .map_err(|e| crate::Error::io("cannot write", path, e.error))?;
    Ok(())
}
