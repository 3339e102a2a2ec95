//! Scheduled backups as the charm runs them: the hooks keep a systemd timer and the settings it
//! needs in step with the config and relations; systemd runs `dispatch scheduled-backup`, which
//! replays those settings outside any hook and takes the same create-backup an action takes;
//! every outcome is recorded, and the unit status shows the health read from the record.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use jiff::Timestamp;

use crate::charm::actions::{BackupRequest, backup_options, state_dir, take_backup};
use crate::charm::config::CharmConfig;
use crate::commands::create_backup::CreateBackupStats;
use crate::error::{ErrorKind, chain};
use crate::juju::replay::SavedContext;
use crate::juju::{BoxError, Context, Status};
use crate::progress::human_size;
use crate::schedule::history::{ORIGIN_SCHEDULED, Outcome};
use crate::schedule::metrics::{self, MetricLabels};
use crate::schedule::units::Installed;
use crate::schedule::{BackupHistory, Calendar, HealthOptions, Systemd, TimerUnits};

/// The settings a scheduled run replays, in the unit's state directory (mode `0600`).
pub const SETTINGS_FILE: &str = "scheduled-backup.json";

/// How long a scheduled run waits for an operation that holds the unit before it skips.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

fn settings_path(ctx: &Context) -> PathBuf {
    state_dir(ctx).join(SETTINGS_FILE)
}

fn units_name(ctx: &Context) -> String {
    TimerUnits::name_for(&ctx.juju().unit_name)
}

fn scheduled_request(lock_wait: Duration) -> BackupRequest {
    BackupRequest {
        origin: ORIGIN_SCHEDULED,
        kind: "full".into(),
        notes: String::new(),
        take_over_store: false,
        stop_services: false,
        lock_wait,
    }
}

/// Brings the timer, its service and the saved settings in line with `config` (installing,
/// updating or removing them), then adds the backup health to `status`.
///
/// # Errors
/// When the settings cannot be written.
pub fn sync(
    ctx: &Context,
    config: &CharmConfig,
    systemd: &Systemd,
    status: Status,
) -> Result<Status, BoxError> {
    let name = units_name(ctx);
    let expression = config.backup_schedule.trim();
    if expression.is_empty() {
        remove(ctx, config, systemd, false)?;
        return Ok(with_health(ctx, config, None, status));
    }
    let calendar = match Calendar::parse(expression) {
        Ok(c) => c,
        Err(e) => {
            let kept = if systemd.is_installed(&name) {
                " (the timer keeps its previous schedule until then)"
            } else {
                ""
            };
            return Ok(Status::Blocked(format!("backup-schedule: {e}{kept}")));
        }
    };
    save_settings(ctx)?;
    let units = TimerUnits {
        name: name.clone(),
        description: format!("create-backup of Juju unit {}", ctx.juju().unit_name),
        command: vec![
            ctx.juju().charm_dir.join("dispatch").display().to_string(),
            "scheduled-backup".into(),
            settings_path(ctx).display().to_string(),
        ],
        calendar: expression.to_string(),
        jitter_secs: config.schedule_jitter()?,
    };
    match systemd.install(&units) {
        Ok(Installed::Unchanged) => {}
        Ok(_) => ctx.log(&format!(
            "backup timer {} runs create-backup at {} (next {})",
            units.timer_name(),
            calendar.normalized,
            calendar
                .next_elapse()
                .map(crate::schedule::history::short_time)
                .unwrap_or_default()
        )),
        Err(e) => {
            return Ok(Status::Blocked(format!(
                "cannot install the backup timer {}: {e}",
                units.timer_name()
            )));
        }
    }
    Ok(with_health(ctx, config, Some(&calendar), status))
}

/// Removes the timer, its service and the saved settings (and on `remove`, the unit's metrics
/// file, so no stale figures stay behind).
///
/// # Errors
/// When `systemctl` or a removal fails.
pub fn remove(
    ctx: &Context,
    config: &CharmConfig,
    systemd: &Systemd,
    unit_removed: bool,
) -> Result<(), BoxError> {
    let name = units_name(ctx);
    if systemd.remove(&name)? {
        ctx.log(&format!("removed the backup timer {name}.timer"));
    }
    let mut files = vec![settings_path(ctx)];
    if unit_removed && let Some(dir) = config.metrics_dir() {
        files.push(metrics::metrics_file(&dir, &ctx.juju().unit_name));
    }
    for f in files {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::Error::io("cannot remove", &f, e).into()),
        }
    }
    Ok(())
}

/// Saves what a scheduled run needs to replay: the answers the hook tools gave while the
/// create-backup options were worked out (config, the `s3-parameters` relation, the secrets
/// they name), with the unit's environment. Only root can read it: it holds credentials.
fn save_settings(ctx: &Context) -> Result<(), BoxError> {
    let tools = ctx.tools();
    tools.start_recording();
    let planned = CharmConfig::read(ctx)
        .map_err(BoxError::from)
        .and_then(|config| {
            crate::charm::s3::s3_options(ctx)?;
            backup_options(ctx, &config, &scheduled_request(Duration::ZERO)).map(drop)
        });
    let calls = tools.take_recording();
    if let Err(e) = planned {
        // Saved anyway: the scheduled run then fails with this same error, and says so.
        ctx.debug_log(
            crate::juju::LogLevel::Warning,
            &format!("a scheduled backup would fail: {}", chain(e.as_ref())),
        );
    }
    let saved = SavedContext::new(ctx.juju(), calls);
    let bytes = serde_json::to_vec(&saved)?;
    let dir = state_dir(ctx);
    crate::archive::create_private_dir(&dir)?;
    crate::schedule::write_atomic(&dir.join(SETTINGS_FILE), &bytes, 0o600)?;
    Ok(())
}

/// `status` with the backup health added: the last backup and the next scheduled one, or
/// `blocked` when the last scheduled run failed or the newest backup is older than
/// `backup-max-age`. Left as it is when not active, or with no schedule and no backup yet.
pub fn with_health(
    ctx: &Context,
    config: &CharmConfig,
    calendar: Option<&Calendar>,
    status: Status,
) -> Status {
    let Status::Active(msg) = status else {
        return status;
    };
    let history = BackupHistory::load(&state_dir(ctx)).unwrap_or_default();
    if calendar.is_none() && history.outcomes.is_empty() {
        return Status::Active(msg);
    }
    let max_age = match config.max_age() {
        Ok(Some(Some(d))) => Some(d),
        Ok(Some(None)) => calendar
            .and_then(Calendar::interval)
            .and_then(|i| i.checked_mul(2)),
        _ => None,
    };
    let options = HealthOptions {
        max_age,
        next: calendar.and_then(Calendar::next_elapse),
    };
    let health = history.health(&options, Timestamp::now());
    match health.problem {
        Some(p) => Status::Blocked(p),
        None => Status::Active(format!("{msg}; {}", health.summary)),
    }
}

/// Sets the status a hook would, from an action (after a backup by hand).
pub fn refresh_status(ctx: &Context) {
    let Ok(config) = CharmConfig::read(ctx) else {
        return;
    };
    let Ok(status) = crate::charm::hooks::status_for(ctx, &config) else {
        return;
    };
    let calendar = Calendar::parse(&config.backup_schedule).ok();
    let _ = ctx.set_status(&with_health(ctx, &config, calendar.as_ref(), status));
}

/// Whether `e` says another operation held the unit (the backup was skipped, not failed).
fn is_busy(e: &BoxError) -> bool {
    e.downcast_ref::<crate::Error>()
        .is_some_and(|e| e.kind() == ErrorKind::Busy)
}

/// Records the outcome of a backup started at `started` in the unit's history and, when
/// `config`'s `metrics-textfile-dir` is set, rewrites the metrics. A failure to record is
/// logged, never the backup's failure.
pub fn record_outcome(
    ctx: &Context,
    config: Option<&CharmConfig>,
    origin: &str,
    started: Timestamp,
    result: &Result<CreateBackupStats, BoxError>,
) {
    let mut outcome = Outcome {
        origin: origin.to_string(),
        started: started.to_string(),
        finished: Timestamp::now().to_string(),
        ..Default::default()
    };
    match result {
        Ok(s) => {
            outcome.result = "success".into();
            outcome.id = s.metadata.id.clone();
            outcome.size = s.metadata.size;
        }
        Err(e) => {
            outcome.result = if is_busy(e) { "skipped" } else { "failure" }.into();
            outcome.error = chain(e.as_ref());
        }
    }
    let recorded = BackupHistory::record(&state_dir(ctx), outcome).and_then(|history| {
        let Some(dir) = config.and_then(CharmConfig::metrics_dir) else {
            return Ok(());
        };
        let labels = MetricLabels {
            unit: ctx.juju().unit_name.clone(),
            application: ctx.juju().app_name().to_string(),
            model: ctx.juju().model_name.clone(),
        };
        metrics::write(&dir, &history, &labels).map(drop)
    });
    if let Err(e) = recorded {
        ctx.log(&format!(
            "the backup's outcome could not be recorded: {}",
            chain(&e)
        ));
    }
}

/// The scheduled run (`dispatch scheduled-backup SETTINGS`, the service's command): replays
/// the settings the last hook saved and takes a backup, waiting up to `lock_wait` for an
/// operation that holds the unit, then skipping. Logs to stdout (the journal); exits non-zero
/// when the backup failed, so systemd marks the service failed too.
pub fn run_scheduled(settings: &Path, lock_wait: Duration) -> ExitCode {
    let saved: SavedContext = match std::fs::read(settings)
        .map_err(BoxError::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "cannot read the scheduled backup's settings {}: {e}; they are written by the \
                 charm's hooks when backup-schedule is set",
                settings.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let mut ctx = Context::new(saved.juju(), saved.tools());
    if let Err(e) = crate::charm::hooks::recover_interrupted(&mut ctx) {
        eprintln!(
            "cannot finish an interrupted operation: {}",
            chain(e.as_ref())
        );
    }
    println!(
        "scheduled create-backup of {} started",
        ctx.juju().unit_name
    );
    match take_backup(&ctx, &scheduled_request(lock_wait)) {
        Ok(s) => {
            println!(
                "backup {} finished: {} ({}), sha256 {}",
                s.metadata.id,
                s.url,
                human_size(s.metadata.size),
                s.metadata.sha256
            );
            ExitCode::SUCCESS
        }
        Err(e) if is_busy(&e) => {
            println!("skipped: {}", chain(e.as_ref()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scheduled backup failed: {}", chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
