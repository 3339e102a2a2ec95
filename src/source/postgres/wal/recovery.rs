//! Recovery to a point in time: the settings written into a restored data directory, and the
//! wait while the server replays archived WAL until it promotes.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::source::postgres::statement::Stmt;
use crate::source::postgres::{Postgres, col, rows};

/// The line that opens our block in `postgresql.auto.conf`.
const BEGIN: &str = "# charm-backup point-in-time recovery (removed once recovery ends)";

/// The settings a point-in-time recovery runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryTarget {
    /// `restore_command`.
    pub restore_command: String,
    /// `recovery_target_time`, as PostgreSQL reads it (`None`: replay all the WAL of the
    /// timeline).
    pub time: Option<jiff::Timestamp>,
    /// Recover only to the end of the base backup (`recovery_target = 'immediate'`), then
    /// promote: a plain restore whose server must go on on a new timeline.
    pub immediate: bool,
    /// `recovery_target_timeline`.
    pub timeline: u32,
    /// A file the `restore_command` writes when it could not read the store: recovery that
    /// stops with it present stopped for want of WAL, not at the end of the archive.
    pub failure_marker: Option<PathBuf>,
}

/// How a recovery ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The commit time of the last transaction replayed (as the server prints it).
    pub last_transaction: String,
    /// The last LSN replayed.
    pub replay_lsn: String,
    /// The timeline the server runs on now (a new one, after promotion).
    pub timeline: u32,
}

/// Quotes a value as `postgresql.conf` reads it (and `ALTER SYSTEM` writes it).
fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// PostgreSQL's own timestamp format, in UTC, to the microsecond.
pub fn pg_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

fn write_as_owner(path: &Path, data: &[u8], owner: &std::fs::Metadata) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("cannot write", path, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("cannot write", path, e))?;
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
        .map_err(|e| Error::io("cannot change the owner of", path, e))
}

/// The `postgresql.auto.conf` of `data_dir` without our block.
fn auto_conf_without_ours(data_dir: &Path) -> (PathBuf, String) {
    let path = data_dir.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    if let Some(i) = text.find(BEGIN) {
        text.truncate(i);
    }
    (path, text)
}

impl RecoveryTarget {
    /// Writes the settings into the restored `data_dir` (appended to `postgresql.auto.conf`,
    /// as the owner of the directory) and `recovery.signal`.
    ///
    /// # Errors
    /// When the files cannot be written.
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let owner =
            std::fs::metadata(data_dir).map_err(|e| Error::io("cannot read", data_dir, e))?;
        let (path, mut text) = auto_conf_without_ours(data_dir);
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(BEGIN);
        text.push('\n');
        let mut set = |k: &str, v: &str| text.push_str(&format!("{k} = {}\n", conf_quote(v)));
        set("restore_command", &self.restore_command);
        set("recovery_target_timeline", &self.timeline.to_string());
        if let Some(t) = self.time {
            set("recovery_target_time", &pg_time(t));
            set("recovery_target_action", "promote");
            set("recovery_target_inclusive", "true");
        } else if self.immediate {
            set("recovery_target", "immediate");
            set("recovery_target_action", "promote");
        }
        write_as_owner(&path, text.as_bytes(), &owner)?;
        write_as_owner(&data_dir.join("recovery.signal"), b"", &owner)
    }

    /// Removes the target time (keeping the rest), for a recovery that found no transaction
    /// after it: replaying to the end of the timeline's WAL gives the same database.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn without_time(&self, data_dir: &Path) -> Result<RecoveryTarget> {
        let t = RecoveryTarget {
            time: None,
            ..self.clone()
        };
        t.write(data_dir)?;
        Ok(t)
    }
}

/// Removes our recovery settings from `data_dir`'s `postgresql.auto.conf` once the server has
/// promoted (they would otherwise be read again by a later recovery).
///
/// # Errors
/// When the file cannot be written.
pub fn clear_recovery_settings(data_dir: &Path) -> Result<()> {
    let owner = std::fs::metadata(data_dir).map_err(|e| Error::io("cannot read", data_dir, e))?;
    let (path, text) = auto_conf_without_ours(data_dir);
    write_as_owner(&path, text.as_bytes(), &owner)
}

/// What the wait saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryEnd {
    /// The server promoted.
    Promoted(Recovered),
    /// The server stopped during recovery; the last position seen, if any.
    Stopped(Option<Recovered>),
}

impl Postgres {
    fn recovery_position(&self) -> Result<(bool, Recovered)> {
        let mut c = self.connect()?;
        let r = rows(
            &mut c,
            "SELECT pg_is_in_recovery()::text, \
             coalesce(pg_last_xact_replay_timestamp()::text, ''), \
             coalesce(pg_last_wal_replay_lsn()::text, ''), \
             CASE WHEN pg_is_in_recovery() THEN '' \
                  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)) END",
        )?;
        let r = r.first().cloned().unwrap_or_default();
        let timeline = col(&r, 3)
            .strip_prefix('x')
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        Ok((
            col(&r, 0) == "true",
            Recovered {
                last_transaction: col(&r, 1),
                replay_lsn: col(&r, 2),
                timeline,
            },
        ))
    }

    /// Waits while the server replays WAL, until it promotes or stops. `running` says whether
    /// the server process still runs. Fails when replay makes no progress for `stall`.
    ///
    /// # Errors
    /// When recovery stalls.
    pub fn wait_recovery(
        &self,
        running: &dyn Fn() -> bool,
        stall: Duration,
        progress: &dyn Progress,
    ) -> Result<RecoveryEnd> {
        let mut last: Option<Recovered> = None;
        let mut moved = Instant::now();
        let mut said = Instant::now();
        loop {
            match self.recovery_position() {
                Ok((false, r)) => return Ok(RecoveryEnd::Promoted(r)),
                Ok((true, r)) => {
                    if last.as_ref().map(|l| &l.replay_lsn) != Some(&r.replay_lsn) {
                        moved = Instant::now();
                    }
                    if said.elapsed() > Duration::from_secs(10) {
                        progress.step(&format!(
                            "replaying archived WAL: at {}, last transaction {}",
                            r.replay_lsn, r.last_transaction
                        ));
                        said = Instant::now();
                    }
                    last = Some(r);
                }
                Err(_) if !running() => {
                    // The server may have promoted and restarted meanwhile: one more look.
                    std::thread::sleep(Duration::from_secs(1));
                    if !running() {
                        return Ok(RecoveryEnd::Stopped(last));
                    }
                }
                Err(_) => {}
            }
            if moved.elapsed() > stall {
                return Err(Error::new(
                    ErrorKind::SourceFailed,
                    format!(
                        "recovery made no progress for {}s (last replayed {})",
                        stall.as_secs(),
                        last.map(|l| l.replay_lsn)
                            .unwrap_or_else(|| "nothing".into())
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Checkpoints the promoted server, so its new timeline is durable before we report.
    ///
    /// # Errors
    /// When the server refuses.
    pub fn checkpoint(&self) -> Result<()> {
        let mut c = self.connect()?;
        Stmt::new("CHECKPOINT").run(&mut c)
    }
}
