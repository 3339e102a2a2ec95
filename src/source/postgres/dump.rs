//! Logical backups: the roles the databases need, then per database its properties and one
//! `pg_dump`, each streamed into the archive.

use std::io::Write;

use super::catalog;
use super::*;
use crate::archive::ArchiveWriter;
use crate::source::process::Piped;

impl Postgres {
    /// Writes a logical backup into `w`: the roles its databases need, then per database its
    /// properties and its dump, each streamed. `globals.sql` (`pg_dumpall --globals-only`) is
    /// kept beside them for restores by hand; our restores never replay it.
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
        let dbs = self.databases_to_dump(info)?;
        let names: Vec<String> = dbs.iter().map(|d| d.name.clone()).collect();
        let mut c = self.connect()?;
        progress.step("recording the roles the databases need");
        let roles = catalog::roles(
            &mut c,
            (!self.options.databases.is_empty()).then_some(names.as_slice()),
        )?;
        if !roles.passwords {
            progress.warn(
                "this role may not read password hashes (pg_authid): roles a restore has to create will have no password",
            );
        }
        append_json(w, "roles.json", &roles)?;
        progress
            .step("dumping roles and tablespaces for restores by hand (pg_dumpall --globals-only)");
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
        for (i, db) in dbs.iter().enumerate() {
            progress.step(&format!(
                "dumping database {} ({} on disk)",
                db.name,
                human(db.size)
            ));
            let properties = catalog::database_properties(&mut c, &db.name)?;
            append_json(
                w,
                &format!("db/{}", properties_file(i, &db.name)),
                &properties,
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

/// Writes `value` as JSON to `.charm-backup/postgresql/<name>`, readable by root only.
fn append_json<W: Write + Send + 'static, T: serde::Serialize>(
    w: &mut ArchiveWriter<W>,
    name: &str,
    value: &T,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| {
        Error::new(ErrorKind::Other, "cannot write the role records").with_source(e)
    })?;
    w.append_stream(
        &format!(".charm-backup/{SIDE}/{name}"),
        json.len() as u64,
        0o600,
        &mut json.as_slice(),
    )
}

/// The archive file name of database number `i`'s properties: `001-name.properties.json`.
fn properties_file(i: usize, name: &str) -> String {
    format!("{}.properties.json", file_stem(i, name))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_names_are_safe_file_names() {
        assert_eq!(dump_file(0, "maasdb"), "001-maasdb.dump");
        assert_eq!(dump_file(11, "../x y"), "012-___x_y.dump");
        assert_eq!(properties_file(0, "a.b"), "001-a_b.properties.json");
    }
}
