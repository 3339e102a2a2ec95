//! What the server says of itself before a backup or restore: version, identity, databases
//! and their sizes, other sessions; and what a backup records of it.

use std::collections::BTreeMap;

use super::*;

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
    /// A copy an earlier restore kept of the database it replaced (left out of backups of
    /// every database; backed up when named).
    pub kept_copy: bool,
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
    /// Databases that accept connections (templates included, `template0` and databases a
    /// restore is still loading left out).
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

impl Postgres {
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
        // The marks are ours, set only by restores (see `catalog`).
        info.databases = rows(
            &mut c,
            &format!(
                "SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), \
             d.datcollate, d.datctype, pg_database_size(d.oid)::text, \
             coalesce((SELECT string_agg(DISTINCT split_part(e, '=', 1), ',') \
                       FROM pg_db_role_setting s, unnest(s.setconfig) e \
                       WHERE s.setdatabase = d.oid AND s.setrole = 0 \
                         AND split_part(e, '=', 1) IN ('{}', '{}')), '') \
             FROM pg_database d WHERE d.datallowconn ORDER BY 1",
                catalog::RESTORING_MARK,
                catalog::KEPT_MARK
            ),
        )?
        .iter()
        .filter(|r| !col(r, 6).contains(catalog::RESTORING_MARK))
        .map(|r| Database {
            name: col(r, 0),
            owner: col(r, 1),
            encoding: col(r, 2),
            collate: col(r, 3),
            ctype: col(r, 4),
            size: col(r, 5).parse().unwrap_or(0),
            kept_copy: col(r, 6).contains(catalog::KEPT_MARK),
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

    /// The server's data directory: `postgresql-data-dir` when given, else asked of the server
    /// (one query, where [`Postgres::inspect`] reads every database).
    ///
    /// # Errors
    /// When it is not given and the server cannot say (not running, or the role may not read
    /// `data_directory`).
    pub fn data_directory(&self) -> Result<std::path::PathBuf> {
        if let Some(d) = &self.options().data_dir {
            return Ok(d.clone());
        }
        let mut c = self.connect()?;
        let dir = rows(&mut c, "SHOW data_directory")?
            .first()
            .map(|r| col(r, 0))
            .unwrap_or_default();
        if dir.is_empty() {
            return Err(Error::invalid("the server does not say its data_directory"));
        }
        Ok(dir.into())
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
            return Ok(info
                .databases
                .iter()
                .filter(|d| !d.kept_copy)
                .cloned()
                .collect());
        }
        let mut out: Vec<Database> = Vec::new();
        for name in &self.options.databases {
            if out.iter().any(|d| &d.name == name) {
                continue;
            }
            let Some(d) = info.databases.iter().find(|d| &d.name == name) else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "database {name:?} in postgresql-databases does not exist on the server (it has: {})",
                        info.databases
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                ));
            };
            out.push(d.clone());
        }
        Ok(out)
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

/// Refuses when a database to be replaced has other sessions.
pub(super) fn check_sessions(info: &ServerInfo, databases: &[Database]) -> Result<()> {
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
