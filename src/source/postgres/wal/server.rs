//! The server side of archiving: its `archive_*` settings, changed with `ALTER SYSTEM` (every
//! value quoted by the server), put back as they were, and `pg_stat_archiver`.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::source::postgres::statement::Stmt;
use crate::source::postgres::{Postgres, col, rows};

/// The settings archiving changes.
pub const ARCHIVE_SETTINGS: [&str; 3] = ["archive_mode", "archive_command", "archive_timeout"];

/// One setting as the server has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Setting {
    /// Its name.
    pub name: String,
    /// Its value now in force.
    pub value: String,
    /// Whether it was set with `ALTER SYSTEM` (in `postgresql.auto.conf`), so putting it back
    /// means setting it again rather than resetting it.
    pub from_alter_system: bool,
    /// Whether a changed value waits for a server restart.
    pub pending_restart: bool,
}

/// The archiving settings and what the archiver reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveState {
    /// `archive_mode`, `archive_command`, `archive_timeout`.
    pub settings: Vec<Setting>,
    /// `archive_library` (PostgreSQL 15 on): when set, `archive_command` is ignored.
    pub archive_library: String,
}

impl ArchiveState {
    /// The value of `name`.
    pub fn value(&self, name: &str) -> &str {
        self.settings
            .iter()
            .find(|s| s.name == name)
            .map_or("", |s| s.value.as_str())
    }

    /// Whether `name` waits for a restart.
    pub fn pending_restart(&self, name: &str) -> bool {
        self.settings
            .iter()
            .any(|s| s.name == name && s.pending_restart)
    }
}

/// `pg_stat_archiver`, and the oldest segment waiting to be archived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiverStats {
    /// The last file archived.
    pub last_archived_wal: String,
    /// When.
    pub last_archived_time: Option<jiff::Timestamp>,
    /// The last file that failed.
    pub last_failed_wal: String,
    /// When.
    pub last_failed_time: Option<jiff::Timestamp>,
    /// Failures since the statistics were reset.
    pub failed_count: u64,
    /// Seconds the oldest file ready for archiving has waited (0: none waits).
    pub oldest_ready_secs: u64,
}

fn timestamp(epoch: &str) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_second(epoch.parse().ok()?).ok()
}

impl Postgres {
    /// The archiving settings in force.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the query.
    pub fn archive_state(&self) -> Result<ArchiveState> {
        let mut c = self.connect()?;
        let settings = rows(
            &mut c,
            "SELECT name, setting, (sourcefile LIKE '%/postgresql.auto.conf')::text, \
             pending_restart::text FROM pg_settings \
             WHERE name IN ('archive_mode', 'archive_command', 'archive_timeout') ORDER BY name",
        )?
        .iter()
        .map(|r| Setting {
            name: col(r, 0),
            value: col(r, 1),
            from_alter_system: col(r, 2) == "true",
            pending_restart: col(r, 3) == "true",
        })
        .collect();
        let archive_library = rows(
            &mut c,
            "SELECT coalesce((SELECT setting FROM pg_settings WHERE name = 'archive_library'), '')",
        )?
        .first()
        .map(|r| col(r, 0))
        .unwrap_or_default();
        Ok(ArchiveState {
            settings,
            archive_library,
        })
    }

    /// Sets `archive_mode=on`, `archive_command` and `archive_timeout` with `ALTER SYSTEM`
    /// and reloads the configuration (`archive_mode` takes effect at the next restart).
    ///
    /// # Errors
    /// When the server refuses (the role must be a superuser).
    pub fn set_archiving(&self, command: &str, timeout_secs: u32) -> Result<()> {
        let mut c = self.connect()?;
        Stmt::new("ALTER SYSTEM SET archive_mode = 'on'").run(&mut c)?;
        self.set_archive_command(command, timeout_secs)
    }

    /// Sets `archive_command` and `archive_timeout` (not `archive_mode`) and reloads.
    ///
    /// # Errors
    /// When the server refuses.
    pub fn set_archive_command(&self, command: &str, timeout_secs: u32) -> Result<()> {
        let mut c = self.connect()?;
        for s in [
            Stmt::new("ALTER SYSTEM SET archive_command = ").literal(command),
            Stmt::new("ALTER SYSTEM SET archive_timeout = ").int(i64::from(timeout_secs)),
            Stmt::new("SELECT pg_reload_conf()"),
        ] {
            s.run(&mut c)?;
        }
        Ok(())
    }

    /// Puts back settings saved by [`Postgres::archive_state`] before archiving was turned
    /// on: those that came from `ALTER SYSTEM` are set again, the others reset (so
    /// `postgresql.conf` rules again), then the configuration is reloaded.
    ///
    /// # Errors
    /// When the server refuses.
    pub fn restore_settings(&self, previous: &[Setting]) -> Result<()> {
        let mut c = self.connect()?;
        for s in previous
            .iter()
            .filter(|s| ARCHIVE_SETTINGS.contains(&s.name.as_str()))
        {
            let name = s.name.as_str();
            let stmt = if s.from_alter_system {
                Stmt::new("ALTER SYSTEM SET ")
                    .ident(name)
                    .sql(" = ")
                    .literal(&s.value)
            } else {
                Stmt::new("ALTER SYSTEM RESET ").ident(name)
            };
            stmt.run(&mut c)?;
        }
        Stmt::new("SELECT pg_reload_conf()").run(&mut c)
    }

    /// Writes a small record, switches to a new WAL segment and waits up to `timeout` until the archiver has stored
    /// the one it closed, so what the server wrote until now is in the archive. Returns that
    /// segment's name.
    ///
    /// # Errors
    /// When the server refuses, or the segment is not archived in time (with the archiver's
    /// last failure).
    pub fn switch_and_wait_archived(&self, timeout: std::time::Duration) -> Result<String> {
        let mut c = self.connect()?;
        // A record first, so the switch happens even on an idle server: the segment archived
        // then shows the archive reaches this moment.
        rows(
            &mut c,
            "SELECT pg_logical_emit_message(false, 'charm-backup', 'archived up to here')",
        )?;
        let name = rows(&mut c, "SELECT pg_walfile_name(pg_switch_wal())")?
            .first()
            .map(|r| col(r, 0))
            .unwrap_or_default();
        let start = std::time::Instant::now();
        loop {
            let stats = archiver_stats_on(&mut c)?;
            if !stats.last_archived_wal.is_empty()
                && stats.last_archived_wal.get(..24) >= Some(name.as_str())
            {
                return Ok(name);
            }
            if start.elapsed() > timeout {
                return Err(crate::Error::new(
                    crate::ErrorKind::SourceFailed,
                    format!(
                        "WAL segment {name} was not archived within {}s (last archived {:?}, \
                         last failed {:?})",
                        timeout.as_secs(),
                        stats.last_archived_wal,
                        stats.last_failed_wal
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// What the archiver reports.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the query.
    pub fn archiver_stats(&self) -> Result<ArchiverStats> {
        archiver_stats_on(&mut self.connect()?)
    }
}

/// What the archiver reports, asked on `c`.
fn archiver_stats_on(c: &mut postgres::Client) -> Result<ArchiverStats> {
    let r = rows(
        c,
        "SELECT coalesce(last_archived_wal, ''), \
             coalesce(extract(epoch FROM last_archived_time)::bigint::text, ''), \
             coalesce(last_failed_wal, ''), \
             coalesce(extract(epoch FROM last_failed_time)::bigint::text, ''), \
             failed_count::text FROM pg_stat_archiver",
    )?;
    let r = r.first().cloned().unwrap_or_default();
    // Files waiting for the archiver (superusers and pg_monitor may list them).
    let oldest = rows(
        c,
        "SELECT coalesce(extract(epoch FROM now() - min(modification))::bigint, 0)::text \
             FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
    )
    .ok()
    .and_then(|r| r.first().map(|r| col(r, 0)))
    .and_then(|s| s.parse().ok())
    .unwrap_or(0);
    Ok(ArchiverStats {
        last_archived_wal: col(&r, 0),
        last_archived_time: timestamp(&col(&r, 1)),
        last_failed_wal: col(&r, 2),
        last_failed_time: timestamp(&col(&r, 3)),
        failed_count: col(&r, 4).parse().unwrap_or(0),
        oldest_ready_secs: oldest,
    })
}
