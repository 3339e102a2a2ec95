//! Physical backups: `pg_basebackup`'s tar stream re-written under the data directory's path,
//! checked on restore by `pg_verifybackup`; and `pg_ctl` for a server with no systemd unit.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::archive::ArchiveWriter;
use crate::source::process::Piped;

impl Postgres {
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
