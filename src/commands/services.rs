//! systemd units stopped around a capture (`stop-services`) and started again whatever
//! happens. A record in the unit's state directory names the units that are down, written
//! before they stop and removed once they run again, so when the operation is killed meanwhile
//! (`juju cancel-task` sends SIGKILL) the next action or hook starts them ([`recover`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result, chain};
use crate::progress::Progress;
use crate::source::process::run;

/// The record of stopped units, in the unit's state directory.
pub const RECORD: &str = "stopped-services.json";

/// Runs `systemctl <verb> <units>` (nothing for no units).
///
/// # Errors
/// When `systemctl` fails, with its message.
pub fn systemctl(verb: &str, units: &[String]) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    run(
        Command::new("systemctl").arg(verb).args(units),
        &format!("{verb} {}", units.join(" ")),
    )
    .map(drop)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Record {
    units: Vec<String>,
    by: String,
    since: String,
}

/// Units stopped for an operation; started again by [`StoppedServices::start`], or on drop.
#[derive(Debug)]
pub struct StoppedServices {
    units: Vec<String>,
    record: PathBuf,
    since: Instant,
    started: bool,
}

impl StoppedServices {
    /// Stops `units` for `by` (e.g. `create-backup`), after recording them in `state_dir`.
    ///
    /// # Errors
    /// When the record cannot be written or a unit does not stop (those that did are started
    /// again).
    pub fn stop(
        state_dir: &Path,
        units: &[String],
        by: &str,
        progress: &dyn Progress,
    ) -> Result<Self> {
        crate::archive::create_private_dir(state_dir)?;
        let record = state_dir.join(RECORD);
        let r = Record {
            units: units.to_vec(),
            by: by.to_string(),
            since: jiff::Timestamp::now().to_string(),
        };
        let bytes = serde_json::to_vec(&r)
            .map_err(|e| Error::new(ErrorKind::Other, "cannot encode").with_source(e))?;
        crate::schedule::write_atomic(&record, &bytes, 0o600)?;
        progress.step(&format!("stopping {}", units.join(" ")));
        let mut s = StoppedServices {
            units: units.to_vec(),
            record,
            since: Instant::now(),
            started: false,
        };
        if let Err(e) = systemctl("stop", units) {
            let again = s.start_now();
            return Err(match again {
                Ok(_) => e,
                Err(e2) => Error::new(
                    ErrorKind::SourceFailed,
                    format!(
                        "{}; starting them again failed too: {}",
                        chain(&e),
                        chain(&e2)
                    ),
                ),
            });
        }
        Ok(s)
    }

    fn start_now(&mut self) -> Result<Duration> {
        self.started = true;
        systemctl("start", &self.units)?;
        let _ = std::fs::remove_file(&self.record);
        Ok(self.since.elapsed())
    }

    /// Starts the units again and returns how long they were down.
    ///
    /// # Errors
    /// When a unit does not start (the record stays, so the next operation tries again).
    pub fn start(mut self) -> Result<Duration> {
        self.start_now()
    }
}

impl Drop for StoppedServices {
    fn drop(&mut self) {
        if !self.started {
            let _ = self.start_now();
        }
    }
}

/// Starts the units an operation stopped and could not start again (it was killed, or a
/// start failed), and says so. Run before every action and hook, while no operation runs.
///
/// # Errors
/// When they still do not start (the record stays for the next try).
pub fn recover(state_dir: &Path) -> Result<Option<String>> {
    let record = state_dir.join(RECORD);
    let Ok(bytes) = std::fs::read(&record) else {
        return Ok(None);
    };
    let Ok(r) = serde_json::from_slice::<Record>(&bytes) else {
        let _ = std::fs::remove_file(&record);
        return Ok(None);
    };
    systemctl("start", &r.units)?;
    let _ = std::fs::remove_file(&record);
    let down = r
        .since
        .parse::<jiff::Timestamp>()
        .map(|t| {
            crate::schedule::calendar::human_duration(jiff::Timestamp::now().duration_since(t))
        })
        .unwrap_or_default();
    Ok(Some(format!(
        "started {} again: an interrupted {} stopped them at {} ({down} down)",
        r.units.join(" "),
        r.by,
        r.since
    )))
}
