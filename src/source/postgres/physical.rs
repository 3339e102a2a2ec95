//! Physical backups: `pg_basebackup`'s tar stream re-written under the data directory's path,
//! checked on restore by `pg_verifybackup`; and `pg_ctl` for a server with no systemd unit.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
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
    /// Where the server's output goes once started by us: where it went before.
    pub log_file: PathBuf,
    /// Whether the server ran when the restore began (only then is it started again).
    #[serde(default = "yes")]
    pub was_running: bool,
}

fn yes() -> bool {
    true
}

/// The directories of the PostgreSQL servers running on this machine, with their
/// postmasters' pids: a postmaster works in its data directory, so `/proc/<pid>/cwd` of every
/// `postgres` process names it (as root; otherwise only servers of our own user are seen).
pub fn running_servers() -> Vec<(PathBuf, u32)> {
    let mut out: Vec<(PathBuf, u32)> = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let path = p.path();
        let is_postgres = fs::read_link(path.join("exe"))
            .ok()
            .and_then(|e| e.file_name().map(|n| n == "postgres"))
            .unwrap_or(false);
        if !is_postgres {
            continue;
        }
        let Ok(dir) = fs::read_link(path.join("cwd")) else {
            continue;
        };
        if out.iter().any(|(d, _)| d == &dir) {
            continue;
        }
        if let Some(pid) = postmaster_pid(&dir) {
            out.push((dir, pid));
        }
    }
    out
}

/// The pid in `data_dir/postmaster.pid`, if that process lives.
fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Where the running server of `data_dir` writes its output (`pg_ctl -l`), if a file.
fn current_log(data_dir: &Path) -> Option<PathBuf> {
    let pid = postmaster_pid(data_dir)?;
    let out = fs::read_link(format!("/proc/{pid}/fd/2")).ok()?;
    (out.is_absolute() && fs::metadata(&out).is_ok_and(|m| m.is_file())).then_some(out)
}

impl PgCtl {
    /// For the server of `data_dir`, reading how it was started and where its output goes
    /// (`fallback_log` when that cannot be told).
    pub fn new(data_dir: &Path, bin_dir: Option<PathBuf>, fallback_log: PathBuf) -> Self {
        let server_options = fs::read_to_string(data_dir.join("postmaster.opts"))
            .map(|s| server_options(&s))
            .unwrap_or_default();
        let mut ctl = PgCtl {
            data_dir: data_dir.to_path_buf(),
            bin_dir,
            server_options,
            log_file: current_log(data_dir).unwrap_or(fallback_log),
            was_running: false,
        };
        ctl.was_running = ctl.running();
        ctl
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
        // The server gets an environment of its own, not the action's (no JUJU_*, no hook
        // tools on PATH): what a service manager would give it.
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
        for (k, v) in std::env::vars_os() {
            let k_text = k.to_string_lossy();
            if k_text == "LANG" || k_text == "TZ" || k_text.starts_with("LC_") {
                c.env(k, v);
            }
        }
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

    /// Starts the server, if it ran when the restore began, and waits until it accepts
    /// connections.
    ///
    /// # Errors
    /// When `pg_ctl start` fails; the server's log says why.
    pub fn start(&self) -> Result<()> {
        if !self.was_running || self.running() {
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
}
