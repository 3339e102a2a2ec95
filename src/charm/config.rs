//! The charm's config options, typed and checked.

use std::path::PathBuf;

use serde::Deserialize;

use crate::Result;
use crate::archive::{Compression, Excludes};
use crate::juju::{Context, Status};

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

impl CharmConfig {
    /// Reads the config.
    ///
    /// # Errors
    /// When `config-get` fails.
    pub fn read(ctx: &Context) -> Result<Self> {
        ctx.config()
    }

    /// The paths to archive.
    pub fn paths(&self) -> Vec<PathBuf> {
        words(&self.paths).into_iter().map(PathBuf::from).collect()
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

    /// The status the config calls for: `blocked` with what to fix, `waiting` while a
    /// configured path does not exist yet, or `None` when all is well.
    pub fn problem(&self) -> Option<Status> {
        if let Err(e) = self.compression() {
            return Some(Status::Blocked(format!("compression: {e}")));
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
        let paths = self.paths();
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
