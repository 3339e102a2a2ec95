//! PostgreSQL: what a DBA would run by hand, streamed into the archive without staging.
//!
//! - **logical**: the roles the databases need and each database's properties, read from the
//!   catalogs as data (`catalog.rs`), plus one `pg_dump --format=custom` per database.
//!   Per-database dumps rather than one
//!   `pg_dumpall`, because a custom-format dump restores one database at a time, checked by
//!   `pg_restore --exit-on-error`, into a fresh database that is renamed into place only once
//!   it is complete; a plain `pg_dumpall` script can only be replayed over the live cluster.
//!   The dumps keep pg_dump's own compression: it runs in pg_dump's process beside ours, and
//!   the archive's compression over it costs little and still shrinks what pg_dump's
//!   per-block compression leaves (on pgbench data, to a fiftieth). A restore applies roles
//!   and properties with statements of its own (`apply.rs`, `statement.rs`): every value is
//!   quoted by the server, none is ever run as SQL.
//! - **physical**: `pg_basebackup --format=tar --wal-method=fetch` to stdout, its entries
//!   re-written into the archive under the data directory's path, so the archive holds a data
//!   directory that starts consistent (WAL included) and GNU tar can unpack it.
//!
//! Connection settings come from a libpq URI or `key=value` string that must not carry the
//! password; the password is handed over separately and reaches the tools through their
//! environment (never a command line).

//!
//! Without the `postgresql` feature only what needs no database client is built: finding the
//! servers that run on this machine and `pg_ctl` ([`PgCtl`]), and reading dumps back with
//! `pg_restore` ([`verify`]).

#[cfg(feature = "postgresql")]
use std::collections::BTreeMap;
#[cfg(feature = "postgresql")]
use std::fs;
#[cfg(feature = "postgresql")]
use std::path::Path;
use std::path::PathBuf;
#[cfg(feature = "postgresql")]
use std::process::Command;
use std::str::FromStr;
#[cfg(feature = "postgresql")]
use std::time::{Duration, Instant};

#[cfg(feature = "postgresql")]
use crate::archive::SourceInfo;
#[cfg(feature = "postgresql")]
use crate::error::ErrorKind;
use crate::error::{Error, Result};
#[cfg(feature = "postgresql")]
use crate::progress::Progress;
#[cfg(feature = "postgresql")]
use crate::source::process::run;

#[cfg(feature = "postgresql")]
mod apply;
#[cfg(feature = "postgresql")]
mod catalog;
#[cfg(feature = "postgresql")]
mod dump;
#[cfg(feature = "postgresql")]
mod logical;
mod pg_ctl;
#[cfg(feature = "postgresql")]
mod physical;
#[cfg(feature = "postgresql")]
mod server;
#[cfg(feature = "postgresql")]
mod statement;
#[cfg(feature = "postgresql")]
mod tls;
pub mod verify;
#[cfg(feature = "postgresql")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgresql")))]
pub mod wal;

#[cfg(feature = "postgresql")]
pub use logical::{LogicalRestore, LogicalRestoreOptions};
pub use pg_ctl::{PgCtl, running_servers};
#[cfg(feature = "postgresql")]
use server::check_sessions;
#[cfg(feature = "postgresql")]
pub use server::{Database, ServerInfo, Session};
#[cfg(feature = "postgresql")]
pub use tls::TlsSettings;

/// The manifest's source kind.
pub const KIND: &str = "postgresql";

/// Folder of the dumps under the archive's `.charm-backup/`.
const SIDE: &str = "postgresql";

#[cfg(feature = "postgresql")]
/// Prefix of the databases a logical restore creates before renaming them into place.
const TEMP_PREFIX: &str = "charm_backup_restoring_";

/// Logical or physical.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PgMode {
    /// Roles plus one `pg_dump` per database.
    #[default]
    Logical,
    /// A base backup of the whole cluster with its WAL.
    Physical,
}

impl PgMode {
    /// The name used in config and metadata.
    pub fn name(self) -> &'static str {
        match self {
            PgMode::Logical => "logical",
            PgMode::Physical => "physical",
        }
    }
}

impl FromStr for PgMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "logical" => Ok(PgMode::Logical),
            "physical" => Ok(PgMode::Physical),
            other => Err(Error::invalid(format!(
                "unknown postgresql-mode {other:?}: use logical or physical"
            ))),
        }
    }
}

/// A password, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// How to reach the server and what to back up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgOptions {
    /// libpq URI (`postgresql://user@host:port/db`) or `key=value` string, without a password.
    pub uri: String,
    /// The password, if the server asks for one.
    pub password: Option<Password>,
    /// Logical or physical.
    pub mode: PgMode,
    /// Databases to dump in logical mode (empty: every database that accepts connections).
    pub databases: Vec<String>,
    /// Where `pg_dump` and the other tools are (default: Debian's
    /// `/usr/lib/postgresql/<server major>/bin`, else `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// The data directory, for physical restores while the server is down (default: asked
    /// of the server).
    pub data_dir: Option<PathBuf>,
}

impl PgOptions {
    /// Options for this URI, logical mode, every database.
    pub fn new(uri: impl Into<String>) -> Self {
        PgOptions {
            uri: uri.into(),
            ..Default::default()
        }
    }
}

#[cfg(feature = "postgresql")]
/// A PostgreSQL server to back up or restore.
#[derive(Debug, Clone)]
pub struct Postgres {
    options: PgOptions,
    config: postgres::Config,
    tls: TlsSettings,
}

#[cfg(feature = "postgresql")]
fn pg_error(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(feature = "postgresql")]
fn human(bytes: u64) -> String {
    crate::progress::human_size(bytes)
}

/// One query's rows, every column as text (`None` for NULL).
#[cfg(feature = "postgresql")]
fn rows(client: &mut postgres::Client, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
    let msgs = client.simple_query(sql).map_err(|e| {
        Error::new(
            ErrorKind::SourceFailed,
            format!("PostgreSQL refused a query: {}", pg_error(&e)),
        )
    })?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

#[cfg(feature = "postgresql")]
fn col(row: &[Option<String>], i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

#[cfg(feature = "postgresql")]
impl Postgres {
    /// Checks the connection settings (not the server).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the URI is empty, not valid, or holds a password.
    pub fn new(options: PgOptions) -> Result<Self> {
        if options.uri.trim().is_empty() {
            return Err(Error::invalid(
                "postgresql-uri is empty: set it, e.g. postgresql://backup@127.0.0.1:5432/postgres",
            ));
        }
        let (rest, tls) = tls::split_tls(&options.uri)?;
        let mut config = postgres::Config::from_str(&rest).map_err(|e| {
            Error::invalid(format!(
                "postgresql-uri is not a libpq URI or key=value string: {}",
                pg_error(&e)
            ))
        })?;
        if config.get_password().is_some() {
            return Err(Error::invalid(
                "postgresql-uri holds a password: remove it from the URI and give it with postgresql-password-file or postgresql-password-secret",
            ));
        }
        if config.get_hosts().is_empty() {
            config.host_path("/var/run/postgresql");
        }
        if config.get_user().is_none() {
            let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| "postgres".into());
            config.user(&me);
        }
        if config.get_dbname().is_none() {
            config.dbname("postgres");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("charm-backup");
        config.ssl_mode(match tls.mode.as_str() {
            "disable" => postgres::config::SslMode::Disable,
            _ if tls.required() => postgres::config::SslMode::Require,
            _ => postgres::config::SslMode::Prefer,
        });
        if let Some(p) = &options.password {
            config.password(&p.0);
        }
        Ok(Postgres {
            options,
            config,
            tls,
        })
    }

    /// The options.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// The hosts (names, addresses or socket directories), as libpq's `PGHOST` lists them.
    fn hosts(&self) -> Vec<String> {
        self.config
            .get_hosts()
            .iter()
            .map(|h| match h {
                postgres::config::Host::Tcp(s) => s.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect()
    }

    /// Where the server is, for messages: `127.0.0.1:5432 as postgres` (never the password).
    pub fn target(&self) -> String {
        let hosts = self.hosts();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}:{port} as {}",
            hosts.join(","),
            self.config.get_user().unwrap_or_default()
        )
    }

    /// Opens a session.
    ///
    /// # Errors
    /// [`ErrorKind::Connect`] naming the server and the reason (e.g. a wrong password).
    pub fn connect(&self) -> Result<postgres::Client> {
        let connected = if self.tls.mode == "disable" {
            self.config.connect(postgres::NoTls)
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls.client_config()?);
            self.config.connect(tls)
        };
        connected.map_err(|e| {
            Error::new(
                ErrorKind::Connect,
                format!(
                    "cannot connect to PostgreSQL at {}: {}",
                    self.target(),
                    pg_error(&e)
                ),
            )
        })
    }

    /// Opens a session on database `db`.
    ///
    /// # Errors
    /// As [`Postgres::connect`].
    pub fn connect_to(&self, db: &str) -> Result<postgres::Client> {
        let mut c = self.clone();
        c.config.dbname(db);
        c.connect()
    }

    /// Waits until the server accepts connections.
    ///
    /// # Errors
    /// The last connection error once `timeout` has passed.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.connect() {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() >= timeout => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// The directory of the client tools for a server of this major version.
    fn bin_dir(&self, major: u32) -> Option<PathBuf> {
        if let Some(d) = &self.options.bin_dir {
            return Some(d.clone());
        }
        let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
        debian.is_dir().then_some(debian)
    }

    /// A client tool, with the connection in its environment (never on its command line).
    fn tool(&self, name: &str, major: u32) -> Command {
        let program = match self.bin_dir(major) {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        };
        let mut c = Command::new(program);
        let hosts = self.hosts();
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        for var in ["PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGOPTIONS"] {
            c.env_remove(var);
        }
        c.env("PGHOST", hosts.join(","))
            .env("PGUSER", self.config.get_user().unwrap_or_default())
            .env("PGDATABASE", self.config.get_dbname().unwrap_or("postgres"))
            .env("PGAPPNAME", "charm-backup")
            .env("PGCONNECT_TIMEOUT", "10");
        if !ports.is_empty() {
            c.env("PGPORT", ports.join(","));
        }
        self.tls.apply_to(&mut c);
        match &self.options.password {
            Some(p) => c.env("PGPASSWORD", &p.0),
            None => c.env_remove("PGPASSWORD"),
        };
        c
    }

    /// Checks that a backup may be restored onto this server, before anything is touched.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the backup is from another major version or, for a
    /// physical backup, another cluster (system identifier).
    pub fn check_compatible(&self, backup: &SourceInfo, current: &Current) -> Result<()> {
        let d = |k: &str| backup.details.get(k).cloned().unwrap_or_default();
        let backup_major = d("server-version-num").parse::<u32>().unwrap_or(0) / 10000;
        if current.major != 0 && backup_major != 0 && backup_major != current.major {
            return Err(Error::invalid(format!(
                "the backup is from PostgreSQL {backup_major} ({}) and this server runs PostgreSQL {}: restore it on a PostgreSQL {backup_major} server{}",
                d("server-version"),
                current.major,
                if d("mode") == "logical" && backup_major < current.major {
                    " (or load it by hand with pg_restore as part of an upgrade)"
                } else {
                    ""
                }
            )));
        }
        if d("mode") == "physical"
            && !current.system_identifier.is_empty()
            && !d("system-identifier").is_empty()
            && d("system-identifier") != current.system_identifier
        {
            return Err(Error::invalid(format!(
                "the backup is of another cluster (system identifier {}, this one is {}): a physical backup only restores the cluster it was taken from",
                d("system-identifier"),
                current.system_identifier
            )));
        }
        Ok(())
    }
}

/// What is known of the cluster being restored onto.
#[cfg(feature = "postgresql")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// Major version (0 when unknown).
    pub major: u32,
    /// System identifier (empty when unknown).
    pub system_identifier: String,
}

#[cfg(feature = "postgresql")]
impl Current {
    /// Reads a data directory (`PG_VERSION`, `pg_controldata`), whether the server runs or not.
    /// A directory that does not exist gives nothing to compare with.
    ///
    /// # Errors
    /// When `pg_controldata` fails on a directory that exists.
    pub fn of_data_dir(pg: &Postgres, data_dir: &Path) -> Result<Current> {
        let Ok(v) = fs::read_to_string(data_dir.join("PG_VERSION")) else {
            return Ok(Current::default());
        };
        let major: u32 = v.trim().parse().unwrap_or(0);
        let out = run(
            pg.tool("pg_controldata", major).arg("-D").arg(data_dir),
            "read the cluster's control file",
        )?;
        let system_identifier = String::from_utf8_lossy(&out)
            .lines()
            .find_map(|l| l.strip_prefix("Database system identifier:"))
            .unwrap_or("")
            .trim()
            .to_string();
        Ok(Current {
            major,
            system_identifier,
        })
    }
}

#[cfg(feature = "postgresql")]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_uri_is_refused_without_echoing_it() {
        let e = Postgres::new(PgOptions::new("postgresql://u:hunter2@localhost/db")).unwrap_err();
        assert!(e.to_string().contains("holds a password"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
    }
}
