//! Prometheus text-format metrics of a unit's backups, written atomically for node-exporter's
//! textfile collector (`--collector.textfile.directory`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::schedule::history::BackupHistory;

/// Labels every sample carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricLabels {
    /// The Juju unit (`charm-backup/0`).
    pub unit: String,
    /// Its application.
    pub application: String,
    /// Its model.
    pub model: String,
}

/// The metrics file of `unit` in `dir`: `charm_backup_<app>_<n>.prom`.
pub fn metrics_file(dir: &Path, unit: &str) -> PathBuf {
    let safe: String = unit
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir.join(format!("charm_backup_{safe}.prom"))
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics for `history`, in the Prometheus text format.
pub fn render(history: &BackupHistory, labels: &MetricLabels) -> String {
    let l = format!(
        "{{unit=\"{}\",application=\"{}\",model=\"{}\"}}",
        escape(&labels.unit),
        escape(&labels.application),
        escape(&labels.model)
    );
    let secs = |t: Option<jiff::Timestamp>| t.map_or(0, |t| t.as_second());
    let success = history.last_success();
    let attempt = history.last_attempt();
    let samples: [(&str, &str, &str, String); 7] = [
        (
            "charm_backup_last_success_timestamp_seconds",
            "gauge",
            "When the newest backup that finished ended (0: none yet).",
            secs(success.and_then(|o| o.finished_at())).to_string(),
        ),
        (
            "charm_backup_last_attempt_timestamp_seconds",
            "gauge",
            "When the newest backup attempt ended (0: none yet).",
            secs(attempt.and_then(|o| o.finished_at())).to_string(),
        ),
        (
            "charm_backup_last_attempt_success",
            "gauge",
            "1 when the newest backup attempt finished, 0 when it failed.",
            u8::from(attempt.is_some_and(|o| o.succeeded())).to_string(),
        ),
        (
            "charm_backup_last_duration_seconds",
            "gauge",
            "How long the newest backup attempt ran.",
            attempt
                .map_or(0.0, |o| o.duration().as_secs_f64())
                .to_string(),
        ),
        (
            "charm_backup_last_size_bytes",
            "gauge",
            "Stored size of the newest backup that finished.",
            success.map_or(0, |o| o.size).to_string(),
        ),
        (
            "charm_backup_failures_total",
            "counter",
            "Backup attempts that failed.",
            history.failures_total.to_string(),
        ),
        (
            "charm_backup_attempts_total",
            "counter",
            "Backup attempts, skipped ones included.",
            history.attempts_total.to_string(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in samples {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{l} {value}\n"
        );
    }
    out
}

/// Writes the metrics of `history` into `dir` atomically (mode `0644`, so node-exporter can read
/// them; they hold no secret).
///
/// # Errors
/// When the directory does not exist or cannot be written.
pub fn write(dir: &Path, history: &BackupHistory, labels: &MetricLabels) -> Result<PathBuf> {
    let path = metrics_file(dir, &labels.unit);
    crate::schedule::write_atomic(&path, render(history, labels).as_bytes(), 0o644)?;
    Ok(path)
}
