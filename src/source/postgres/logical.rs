//! Logical backups: roles, then one `pg_dump` per database, streamed into the archive; and
//! their restore, each database loaded under a temporary name and renamed into place.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::archive::{ArchiveWriter, SideSink};
use crate::source::process::Piped;

impl Postgres {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
