//! Servers on this machine and `pg_ctl`: which PostgreSQL servers run where (so a file
//! restore never swaps a running server's data directory), and stopping and starting one as
//! the owner of its data directory. Needs no database client, so it is built without the
//! `postgresql` feature too.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, ErrorKind, Result};
use crate::source::process::run;

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
