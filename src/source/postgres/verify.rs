//! Checking a logical dump without a server: `pg_restore --list` reads its table of contents
//! from the stream.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, ErrorKind, Result};
use crate::source::process::Piped;

/// Whether `name` (relative to an archive's `.charm-backup/`) is a logical dump.
pub fn is_dump(name: &Path) -> bool {
    name.starts_with(Path::new(super::SIDE).join("db"))
        && name.extension().is_some_and(|e| e == "dump")
}

/// The `pg_restore` to read a dump of a server of major version `major` with: the one in
/// `bin_dir` when given, else Debian's for that version, else the first on `PATH`.
pub fn pg_restore_for(bin_dir: Option<&Path>, major: u32) -> PathBuf {
    if let Some(d) = bin_dir {
        return d.join("pg_restore");
    }
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/pg_restore"));
    if debian.exists() {
        debian
    } else {
        PathBuf::from("pg_restore")
    }
}

/// Reads the custom-format dump `data` (named `name`, for messages) through
/// `pg_restore --list`, and drains what it does not read. Returns the dump's size.
///
/// # Errors
/// [`ErrorKind::Integrity`] when `pg_restore` cannot read it; [`ErrorKind::NotFound`] when
/// `pg_restore` is not installed.
pub fn check_dump(pg_restore: &Path, name: &Path, data: &mut dyn Read) -> Result<u64> {
    let mut p = Piped::writing(
        Command::new(pg_restore).arg("--list"),
        &format!("read the dump {}", name.display()),
    )?;
    let mut copied = 0u64;
    if let Some(stdin) = p.stdin.as_mut() {
        match io::copy(data, stdin) {
            Ok(n) => copied = n,
            // It stopped reading once it had the table of contents: the rest is drained below
            // (the archive's own checksum covers it).
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!("cannot read the dump {}", name.display()),
                )
                .with_source(e));
            }
        }
    }
    copied += io::copy(data, &mut io::sink()).map_err(|e| {
        Error::new(
            ErrorKind::Integrity,
            format!("cannot read the dump {}", name.display()),
        )
        .with_source(e)
    })?;
    p.finish().map_err(|e| {
        Error::new(
            ErrorKind::Integrity,
            format!(
                "the dump {} cannot be read back: {}",
                name.display(),
                crate::error::chain(&e)
            ),
        )
    })?;
    Ok(copied)
}
