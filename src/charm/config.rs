//! The charm's config options, typed and checked.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Result;
use crate::archive::{Compression, Excludes};
use crate::error::{Error, ErrorKind};
use crate::juju::{Context, Status};
use crate::source::etcd::{EtcdOptions, EtcdRestoreOptions};
use crate::source::postgres::{Password, PgOptions, Postgres};

/// `config.yaml`, as `config-get` returns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CharmConfig {
    /// Space-separated absolute paths.
    #[serde(default)]
    pub paths: String,
    /// Space-separated glob patterns.
    #[serde(default)]
    pub exclude: String,
    /// Space-separated systemd units.
    #[serde(default)]
    pub services: String,
    /// The local store directory.
    #[serde(default = "default_store")]
    pub local_store: String,
    /// `gzip` or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Compression threads (0: one per core).
    #[serde(default)]
    pub compression_threads: i64,
    /// etcd client URL (etcd mode when set).
    #[serde(default)]
    pub etcd_endpoint: String,
    /// etcd TLS CA file.
    #[serde(default)]
    pub etcd_cacert: String,
    /// etcd TLS client certificate.
    #[serde(default)]
    pub etcd_cert: String,
    /// etcd TLS client key.
    #[serde(default)]
    pub etcd_key: String,
    /// etcd data directory, for restore.
    #[serde(default)]
    pub etcd_data_dir: String,
    /// etcd member name, for restore.
    #[serde(default)]
    pub etcd_name: String,
    /// etcd peer URL, for restore.
    #[serde(default)]
    pub etcd_peer_url: String,
    /// PostgreSQL connection URI or `key=value` string, without a password (PostgreSQL is
    /// backed up when set).
    #[serde(default)]
    pub postgresql_uri: String,
    /// File holding the PostgreSQL password.
    #[serde(default)]
    pub postgresql_password_file: String,
    /// Juju secret holding the PostgreSQL password under the key `password`.
    #[serde(default)]
    pub postgresql_password_secret: String,
    /// `logical` or `physical`.
    #[serde(default = "default_pg_mode")]
    pub postgresql_mode: String,
    /// Space-separated databases for logical backups (empty: all); a name with spaces is
    /// written in double quotes (`"my db"`, a quote inside doubled).
    #[serde(default)]
    pub postgresql_databases: String,
    /// Directory of pg_dump and the other client tools.
    #[serde(default)]
    pub postgresql_bin_dir: String,
    /// The server's data directory, for physical restores.
    #[serde(default)]
    pub postgresql_data_dir: String,
    /// Archive the server's WAL into the backup store (point-in-time recovery).
    #[serde(default)]
    pub postgresql_wal_archive: bool,
    /// `archive_timeout` while archiving, in seconds.
    #[serde(default = "default_archive_timeout")]
    pub postgresql_archive_timeout: i64,
    /// Space-separated age recipients (`age1...`): archives are encrypted to them when set.
    #[serde(default)]
    pub encryption_recipients: String,
    /// Juju secret whose key `identity` holds the age identities that decrypt.
    #[serde(default)]
    pub encryption_identity_secret: String,
    /// Keep the newest this many finished backups (0: all).
    #[serde(default)]
    pub retention_count: i64,
    /// Remove finished backups older than this many days before the newest (0: never).
    #[serde(default)]
    pub retention_days: i64,
    /// A systemd calendar expression for scheduled backups (empty: none).
    #[serde(default)]
    pub backup_schedule: String,
    /// Seconds of fixed random delay added to each scheduled run.
    #[serde(default)]
    pub backup_schedule_jitter: i64,
    /// The newest backup may be at most this old (empty: twice the schedule's interval; `off`).
    #[serde(default)]
    pub backup_max_age: String,
    /// Where Prometheus textfile metrics are written (empty: nowhere).
    #[serde(default)]
    pub metrics_textfile_dir: String,
    /// Buckets of the `s3-source` gateway to back up (`*`: all).
    #[serde(default)]
    pub s3_source_buckets: String,
}

fn default_pg_mode() -> String {
    "logical".into()
}

fn default_store() -> String {
    "/var/lib/charm-backup/backups".into()
}

fn default_compression() -> String {
    "gzip".into()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Space-separated names, a name with spaces in double quotes (`"my db" app`, `""` for a
/// quote inside one), as SQL writes identifiers.
fn quoted_words(s: &str, option: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(out);
        };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(Error::invalid(format!(
                            "{option} has a name with no closing double quote: {s:?}"
                        )));
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        word.push('"');
                    }
                    Some('"') => break,
                    Some(c) => word.push(c),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(Error::invalid(format!(
                    "{option}: put a space after each quoted name: {s:?}"
                )));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
}

fn default_archive_timeout() -> i64 {
    60
}

impl CharmConfig {
    /// Reads the config.
    ///
    /// # Errors
    /// When `config-get` fails.
    pub fn read(ctx: &Context) -> Result<Self> {
        ctx.config()
    }

    /// The paths to archive, normalised: symlinks resolved (a symlinked path is backed up,
    /// and restored, where it points), `.` and trailing slashes dropped, each once.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for w in words(&self.paths) {
            let p = crate::charm::own_dirs::normalize(Path::new(&w));
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// `(configured, resolved)` for each path that is or goes through a symlink.
    pub fn resolved_paths(&self) -> Vec<(String, PathBuf)> {
        words(&self.paths)
            .into_iter()
            .filter_map(|w| {
                let lexical = crate::charm::own_dirs::normalize_lexically(Path::new(&w));
                let p = crate::charm::own_dirs::normalize(Path::new(&w));
                (p != lexical).then_some((w, p))
            })
            .collect()
    }

    /// The exclude patterns.
    pub fn exclude(&self) -> Vec<String> {
        words(&self.exclude)
    }

    /// The services to stop around a restore.
    pub fn services(&self) -> Vec<String> {
        words(&self.services)
    }

    /// The compression.
    ///
    /// # Errors
    /// When the option is neither `gzip` nor `zstd`.
    pub fn compression(&self) -> Result<Compression> {
        self.compression.parse()
    }

    /// The compression threads (0: one per core the unit may use).
    ///
    /// # Errors
    /// When the option is negative.
    pub fn compression_threads(&self) -> Result<usize> {
        usize::try_from(self.compression_threads).map_err(|_| {
            Error::invalid(format!(
                "compression-threads is {}: set it to 0 (one per core) or a number of threads",
                self.compression_threads
            ))
        })
    }

    /// etcd mode's snapshot settings, when `etcd-endpoint` is set.
    pub fn etcd(&self) -> Option<EtcdOptions> {
        if self.etcd_endpoint.is_empty() {
            return None;
        }
        let file = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        Some(EtcdOptions {
            endpoint: self.etcd_endpoint.clone(),
            cacert: file(&self.etcd_cacert),
            cert: file(&self.etcd_cert),
            key: file(&self.etcd_key),
        })
    }

    /// etcd mode's restore settings, when `etcd-data-dir` is set.
    pub fn etcd_restore(&self) -> Option<EtcdRestoreOptions> {
        if self.etcd_data_dir.is_empty() {
            return None;
        }
        Some(EtcdRestoreOptions {
            data_dir: PathBuf::from(&self.etcd_data_dir),
            name: self.etcd_name.clone(),
            peer_url: self.etcd_peer_url.clone(),
            client: self.etcd(),
            allow_unreachable: false,
        })
    }

    /// The `postgresql-bin-dir` option, when set.
    pub fn pg_bin_dir(&self) -> Option<PathBuf> {
        let d = self.postgresql_bin_dir.trim();
        (!d.is_empty()).then(|| PathBuf::from(d))
    }

    /// The PostgreSQL settings without the password, when `postgresql-uri` is set.
    ///
    /// # Errors
    /// When an option is not valid.
    pub fn postgresql_options(&self) -> Result<Option<PgOptions>> {
        if self.postgresql_uri.trim().is_empty() {
            return Ok(None);
        }
        let path = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        let mut o = PgOptions::new(self.postgresql_uri.trim());
        o.mode = self.postgresql_mode.parse()?;
        o.databases = quoted_words(&self.postgresql_databases, "postgresql-databases")?;
        o.bin_dir = path(&self.postgresql_bin_dir);
        o.data_dir = path(&self.postgresql_data_dir);
        if !self.postgresql_password_file.is_empty() && !self.postgresql_password_secret.is_empty()
        {
            return Err(Error::invalid(
                "set postgresql-password-secret or postgresql-password-file, not both",
            ));
        }
        // Checks the URI (and that it holds no password).
        Postgres::new(o.clone())?;
        Ok(Some(o))
    }

    /// The PostgreSQL server to back up, when `postgresql-uri` is set, with its password from
    /// the `password` key of `postgresql-password-secret`, or from `postgresql-password-file`
    /// (which must not be readable by other users).
    ///
    /// # Errors
    /// When an option is not valid or the password cannot be read.
    pub fn postgresql(&self, ctx: &Context) -> Result<Option<Postgres>> {
        let Some(mut o) = self.postgresql_options()? else {
            return Ok(None);
        };
        if !self.postgresql_password_secret.is_empty() {
            let pw = ctx.secret(self.postgresql_password_secret.trim(), "password")?;
            o.password = Some(Password(pw));
        } else if !self.postgresql_password_file.is_empty() {
            let file = PathBuf::from(&self.postgresql_password_file);
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(&file)
                .map_err(|e| Error::io("cannot read postgresql-password-file", &file, e))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "postgresql-password-file {} can be read by other users: chmod 600 it",
                        file.display()
                    ),
                ));
            }
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::io("cannot read postgresql-password-file", &file, e))?;
            o.password = Some(Password(text.lines().next().unwrap_or("").to_string()));
        }
        Postgres::new(o).map(Some)
    }

    /// The age recipients archives are encrypted to, when `encryption-recipients` is set.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming a word that is not a recipient: nothing is then
    /// written at all, rather than written in plaintext.
    pub fn recipients(&self) -> Result<Option<crate::archive::Recipients>> {
        crate::archive::Recipients::parse(&self.encryption_recipients)
    }

    /// The age identities from the `encryption-identity-secret` secret, when it is set. The
    /// secret's content is never logged or shown.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] saying what to fix when the secret cannot be read or holds
    /// no identity.
    pub fn identities(&self, ctx: &Context) -> Result<Option<crate::archive::Identities>> {
        let uri = self.encryption_identity_secret.trim();
        if uri.is_empty() {
            return Ok(None);
        }
        let text = ctx.secret(uri, "identity").map_err(|e| {
            Error::invalid(format!(
                "encryption-identity-secret {uri} cannot be read ({}): grant it to this application (juju grant-secret <secret> <app>) and check that it has the key identity",
                crate::error::chain(&e)
            ))
        })?;
        crate::archive::Identities::parse(&text)
            .map(Some)
            .map_err(|e| Error::invalid(format!("encryption-identity-secret {uri}: {e}")))
    }

    /// The retention policy (`retention-count`, `retention-days`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a negative or absurd value.
    pub fn retention(&self) -> Result<crate::store::repo::RetentionOptions> {
        let check = |name: &str, v: i64| -> Result<u32> {
            u32::try_from(v)
                .ok()
                .filter(|n| *n <= 100_000)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{name} must be between 0 (no limit) and 100000, not {v}"
                    ))
                })
        };
        Ok(crate::store::repo::RetentionOptions::new(
            check("retention-count", self.retention_count)?,
            check("retention-days", self.retention_days)?,
        ))
    }

    /// Seconds of jitter for the schedule.
    ///
    /// # Errors
    /// When negative or over a day.
    pub fn schedule_jitter(&self) -> Result<u64> {
        u64::try_from(self.backup_schedule_jitter)
            .ok()
            .filter(|n| *n <= 86_400)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "backup-schedule-jitter must be between 0 and 86400 seconds, not {}",
                    self.backup_schedule_jitter
                ))
            })
    }

    /// `backup-max-age`: `Ok(None)` when off, `Ok(Some(None))` for the default (from the
    /// schedule), `Ok(Some(Some(d)))` when given.
    ///
    /// # Errors
    /// When it is not a duration.
    pub fn max_age(&self) -> Result<Option<Option<jiff::SignedDuration>>> {
        match self.backup_max_age.trim() {
            "" => Ok(Some(None)),
            "off" | "0" => Ok(None),
            d => crate::schedule::calendar::parse_duration(d)
                .map(|d| Some(Some(d)))
                .map_err(|e| Error::invalid(format!("backup-max-age: {e}"))),
        }
    }

    /// The metrics directory, when set.
    pub fn metrics_dir(&self) -> Option<PathBuf> {
        let d = self.metrics_textfile_dir.trim();
        (!d.is_empty()).then(|| PathBuf::from(d))
    }

    /// `postgresql-archive-timeout` in seconds.
    ///
    /// # Errors
    /// When it is out of range (0 would leave a quiet server's last writes unarchived).
    pub fn archive_timeout(&self) -> Result<u32> {
        match u32::try_from(self.postgresql_archive_timeout) {
            Ok(t) if (1..=86_400).contains(&t) => Ok(t),
            _ => Err(Error::invalid(format!(
                "postgresql-archive-timeout is {}: give seconds from 1 to 86400 (60 archives a \
                 quiet server's last writes within a minute)",
                self.postgresql_archive_timeout
            ))),
        }
    }

    /// The status the config calls for: `blocked` with what to fix, `waiting` while a
    /// configured path does not exist yet, or `None` when all is well.
    pub fn problem(&self) -> Option<Status> {
        if let Err(e) = self.compression() {
            return Some(Status::Blocked(format!("compression: {e}")));
        }
        if let Err(e) = self.compression_threads() {
            return Some(Status::Blocked(e.to_string()));
        }
        if let Err(e) = self.retention() {
            return Some(Status::Blocked(e.to_string()));
        }
        if let Err(e) = self.schedule_jitter() {
            return Some(Status::Blocked(e.to_string()));
        }
        if let Err(e) = self.max_age() {
            return Some(Status::Blocked(e.to_string()));
        }
        if let Some(d) = self.metrics_dir()
            && !(d.is_absolute() && d.is_dir())
        {
            return Some(Status::Blocked(format!(
                "metrics-textfile-dir {:?} is not an existing absolute directory: create it (it \
                 is node-exporter's --collector.textfile.directory) or unset the option",
                d.display().to_string()
            )));
        }
        if let Err(e) = self.recipients() {
            return Some(Status::Blocked(format!(
                "encryption-recipients: {e}; snapshot and create-backup refuse to run"
            )));
        }
        if !PathBuf::from(&self.local_store).is_absolute() {
            return Some(Status::Blocked(format!(
                "local-store {:?} must be an absolute path",
                self.local_store
            )));
        }
        if let Err(e) = Excludes::new(&self.exclude()) {
            return Some(Status::Blocked(e.to_string()));
        }
        if let Err(e) = self.postgresql_options() {
            return Some(Status::Blocked(e.to_string()));
        }
        if let Err(e) = self.archive_timeout() {
            return Some(Status::Blocked(e.to_string()));
        }
        if self.postgresql_wal_archive && self.postgresql_uri.trim().is_empty() {
            return Some(Status::Blocked(
                "postgresql-wal-archive is on but postgresql-uri is empty: set it to the server \
                 whose WAL is archived"
                    .into(),
            ));
        }
        let paths = self.paths();
        if paths.is_empty()
            && (self.etcd().is_some()
                || !self.postgresql_uri.trim().is_empty()
                || !self.s3_source_buckets.trim().is_empty())
        {
            return None;
        }
        if paths.is_empty() {
            return Some(Status::Blocked(
                "set paths: juju config <app> paths=\"/etc/app /var/lib/app\"".into(),
            ));
        }
        if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
            return Some(Status::Blocked(format!(
                "paths: {:?} is not absolute",
                p.display().to_string()
            )));
        }
        if let Err(e) = crate::commands::snapshot::check_paths(&paths) {
            return Some(match e.kind() {
                crate::ErrorKind::NotFound => Status::Waiting(format!("{e} yet")),
                _ => Status::Blocked(e.to_string()),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_may_be_quoted() {
        let n = |s: &str| quoted_words(s, "postgresql-databases");
        assert_eq!(n("  app  maasdb ").unwrap(), ["app", "maasdb"]);
        assert_eq!(n("\"my db\" app").unwrap(), ["my db", "app"]);
        assert_eq!(n("\"say \"\"hi\"\"\"").unwrap(), ["say \"hi\""]);
        assert_eq!(n("").unwrap(), Vec::<String>::new());
        assert!(n("\"open").unwrap_err().to_string().contains("closing"));
        assert!(n("\"a\"b").is_err());
    }
}
