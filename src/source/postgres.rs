//! PostgreSQL: what a DBA would run by hand, streamed into the archive without staging.
//!
//! - **logical**: `pg_dumpall --globals-only` (roles, memberships, tablespaces) plus one
//!   `pg_dump --format=custom` per database. Per-database dumps rather than one
//!   `pg_dumpall`, because a custom-format dump restores one database at a time, checked by
//!   `pg_restore --exit-on-error`, into a fresh database that is renamed into place only once
//!   it is complete; a plain `pg_dumpall` script can only be replayed over the live cluster.
//!   The dumps keep pg_dump's own compression: it runs in pg_dump's process beside ours, and
//!   the archive's compression over it costs little and still shrinks what pg_dump's
//!   per-block compression leaves (on pgbench data, to a fiftieth). Beside each dump goes
//!   what pg_dump emits only with `--create` (grants on the database, its comment, connection
//!   limit and settings), applied when the restored database takes its name.
//! - **physical**: `pg_basebackup --format=tar --wal-method=fetch` to stdout, its entries
//!   re-written into the archive under the data directory's path, so the archive holds a data
//!   directory that starts consistent (WAL included) and GNU tar can unpack it.
//!
//! Connection settings come from a libpq URI or `key=value` string that must not carry the
//! password; the password is handed over separately and reaches the tools through their
//! environment (never a command line).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::archive::{ArchiveWriter, SideSink, SourceInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::source::process::{Piped, run};

/// The manifest's source kind.
pub const KIND: &str = "postgresql";

/// Folder of the dumps under the archive's `.charm-backup/`.
const SIDE: &str = "postgresql";

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

/// A database on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Database {
    /// Name.
    pub name: String,
    /// Owner role.
    pub owner: String,
    /// Encoding, e.g. `UTF8`.
    pub encoding: String,
    /// `LC_COLLATE`.
    pub collate: String,
    /// `LC_CTYPE`.
    pub ctype: String,
    /// Size on disk, in bytes.
    pub size: u64,
}

/// Another session on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// Backend pid.
    pub pid: i32,
    /// Database.
    pub database: String,
    /// Role.
    pub user: String,
    /// `application_name`.
    pub application: String,
    /// Client address, or `local`.
    pub client: String,
    /// `active`, `idle`, ...
    pub state: String,
}

/// What the server says of itself before a backup or restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub version: String,
    /// `server_version_num`, e.g. `150018`.
    pub version_num: u32,
    /// `pg_control_system().system_identifier` (empty when not allowed to read it).
    pub system_identifier: String,
    /// Current timeline (empty when not allowed to read it).
    pub timeline: String,
    /// `data_directory` (empty when not allowed to read it).
    pub data_directory: String,
    /// Databases that accept connections, templates left out.
    pub databases: Vec<Database>,
    /// Client sessions other than ours.
    pub sessions: Vec<Session>,
}

impl ServerInfo {
    /// The major version (`15`).
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

/// A PostgreSQL server to back up or restore.
#[derive(Debug, Clone)]
pub struct Postgres {
    options: PgOptions,
    config: postgres::Config,
}

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

/// `"name"`, quoted as an SQL identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'`, quoted as an SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn human(bytes: u64) -> String {
    crate::commands::list_backups::human_size(bytes)
}

/// One query's rows, every column as text (`None` for NULL).
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

fn col(row: &[Option<String>], i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

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
        let mut config = postgres::Config::from_str(options.uri.trim()).map_err(|e| {
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
        if let Some(p) = &options.password {
            config.password(&p.0);
        }
        Ok(Postgres { options, config })
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
        self.config.connect(postgres::NoTls).map_err(|e| {
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

    /// Asks the server what MAAS asks operators to check by hand: reachable, version,
    /// databases and sizes, other sessions.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the queries.
    pub fn inspect(&self) -> Result<ServerInfo> {
        let mut c = self.connect()?;
        let one = |c: &mut postgres::Client, sql: &str| -> String {
            rows(c, sql)
                .ok()
                .and_then(|r| r.first().map(|r| col(r, 0)))
                .unwrap_or_default()
        };
        let mut info = ServerInfo {
            version: one(&mut c, "SHOW server_version"),
            version_num: one(&mut c, "SHOW server_version_num").parse().unwrap_or(0),
            system_identifier: one(
                &mut c,
                "SELECT system_identifier::text FROM pg_control_system()",
            ),
            timeline: one(
                &mut c,
                "SELECT timeline_id::text FROM pg_control_checkpoint()",
            ),
            data_directory: one(&mut c, "SHOW data_directory"),
            ..Default::default()
        };
        info.databases = rows(
            &mut c,
            "SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), \
             d.datcollate, d.datctype, pg_database_size(d.oid)::text \
             FROM pg_database d WHERE d.datallowconn AND NOT d.datistemplate ORDER BY 1",
        )?
        .iter()
        .filter(|r| !col(r, 0).starts_with(TEMP_PREFIX))
        .map(|r| Database {
            name: col(r, 0),
            owner: col(r, 1),
            encoding: col(r, 2),
            collate: col(r, 3),
            ctype: col(r, 4),
            size: col(r, 5).parse().unwrap_or(0),
        })
        .collect();
        info.sessions = rows(
            &mut c,
            "SELECT pid::text, coalesce(datname, ''), coalesce(usename, ''), \
             coalesce(application_name, ''), coalesce(host(client_addr), 'local'), \
             coalesce(state, '') FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY 1",
        )?
        .iter()
        .map(|r| Session {
            pid: col(r, 0).parse().unwrap_or(0),
            database: col(r, 1),
            user: col(r, 2),
            application: col(r, 3),
            client: col(r, 4),
            state: col(r, 5),
        })
        .collect();
        Ok(info)
    }

    /// Lines for the action log describing the server before the work starts.
    pub fn describe(&self, info: &ServerInfo) -> Vec<String> {
        let mut lines = vec![format!(
            "PostgreSQL {} at {}{}{}",
            info.version,
            self.target(),
            if info.system_identifier.is_empty() {
                String::new()
            } else {
                format!(", system identifier {}", info.system_identifier)
            },
            if info.timeline.is_empty() {
                String::new()
            } else {
                format!(", timeline {}", info.timeline)
            },
        )];
        lines.push(format!(
            "databases: {}",
            info.databases
                .iter()
                .map(|d| format!("{} ({})", d.name, human(d.size)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if info.sessions.is_empty() {
            lines.push("no other sessions".into());
        } else {
            lines.push(format!(
                "{} other session(s): {}",
                info.sessions.len(),
                info.sessions
                    .iter()
                    .map(describe_session)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        lines
    }

    /// The databases a logical backup dumps.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when a configured database does not exist.
    pub fn databases_to_dump(&self, info: &ServerInfo) -> Result<Vec<Database>> {
        if self.options.databases.is_empty() {
            return Ok(info.databases.clone());
        }
        self.options
            .databases
            .iter()
            .map(|name| {
                info.databases
                    .iter()
                    .find(|d| &d.name == name)
                    .cloned()
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "database {name:?} in postgresql-databases does not exist on the server (it has: {})",
                                info.databases
                                    .iter()
                                    .map(|d| d.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ),
                        )
                    })
            })
            .collect()
    }

    /// What the manifest records of this source before the data is written.
    ///
    /// # Errors
    /// In physical mode, when the server would not tell its data directory.
    pub fn source_info(&self, info: &ServerInfo) -> Result<SourceInfo> {
        let mut details = BTreeMap::new();
        details.insert("mode".into(), self.options.mode.name().into());
        details.insert("server-version".into(), info.version.clone());
        details.insert("server-version-num".into(), info.version_num.to_string());
        details.insert("system-identifier".into(), info.system_identifier.clone());
        details.insert("timeline".into(), info.timeline.clone());
        details.insert("server".into(), self.target());
        let mut paths = Vec::new();
        match self.options.mode {
            PgMode::Logical => {
                let dbs = self.databases_to_dump(info)?;
                details.insert(
                    "databases".into(),
                    dbs.iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                for (i, d) in dbs.iter().enumerate() {
                    let k = |f: &str| format!("db.{:03}.{f}", i + 1);
                    details.insert(k("name"), d.name.clone());
                    details.insert(k("owner"), d.owner.clone());
                    details.insert(k("encoding"), d.encoding.clone());
                    details.insert(k("collate"), d.collate.clone());
                    details.insert(k("ctype"), d.ctype.clone());
                    details.insert(k("size"), d.size.to_string());
                }
            }
            PgMode::Physical => {
                if !info.data_directory.starts_with('/') {
                    return Err(Error::new(
                        ErrorKind::PermissionDenied,
                        "the server did not tell its data directory: a physical backup needs a superuser or a role with pg_read_all_settings and REPLICATION",
                    ));
                }
                paths.push(info.data_directory.clone());
            }
        }
        Ok(SourceInfo {
            kind: KIND.into(),
            paths,
            details,
            ..Default::default()
        })
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
        let ssl = match self.config.get_ssl_mode() {
            postgres::config::SslMode::Disable => "disable",
            postgres::config::SslMode::Require => "require",
            _ => "prefer",
        };
        c.env("PGSSLMODE", ssl);
        match &self.options.password {
            Some(p) => c.env("PGPASSWORD", &p.0),
            None => c.env_remove("PGPASSWORD"),
        };
        c
    }

    /// Writes a logical backup into `w`: roles, then one dump per database, each streamed.
    ///
    /// # Errors
    /// When a tool fails (its stderr is in the message) or the archive cannot be written.
    pub fn write_logical<W: Write + Send + 'static>(
        &self,
        info: &ServerInfo,
        w: &mut ArchiveWriter<W>,
        progress: &dyn Progress,
    ) -> Result<BTreeMap<String, String>> {
        let major = info.major();
        progress.step("dumping roles and tablespaces (pg_dumpall --globals-only)");
        let globals = run(
            self.tool("pg_dumpall", major).arg("--globals-only"),
            "dump roles and tablespaces",
        )?;
        w.append_stream(
            &format!(".charm-backup/{SIDE}/globals.sql"),
            globals.len() as u64,
            0o600,
            &mut globals.as_slice(),
        )?;
        let mut details = BTreeMap::new();
        for (i, db) in self.databases_to_dump(info)?.iter().enumerate() {
            progress.step(&format!(
                "dumping database {} ({} on disk)",
                db.name,
                human(db.size)
            ));
            // What pg_dump keeps only with --create: the database's comment, settings
            // (ALTER DATABASE / ALTER ROLE IN DATABASE ... SET), connection limit and grants.
            let properties = run(
                self.tool("pg_dump", major)
                    .args(["--create", "--schema-only", "--exclude-schema=*"])
                    .env("PGDATABASE", &db.name),
                &format!("dump the properties of database {}", db.name),
            )?;
            w.append_stream(
                &format!(".charm-backup/{SIDE}/db/{}", properties_file(i, &db.name)),
                properties.len() as u64,
                0o600,
                &mut properties.as_slice(),
            )?;
            let mut p = Piped::reading(
                self.tool("pg_dump", major)
                    .arg("--format=custom")
                    .env("PGDATABASE", &db.name),
                &format!("dump database {}", db.name),
            )?;
            let Some(mut out) = p.stdout.take() else {
                return Err(Error::new(ErrorKind::Other, "pg_dump has no stdout"));
            };
            let name = format!(".charm-backup/{SIDE}/db/{}", dump_file(i, &db.name));
            let written = w.append_unsized(&name, 0o600, &mut out, progress);
            drop(out);
            let n = match written {
                Ok(n) => n,
                Err(e) => {
                    p.kill();
                    return Err(e);
                }
            };
            p.finish().map_err(|e| {
                Error::new(
                    ErrorKind::SourceFailed,
                    format!("the dump of database {} failed: {e}", db.name),
                )
            })?;
            details.insert(format!("db.{:03}.dump-bytes", i + 1), n.to_string());
        }
        Ok(details)
    }

    /// Writes a physical backup into `w`: `pg_basebackup`'s tar stream, entry by entry, under
    /// the data directory's path. Returns the start and end LSN.
    ///
    /// # Errors
    /// When `pg_basebackup` fails (e.g. the role lacks REPLICATION, or the cluster has
    /// tablespaces, which a single stream cannot carry) or the archive cannot be written.
    pub fn write_physical<W: Write + Send + 'static>(
        &self,
        info: &ServerInfo,
        w: &mut ArchiveWriter<W>,
        progress: &dyn Progress,
    ) -> Result<BTreeMap<String, String>> {
        let data_dir = PathBuf::from(&info.data_directory);
        let prefix = data_dir
            .strip_prefix("/")
            .unwrap_or(&data_dir)
            .to_path_buf();
        progress.step(&format!(
            "taking a base backup of {} (pg_basebackup, WAL included)",
            data_dir.display()
        ));
        let mut p = Piped::reading(
            self.tool("pg_basebackup", info.major()).args([
                "--pgdata=-",
                "--format=tar",
                "--wal-method=fetch",
                "--checkpoint=fast",
                "--verbose",
            ]),
            "take a base backup",
        )?;
        let Some(out) = p.stdout.take() else {
            return Err(Error::new(ErrorKind::Other, "pg_basebackup has no stdout"));
        };
        let result = copy_base(out, &data_dir, &prefix, w, progress);
        let stderr = match result {
            Ok(()) => p.finish()?,
            Err(e) => {
                // When pg_basebackup failed first, its own complaint explains more than the
                // short stream does; when we failed first, it only saw a closed pipe.
                return Err(match p.finish() {
                    Err(pe) if !pe.to_string().contains("SIGPIPE") => pe,
                    _ => e,
                });
            }
        };
        let mut details = BTreeMap::new();
        for line in stderr.lines() {
            if let Some(rest) = line.split("write-ahead log start point: ").nth(1) {
                let mut it = rest.split(" on timeline ");
                details.insert("lsn-start".into(), it.next().unwrap_or("").trim().into());
                if let Some(t) = it.next() {
                    details.insert("timeline".into(), t.trim().into());
                }
            }
            if let Some(rest) = line.split("write-ahead log end point: ").nth(1) {
                details.insert("lsn-stop".into(), rest.trim().into());
            }
        }
        Ok(details)
    }

    /// Checks a restored data directory `dir` (bound for `data_dir`) against the backup
    /// manifest `pg_basebackup` put in it, WAL included, with `pg_verifybackup`.
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] with what `pg_verifybackup` found.
    pub fn verify_base(&self, dir: &Path, data_dir: &Path) -> Result<()> {
        let major: u32 = fs::read_to_string(dir.join("PG_VERSION"))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0);
        run(
            self.tool("pg_verifybackup", major).arg("--quiet").arg(dir),
            "check the restored data directory",
        )
        .map(drop)
        .map_err(|e| {
            Error::new(
                ErrorKind::Integrity,
                format!(
                    "the restored copy of {} does not match its backup manifest: {e}",
                    data_dir.display()
                ),
            )
        })
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    /// Major version (0 when unknown).
    pub major: u32,
    /// System identifier (empty when unknown).
    pub system_identifier: String,
}

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

fn describe_session(s: &Session) -> String {
    format!(
        "pid {} on {} as {}{} from {} ({})",
        s.pid,
        s.database,
        s.user,
        if s.application.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.application)
        },
        s.client,
        s.state
    )
}

/// The archive file name of database number `i`'s properties (pg_dump's `--create` part):
/// `001-name.database.sql`.
fn properties_file(i: usize, name: &str) -> String {
    format!("{}.database.sql", file_stem(i, name))
}

/// The archive file name of database number `i`'s dump: `001-name.dump`.
fn dump_file(i: usize, name: &str) -> String {
    format!("{}.dump", file_stem(i, name))
}

/// `001-name`: the number, and the name cleaned of anything a file name should not hold (the
/// manifest has the real name).
fn file_stem(i: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{:03}-{clean}", i + 1)
}

/// The statements of a `pg_dump --create --schema-only` script that set a database's
/// properties once it exists under its name: without `CREATE DATABASE` (the database is
/// created under a temporary name and renamed) and without psql's backslash commands.
fn property_statements(script: &str) -> String {
    script
        .lines()
        .filter(|l| !l.starts_with('\\') && !l.starts_with("CREATE DATABASE "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Re-writes `pg_basebackup`'s tar stream under `prefix`, with an entry for the data directory
/// itself first (the stream has none) so it comes back `0700` and owned by the server's user.
fn copy_base<W: Write + Send + 'static>(
    out: std::process::ChildStdout,
    data_dir: &Path,
    prefix: &Path,
    w: &mut ArchiveWriter<W>,
    progress: &dyn Progress,
) -> Result<()> {
    let bad = |e: io::Error| {
        Error::new(
            ErrorKind::SourceFailed,
            "pg_basebackup's stream is not a valid tar stream",
        )
        .with_source(e)
    };
    let local = fs::metadata(data_dir).ok();
    let mut archive = tar::Archive::new(out);
    let mut first = true;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        // Entries come as `PG_VERSION` and as `./pg_wal/...`: keep the normal parts only.
        let name: PathBuf = raw
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        if name.as_os_str().is_empty()
            || name
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::new(
                ErrorKind::SourceFailed,
                format!(
                    "pg_basebackup sent an entry with an unsafe name: {}",
                    raw.display()
                ),
            ));
        }
        if first {
            first = false;
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(local.as_ref().map_or(0o700, |m| m.mode() & 0o7777));
            h.set_uid(
                local
                    .as_ref()
                    .map_or(entry.header().uid().unwrap_or(0), |m| u64::from(m.uid())),
            );
            h.set_gid(
                local
                    .as_ref()
                    .map_or(entry.header().gid().unwrap_or(0), |m| u64::from(m.gid())),
            );
            h.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
            w.append_entry(&h, prefix, &mut io::empty())?;
        }
        let header = entry.header().clone();
        w.append_entry(&header, &prefix.join(&name), &mut entry)?;
        progress.bytes_done(w.input_bytes(), None);
    }
    // Drain the end-of-archive padding so pg_basebackup is not cut off mid-write.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(bad)?;
    Ok(())
}

/// A logical restore in progress: fed the archive's dump entries as they stream past, it
/// replays the roles and loads each database into a fresh database with a temporary name;
/// [`LogicalRestore::swap`] then renames them into place in one transaction.
pub struct LogicalRestore<'a> {
    pg: &'a Postgres,
    major: u32,
    databases: Vec<Database>,
    /// `(database, temporary name)` of the databases loaded so far.
    loaded: Vec<(String, String)>,
    current: Option<(usize, Piped)>,
    /// Per database (by index), the statements that restore its properties.
    properties: Vec<Option<String>>,
    warnings: Vec<String>,
    progress: &'a dyn Progress,
}

impl<'a> LogicalRestore<'a> {
    /// Prepares a restore of the logical backup `backup` onto the server `info` describes:
    /// checks versions and that no database to be replaced has other sessions (unless
    /// `terminate_sessions`), and drops databases a killed restore left behind.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the versions differ or clients are connected.
    pub fn prepare(
        pg: &'a Postgres,
        info: &ServerInfo,
        backup: &SourceInfo,
        terminate_sessions: bool,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        pg.check_compatible(
            backup,
            &Current {
                major: info.major(),
                system_identifier: info.system_identifier.clone(),
            },
        )?;
        let mut databases = Vec::new();
        for i in 1.. {
            let k = |f: &str| backup.details.get(&format!("db.{i:03}.{f}")).cloned();
            let Some(name) = k("name") else { break };
            databases.push(Database {
                name,
                owner: k("owner").unwrap_or_default(),
                encoding: k("encoding").unwrap_or_default(),
                collate: k("collate").unwrap_or_default(),
                ctype: k("ctype").unwrap_or_default(),
                size: k("size").and_then(|s| s.parse().ok()).unwrap_or(0),
            });
        }
        if !terminate_sessions {
            check_sessions(info, &databases)?;
        }
        let mut c = pg.connect()?;
        for r in rows(
            &mut c,
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE {}",
                literal(&format!("{TEMP_PREFIX}%"))
            ),
        )? {
            let name = col(&r, 0);
            progress.step(&format!("dropping {name}, left by an interrupted restore"));
            exec(
                &mut c,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&name)),
            )?;
        }
        Ok(LogicalRestore {
            pg,
            major: info.major(),
            loaded: Vec::new(),
            current: None,
            properties: vec![None; databases.len()],
            databases,
            warnings: Vec::new(),
            progress,
        })
    }

    /// Non-fatal problems met while replaying roles.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The databases the backup holds.
    pub fn databases(&self) -> Vec<String> {
        self.databases.iter().map(|d| d.name.clone()).collect()
    }

    fn finish_current(&mut self) -> Result<()> {
        if let Some((i, p)) = self.current.take() {
            p.finish().map_err(|e| {
                Error::new(
                    ErrorKind::SourceFailed,
                    format!(
                        "loading database {} failed, nothing was changed: {e}",
                        self.databases[i].name
                    ),
                )
            })?;
        }
        Ok(())
    }

    fn apply_globals(&mut self, data: &mut dyn Read) -> Result<()> {
        self.progress.step("restoring roles and tablespaces");
        let mut p = Piped::writing(
            self.pg
                .tool("psql", self.major)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"]),
            "restore roles",
        )?;
        if let Some(mut stdin) = p.stdin.take() {
            io::copy(data, &mut stdin).map_err(|e| {
                Error::new(ErrorKind::SourceFailed, "cannot feed the roles to psql").with_source(e)
            })?;
        }
        let stderr = p.finish()?;
        for line in stderr.lines().filter(|l| l.contains("ERROR:")) {
            if !line.contains("already exists") {
                let msg = format!("restoring roles: {}", line.trim());
                self.progress.warn(&msg);
                self.warnings.push(msg);
            }
        }
        Ok(())
    }

    fn start_database(&mut self, i: usize) -> Result<()> {
        let db = &self.databases[i];
        let temp = format!("{TEMP_PREFIX}{}_{i}", std::process::id());
        self.progress.step(&format!(
            "loading database {} into {temp} ({} on disk when backed up)",
            db.name,
            human(db.size)
        ));
        let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", ident(&temp));
        if !db.owner.is_empty() {
            sql += &format!(" OWNER {}", ident(&db.owner));
        }
        if !db.encoding.is_empty() {
            sql += &format!(" ENCODING {}", literal(&db.encoding));
        }
        if !db.collate.is_empty() {
            sql += &format!(" LC_COLLATE {}", literal(&db.collate));
        }
        if !db.ctype.is_empty() {
            sql += &format!(" LC_CTYPE {}", literal(&db.ctype));
        }
        let mut c = self.pg.connect()?;
        exec(&mut c, &sql)?;
        self.loaded.push((db.name.clone(), temp.clone()));
        let p = Piped::writing(
            self.pg
                .tool("pg_restore", self.major)
                .args(["--exit-on-error", "--no-password"])
                .arg(format!("--dbname={temp}"))
                .env("PGDATABASE", &temp),
            &format!("load database {}", db.name),
        )?;
        self.current = Some((i, p));
        Ok(())
    }

    /// Waits for the last load to finish.
    ///
    /// # Errors
    /// When `pg_restore` failed.
    pub fn finish(&mut self) -> Result<()> {
        self.finish_current()
    }

    /// Puts the loaded databases in place of the old ones, all in one transaction. Other
    /// sessions on them are ended when `terminate_sessions`, else refused. The old databases
    /// are kept under `<name>_before_restore_<time>` when `keep_old` (returned), else dropped.
    ///
    /// # Errors
    /// When another session holds a database or a rename fails; nothing is renamed then.
    pub fn swap(&mut self, terminate_sessions: bool, keep_old: bool) -> Result<Vec<String>> {
        self.finish_current()?;
        let stamp = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string();
        // A database cannot be renamed from a session on it.
        let own = self.pg.config.get_dbname().unwrap_or("postgres");
        let mut c = if self.loaded.iter().any(|(d, _)| d == own) {
            self.pg.connect_to("template1")?
        } else {
            self.pg.connect()?
        };
        let mut kept = Vec::new();
        for attempt in 0.. {
            kept.clear();
            let names: Vec<String> = self.loaded.iter().map(|(d, _)| literal(d)).collect();
            if terminate_sessions && !names.is_empty() {
                rows(
                    &mut c,
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname IN ({}) AND pid <> pg_backend_pid()",
                        names.join(",")
                    ),
                )?;
            }
            let mut sql = String::from("BEGIN;");
            for (db, temp) in &self.loaded {
                let exists = !rows(
                    &mut c,
                    &format!("SELECT 1 FROM pg_database WHERE datname = {}", literal(db)),
                )?
                .is_empty();
                if exists {
                    let mut base: String = db.clone();
                    while base.len() + "_before_restore_".len() + stamp.len() > 63 {
                        base.pop();
                    }
                    let old = format!("{base}_before_restore_{stamp}");
                    sql += &format!("ALTER DATABASE {} RENAME TO {};", ident(db), ident(&old));
                    kept.push(old);
                }
                sql += &format!("ALTER DATABASE {} RENAME TO {};", ident(temp), ident(db));
                if let Some(props) = self
                    .databases
                    .iter()
                    .position(|d| &d.name == db)
                    .and_then(|i| self.properties[i].as_deref())
                {
                    sql += props;
                    sql += "\n;";
                }
            }
            sql += "COMMIT;";
            match c.batch_execute(&sql) {
                Ok(()) => break,
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK");
                    let busy = e
                        .as_db_error()
                        .is_some_and(|d| d.code() == &postgres::error::SqlState::OBJECT_IN_USE);
                    if busy && terminate_sessions && attempt < 10 {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    return Err(Error::new(
                        if busy {
                            ErrorKind::InvalidInput
                        } else {
                            ErrorKind::SourceFailed
                        },
                        format!(
                            "cannot put the restored databases in place: {}{}",
                            pg_error(&e),
                            if busy && !terminate_sessions {
                                ": stop the clients, or run restore with terminate-sessions=true to end their sessions"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
        }
        self.loaded.clear();
        if !keep_old {
            for old in kept.drain(..) {
                exec(
                    &mut c,
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&old)),
                )?;
            }
        }
        Ok(kept)
    }

    /// Drops what was loaded (the restore failed before the swap).
    pub fn discard(&mut self) {
        if let Some((_, p)) = self.current.take() {
            p.kill();
        }
        if self.loaded.is_empty() {
            return;
        }
        if let Ok(mut c) = self.pg.connect() {
            for (_, temp) in self.loaded.drain(..) {
                let _ = exec(
                    &mut c,
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&temp)),
                );
            }
        }
    }
}

impl Drop for LogicalRestore<'_> {
    fn drop(&mut self) {
        self.discard();
    }
}

impl SideSink for LogicalRestore<'_> {
    fn entry(&mut self, name: &Path, data: &mut dyn Read) -> Result<bool> {
        let Ok(rest) = name.strip_prefix(SIDE) else {
            return Ok(false);
        };
        if rest == Path::new("globals.sql") {
            self.finish_current()?;
            self.apply_globals(data)?;
            return Ok(true);
        }
        let Ok(file) = rest.strip_prefix("db") else {
            return Ok(false);
        };
        let file = file.to_string_lossy();
        let i: usize = file
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|n| (1..=self.databases.len()).contains(n))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Integrity,
                    format!("the archive holds a dump the manifest does not list: {file}"),
                )
            })?
            - 1;
        if file.ends_with(".database.sql") {
            let mut script = String::new();
            data.read_to_string(&mut script).map_err(|e| {
                Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "the properties of database {} are unreadable",
                        self.databases[i].name
                    ),
                )
                .with_source(e)
            })?;
            self.properties[i] = Some(property_statements(&script));
            return Ok(true);
        }
        if self.current.as_ref().map(|(c, _)| *c) != Some(i) {
            self.finish_current()?;
            self.start_database(i)?;
        }
        let Some((_, p)) = self.current.as_mut() else {
            return Ok(false);
        };
        let copied = match p.stdin.as_mut() {
            Some(stdin) => io::copy(data, stdin),
            None => Ok(0),
        };
        if let Err(e) = copied {
            // pg_restore stopped reading: its exit status and stderr say why.
            self.finish_current()?;
            return Err(Error::new(
                ErrorKind::SourceFailed,
                format!(
                    "cannot feed database {} to pg_restore",
                    self.databases[i].name
                ),
            )
            .with_source(e));
        }
        Ok(true)
    }
}

fn exec(c: &mut postgres::Client, sql: &str) -> Result<()> {
    c.batch_execute(sql).map_err(|e| {
        Error::new(
            ErrorKind::SourceFailed,
            format!("PostgreSQL refused {:?}: {}", sql_verb(sql), pg_error(&e)),
        )
    })
}

fn sql_verb(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Refuses when a database to be replaced has other sessions.
fn check_sessions(info: &ServerInfo, databases: &[Database]) -> Result<()> {
    let busy: Vec<&Session> = info
        .sessions
        .iter()
        .filter(|s| databases.iter().any(|d| d.name == s.database))
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{} session(s) are connected to the databases to be replaced ({}): stop those clients first, or run restore with terminate-sessions=true to end their sessions",
        busy.len(),
        busy.iter()
            .map(|s| describe_session(s))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// Stops and starts a server with `pg_ctl`, as the owner of its data directory, when no
/// systemd unit is configured for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PgCtl {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The tools' directory, if not Debian's for the data directory's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// The server's options from `postmaster.opts` (port, socket directory, ...), so it comes
    /// back as it was started.
    #[serde(default)]
    pub server_options: String,
    /// Where the server's output goes once started by us.
    pub log_file: PathBuf,
}

impl PgCtl {
    /// For the server of `data_dir`, reading how it was started.
    pub fn new(data_dir: &Path, bin_dir: Option<PathBuf>, log_file: PathBuf) -> Self {
        let server_options = fs::read_to_string(data_dir.join("postmaster.opts"))
            .map(|s| server_options(&s))
            .unwrap_or_default();
        PgCtl {
            data_dir: data_dir.to_path_buf(),
            bin_dir,
            server_options,
            log_file,
        }
    }

    fn command(&self) -> Result<Command> {
        let meta = fs::metadata(&self.data_dir).map_err(|e| {
            Error::io(
                "cannot read the PostgreSQL data directory",
                &self.data_dir,
                e,
            )
        })?;
        let major = fs::read_to_string(self.data_dir.join("PG_VERSION"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let bin = self
            .bin_dir
            .clone()
            .or_else(|| {
                let d = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
                d.is_dir().then_some(d)
            })
            .map_or_else(|| PathBuf::from("pg_ctl"), |d| d.join("pg_ctl"));
        let mut c = Command::new(bin);
        c.arg("-D").arg(&self.data_dir);
        if nix::unistd::geteuid().is_root() && meta.uid() != 0 {
            c.uid(meta.uid()).gid(meta.gid());
        }
        Ok(c)
    }

    /// Whether a server runs on the data directory.
    pub fn running(&self) -> bool {
        self.command()
            .ok()
            .and_then(|mut c| c.arg("status").output().ok())
            .is_some_and(|o| o.status.success())
    }

    /// Stops the server (fast shutdown: sessions are ended, work is checkpointed).
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop(&self) -> Result<()> {
        if !self.running() {
            return Ok(());
        }
        run(
            self.command()?
                .args(["stop", "-m", "fast", "-w", "-t", "300"]),
            "stop PostgreSQL",
        )
        .map(drop)
    }

    /// Starts the server and waits until it accepts connections.
    ///
    /// # Errors
    /// When `pg_ctl start` fails; the server's log says why.
    pub fn start(&self) -> Result<()> {
        if self.running() {
            return Ok(());
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(|e| Error::io("cannot open the server log", &self.log_file, e))?;
        let mut c = self.command()?;
        c.args(["start", "-w", "-t", "600"]);
        if !self.server_options.is_empty() {
            c.arg("-o").arg(&self.server_options);
        }
        let status = c
            .stdin(std::process::Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| Error::io("cannot open the server log", &self.log_file, e))?,
            )
            .stderr(log)
            .status()
            .map_err(|e| Error::new(ErrorKind::SourceFailed, "cannot run pg_ctl").with_source(e))?;
        if !status.success() {
            let tail = fs::read_to_string(&self.log_file).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            return Err(Error::new(
                ErrorKind::SourceFailed,
                format!(
                    "PostgreSQL did not start ({status}); its log {} ends: {}",
                    self.log_file.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            ));
        }
        Ok(())
    }
}

/// The options of a `postmaster.opts` line, without the program and its `-D`, as `pg_ctl -o`
/// takes them (each argument double-quoted).
fn server_options(opts: &str) -> String {
    let mut args: Vec<&str> = Vec::new();
    let mut rest = opts.trim();
    // The program, unquoted, comes first.
    if let Some(i) = rest.find(" \"") {
        rest = &rest[i + 1..];
    } else {
        return String::new();
    }
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        args.push(&after[..end]);
        rest = &after[end + 1..];
    }
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "-D" {
            skip = true;
            continue;
        }
        out.push(format!("\"{a}\""));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_options_drop_the_program_and_data_dir() {
        let line = "/usr/lib/postgresql/15/bin/postgres \"-D\" \"/srv/pg\" \"-p\" \"5433\" \"-c\" \"listen_addresses=\"\n";
        assert_eq!(
            server_options(line),
            "\"-p\" \"5433\" \"-c\" \"listen_addresses=\""
        );
        assert_eq!(server_options("/usr/lib/postgresql/15/bin/postgres\n"), "");
    }

    #[test]
    fn a_password_in_the_uri_is_refused_without_echoing_it() {
        let e = Postgres::new(PgOptions::new("postgresql://u:hunter2@localhost/db")).unwrap_err();
        assert!(e.to_string().contains("holds a password"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn dump_names_are_safe_file_names() {
        assert_eq!(dump_file(0, "maasdb"), "001-maasdb.dump");
        assert_eq!(dump_file(11, "../x y"), "012-___x_y.dump");
        assert_eq!(properties_file(0, "a.b"), "001-a_b.database.sql");
    }

    #[test]
    fn property_statements_leave_out_the_create_and_psql_commands() {
        let script = "\\restrict abc\nSET lock_timeout = 0;\n\
            CREATE DATABASE x WITH TEMPLATE = template0;\nALTER DATABASE x OWNER TO o;\n\
            \\connect x\nCOMMENT ON DATABASE x IS 'two\nlines';\n\\unrestrict abc\n";
        assert_eq!(
            property_statements(script),
            "SET lock_timeout = 0;\nALTER DATABASE x OWNER TO o;\nCOMMENT ON DATABASE x IS 'two\nlines';"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
