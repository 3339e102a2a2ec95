//! Logical restores: roles created, each database loaded under a temporary name and renamed
//! into place with its properties.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use super::catalog::{DatabaseProperties, RESTORING_MARK, Roles};
use super::statement::Stmt;
use super::*;
use crate::archive::SideSink;
use crate::source::process::Piped;

/// Whether `name` is one of the names [`LogicalRestore`] gives the databases it loads:
/// `charm_backup_restoring_<pid>_<n>` or `charm_backup_restoring_<pid>_m`.
fn is_temp_name(name: &str) -> bool {
    let Some((pid, n)) = name
        .strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.split_once('_'))
    else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(pid) && (digits(n) || n == "m")
}

/// How a logical restore treats what is on the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogicalRestoreOptions {
    /// End other sessions on the databases being replaced (else refuse).
    pub terminate_sessions: bool,
    /// Give existing roles their backed-up password, attributes and memberships (else only
    /// missing roles are created). The role the restore connects as is never changed.
    pub restore_roles: bool,
}

/// A logical restore in progress: fed the archive's entries as they stream past, it creates
/// the missing roles and loads each database into a fresh, marked database with a temporary
/// name; [`LogicalRestore::swap`] then renames them into place in one transaction.
pub struct LogicalRestore<'a> {
    pg: &'a Postgres,
    major: u32,
    options: LogicalRestoreOptions,
    databases: Vec<Database>,
    /// `(database, temporary name)` of the databases loaded so far.
    loaded: Vec<(String, String)>,
    current: Option<(usize, Piped)>,
    /// Per database (by index), what restores its properties.
    properties: Vec<Option<DatabaseProperties>>,
    /// The backup's roles, once read.
    roles: Option<Roles>,
    /// Roles this restore created (dropped again if it fails).
    created_roles: Vec<String>,
    warnings: Vec<String>,
    progress: &'a dyn Progress,
}

impl<'a> LogicalRestore<'a> {
    /// Prepares a restore of the logical backup `backup` onto the server `info` describes:
    /// checks versions and that no database to be replaced has other sessions (unless
    /// `terminate_sessions`), and drops the databases a killed restore left behind (by their
    /// exact names and our mark on them, nothing else).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] when the versions differ or clients are connected.
    pub fn prepare(
        pg: &'a Postgres,
        info: &ServerInfo,
        backup: &SourceInfo,
        options: LogicalRestoreOptions,
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
                ..Default::default()
            });
        }
        if !options.terminate_sessions {
            check_sessions(info, &databases)?;
        }
        let mut c = pg.connect()?;
        let left: Vec<String> = c
            .query(
                "SELECT d.datname::text FROM pg_database d JOIN pg_db_role_setting s \
                 ON s.setdatabase = d.oid AND s.setrole = 0 \
                 WHERE EXISTS (SELECT 1 FROM unnest(s.setconfig) e WHERE split_part(e, '=', 1) = $1)",
                &[&RESTORING_MARK],
            )
            .map_err(|e| {
                Error::new(
                    ErrorKind::SourceFailed,
                    format!("PostgreSQL refused to list databases: {}", pg_error(&e)),
                )
            })?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|n| is_temp_name(n))
            .collect();
        for name in left {
            progress.step(&format!("dropping {name}, left by an interrupted restore"));
            drop_database(&mut c, &name)?;
        }
        Ok(LogicalRestore {
            pg,
            major: info.major(),
            options,
            loaded: Vec::new(),
            current: None,
            properties: vec![None; databases.len()],
            databases,
            roles: None,
            created_roles: Vec::new(),
            warnings: Vec::new(),
            progress,
        })
    }

    /// Non-fatal problems met on the way.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The databases the backup holds.
    pub fn databases(&self) -> Vec<String> {
        self.databases.iter().map(|d| d.name.clone()).collect()
    }

    fn warn(&mut self, msg: String) {
        self.progress.warn(&msg);
        self.warnings.push(msg);
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

    /// Creates the roles the backup's databases need and the server lacks.
    fn create_roles(&mut self, roles: Roles) -> Result<()> {
        self.progress
            .step("creating the roles the databases need that are missing");
        let mut c = self.pg.connect()?;
        let existing: BTreeSet<String> = c
            .query("SELECT rolname::text FROM pg_roles", &[])
            .map_err(|e| {
                Error::new(
                    ErrorKind::SourceFailed,
                    format!("PostgreSQL refused to list roles: {}", pg_error(&e)),
                )
            })?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut tx = c.transaction().map_err(|e| {
            Error::new(
                ErrorKind::SourceFailed,
                format!("cannot start a transaction: {}", pg_error(&e)),
            )
        })?;
        let created = apply::create_missing_roles(&mut tx, &roles, &existing)?;
        tx.commit().map_err(|e| {
            Error::new(
                ErrorKind::SourceFailed,
                format!("cannot create the roles: {}", pg_error(&e)),
            )
        })?;
        if !created.is_empty() {
            self.progress
                .step(&format!("created role(s) {}", created.join(" ")));
            if !roles.passwords {
                self.warn(format!(
                    "the backup holds no password hashes: set the passwords of {} by hand",
                    created.join(" ")
                ));
            }
        }
        self.created_roles = created;
        self.roles = Some(roles);
        Ok(())
    }

    fn start_database(&mut self, i: usize) -> Result<()> {
        if self.roles.is_none() && self.loaded.is_empty() {
            self.warn(
                "this backup predates role records: no roles were created (globals.sql in the archive holds them, to replay by hand)"
                    .into(),
            );
        }
        let db = &self.databases[i];
        let temp = format!("{TEMP_PREFIX}{}_{i}", std::process::id());
        self.progress.step(&format!(
            "loading database {} into {temp} ({} on disk when backed up)",
            db.name,
            human(db.size)
        ));
        let mut create = Stmt::new("CREATE DATABASE ")
            .ident(&temp)
            .sql(" TEMPLATE template0");
        if !db.owner.is_empty() {
            create = create.sql(" OWNER ").ident(&db.owner);
        }
        if !db.encoding.is_empty() {
            create = create.sql(" ENCODING ").literal(&db.encoding);
        }
        if !db.collate.is_empty() {
            create = create.sql(" LC_COLLATE ").literal(&db.collate);
        }
        if !db.ctype.is_empty() {
            create = create.sql(" LC_CTYPE ").literal(&db.ctype);
        }
        if let Some(t) = self.properties[i]
            .as_ref()
            .and_then(|p| p.tablespace.as_ref())
        {
            create = create.sql(" TABLESPACE ").ident(t);
        }
        let mut c = self.pg.connect()?;
        create.run(&mut c)?;
        self.loaded.push((db.name.clone(), temp.clone()));
        mark_restoring(&mut c, &temp)?;
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

    /// A session on a database this restore does not rename: the one configured, else
    /// `postgres` or `template1`, else a marked maintenance database made for the purpose.
    fn maintenance(&self) -> Result<(postgres::Client, Option<String>)> {
        let busy = |d: &str| self.loaded.iter().any(|(db, _)| db == d);
        let own = self.pg.config.get_dbname().unwrap_or("postgres");
        for d in [own, "postgres", "template1"] {
            if !busy(d)
                && let Ok(c) = self.pg.connect_to(d)
            {
                return Ok((c, None));
            }
        }
        let name = format!("{TEMP_PREFIX}{}_m", std::process::id());
        let mut c = self.pg.connect()?;
        Stmt::new("CREATE DATABASE ")
            .ident(&name)
            .sql(" TEMPLATE template0")
            .run(&mut c)?;
        mark_restoring(&mut c, &name)?;
        drop(c);
        Ok((self.pg.connect_to(&name)?, Some(name)))
    }

    /// Puts the loaded databases in place of the old ones, with their properties, all in one
    /// transaction (and, with `restore_roles`, the roles' backed-up attributes). Other
    /// sessions on them are ended when `terminate_sessions`, else refused. The old databases
    /// are kept under `<name>_before_restore_<time>` when `keep_old` (returned), else dropped.
    ///
    /// # Errors
    /// When another session holds a database or a statement fails; nothing changes then.
    pub fn swap(&mut self, keep_old: bool) -> Result<Vec<String>> {
        self.finish_current()?;
        let stamp = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string();
        let (mut c, maintenance) = self.maintenance()?;
        let names: Vec<String> = self.loaded.iter().map(|(d, _)| d.clone()).collect();
        let mut kept = Vec::new();
        for attempt in 0.. {
            if self.options.terminate_sessions && !names.is_empty() {
                c.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()",
                    &[&names],
                )
                .map_err(|e| {
                    Error::new(
                        ErrorKind::SourceFailed,
                        format!("cannot end the other sessions: {}", pg_error(&e)),
                    )
                })?;
            }
            match self.swap_once(&mut c, &stamp) {
                Ok(k) => {
                    kept = k;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Busy => {
                    if self.options.terminate_sessions && attempt < 10 {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                    return Err(Error::invalid(format!(
                        "cannot put the restored databases in place: {e}{}",
                        if self.options.terminate_sessions {
                            ""
                        } else {
                            ": stop the clients, or run restore with terminate-sessions=true to end their sessions"
                        }
                    )));
                }
                Err(e) => {
                    return Err(Error::new(
                        e.kind(),
                        format!("cannot put the restored databases in place: {e}"),
                    ));
                }
            }
        }
        self.loaded.clear();
        self.created_roles.clear();
        drop(c);
        let mut c = self.pg.connect()?;
        if let Some(m) = maintenance {
            drop_database(&mut c, &m)?;
        }
        if !keep_old {
            for old in kept.drain(..) {
                drop_database(&mut c, &old)?;
            }
        }
        Ok(kept)
    }

    /// One attempt at the swap's transaction; returns the names the old databases are kept
    /// under.
    fn swap_once(&self, c: &mut postgres::Client, stamp: &str) -> Result<Vec<String>> {
        let failed = |e: postgres::Error| Error::new(ErrorKind::SourceFailed, pg_error(&e));
        let mut taken: BTreeSet<String> = c
            .query("SELECT datname::text FROM pg_database", &[])
            .map_err(failed)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut tx = c.transaction().map_err(failed)?;
        let mut kept = Vec::new();
        for (db, temp) in &self.loaded {
            let rename = |from: &str, to: &str| {
                Stmt::new("ALTER DATABASE ")
                    .ident(from)
                    .sql(" RENAME TO ")
                    .ident(to)
            };
            if taken.contains(db) {
                let old = apply::kept_name(db, stamp, &taken);
                rename(db, &old).run(&mut tx)?;
                apply::mark_kept(&mut tx, &old, db)?;
                taken.insert(old.clone());
                kept.push(old);
            }
            rename(temp, db).run(&mut tx)?;
            Stmt::new("ALTER DATABASE ")
                .ident(db)
                .sql(" RESET ")
                .ident(RESTORING_MARK)
                .run(&mut tx)?;
            if let Some((d, props)) = self
                .databases
                .iter()
                .zip(&self.properties)
                .find(|(d, _)| &d.name == db)
                && let Some(props) = props
            {
                apply::apply_properties(&mut tx, db, &d.owner, props)?;
            }
        }
        if self.options.restore_roles
            && let Some(roles) = &self.roles
        {
            apply::reset_roles(
                &mut tx,
                roles,
                self.pg.config.get_user().unwrap_or_default(),
            )?;
        }
        tx.commit().map_err(failed)?;
        Ok(kept)
    }

    /// Drops what was loaded and the roles created for it (the restore failed before the
    /// swap).
    pub fn discard(&mut self) {
        if let Some((_, p)) = self.current.take() {
            p.kill();
        }
        if self.loaded.is_empty() && self.created_roles.is_empty() {
            return;
        }
        if let Ok(mut c) = self.pg.connect() {
            for (_, temp) in self.loaded.drain(..) {
                let _ = drop_database(&mut c, &temp);
            }
            for r in self.created_roles.drain(..) {
                let _ = Stmt::new("DROP ROLE IF EXISTS ").ident(&r).run(&mut c);
            }
        }
    }
}

/// Marks database `name` as one a restore is loading (so that only it is ever cleaned up).
fn mark_restoring(c: &mut postgres::Client, name: &str) -> Result<()> {
    Stmt::new("ALTER DATABASE ")
        .ident(name)
        .sql(" SET ")
        .ident(RESTORING_MARK)
        .sql(" TO ")
        .literal(&std::process::id().to_string())
        .run(c)
}

fn drop_database(c: &mut postgres::Client, name: &str) -> Result<()> {
    Stmt::new("DROP DATABASE IF EXISTS ")
        .ident(name)
        .sql(" WITH (FORCE)")
        .run(c)
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
        if rest == Path::new("roles.json") {
            self.finish_current()?;
            let roles: Roles = read_json(data, "the role records")?;
            self.create_roles(roles)?;
            return Ok(true);
        }
        if rest == Path::new("globals.sql") {
            // For restores by hand; never replayed.
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
        if file.ends_with(".properties.json") {
            let what = format!("the properties of database {}", self.databases[i].name);
            self.properties[i] = Some(read_json(data, &what)?);
            return Ok(true);
        }
        if file.ends_with(".database.sql") {
            // Older backups kept pg_dump's script of the properties: never run.
            let db = self.databases[i].name.clone();
            self.warn(format!(
                "the backup predates property records: the comment, settings and grants of database {db} were not restored"
            ));
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

fn read_json<T: serde::de::DeserializeOwned>(data: &mut dyn Read, what: &str) -> Result<T> {
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).map_err(|e| {
        Error::new(ErrorKind::Integrity, format!("{what} are unreadable")).with_source(e)
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::new(ErrorKind::Integrity, format!("{what} are damaged")).with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_temporary_names_are_cleaned_up() {
        assert!(is_temp_name("charm_backup_restoring_123_0"));
        assert!(is_temp_name("charm_backup_restoring_123_m"));
        for other in [
            "charm-backup-restoring-keepme",
            "charm_backup_restoring_real",
            "charm_backup_restoring_1_2_3",
            "charm_backup_restoring_",
            "xcharm_backup_restoring_1_2",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }
}
