//! A backup's sidecars: the metadata a finished backup gets last, the record a failed one gets
//! instead, and the marker every backup gets first. They are how the repository recognises its
//! own backups: a folder under `backup/` without one of them is not ours.

use serde::{Deserialize, Serialize};

use crate::archive::SourceInfo;
use crate::error::{Error, ErrorKind, Result};

/// The sidecar of a finished backup, written last: a backup without it is not finished.
pub const METADATA_NAME: &str = "metadata.json";

/// The sidecar of a failed backup (same content, status `failed: <why>`).
pub const FAILED_NAME: &str = "failed.json";

/// The marker written before anything else of a backup (status `in progress`), and removed
/// last: it names the objects the backup may have written, so a backup that never finished can
/// still be told from foreign objects and removed whole.
pub const STARTED_NAME: &str = "started.json";

/// What the `tool` field of every sidecar this crate writes starts with.
pub const TOOL_NAME: &str = "charm-backup";

/// A backup's metadata: what `juju backups info` shows, plus what a restore needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupMetadata {
    /// `%Y-%m-%dT%H:%M:%SZ` (UTC), then `-<unit number>` for backups of a Juju unit.
    pub id: String,
    /// `full`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `finished`, `failed: <why>` or `in progress`.
    pub status: String,
    /// Start time (`%Y-%m-%dT%H:%M:%SZ`, UTC).
    pub started: String,
    /// End time (`%Y-%m-%dT%H:%M:%SZ`, UTC).
    pub finished: String,
    /// Archive size in bytes.
    pub size: u64,
    /// Archive SHA-256, lowercase hex.
    pub sha256: String,
    /// `gzip` or `zstd`.
    pub compression: String,
    /// The archive's key in the store.
    pub archive: String,
    /// What was archived.
    pub sources: Vec<SourceInfo>,
    /// The unit whose data it is (the principal's, for a subordinate).
    pub unit: String,
    /// The Juju unit that made it (this charm's unit).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub made_by: String,
    /// The Juju application that made it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub application: String,
    /// Juju model name.
    pub model: String,
    /// Juju model UUID.
    pub model_uuid: String,
    /// Host name.
    pub host: String,
    /// `charm-backup <version>`.
    pub tool: String,
    /// The operator's notes.
    pub notes: String,
    /// Who asked for it: `action` or `scheduled` (empty in backups made before schedules,
    /// all by actions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// The age recipients the archive is encrypted to (public keys; empty: not encrypted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypted_to: Vec<String>,
    /// What went wrong without stopping the backup (a file that changed while it was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl BackupMetadata {
    /// Whether the backup finished (with or without warnings).
    pub fn is_finished(&self) -> bool {
        self.status == "finished"
    }

    /// The metadata as stored.
    ///
    /// # Errors
    /// Never in practice (the type always encodes).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| Error::new(ErrorKind::Other, "cannot encode metadata").with_source(e))
    }

    /// Parses a sidecar read from folder `id`, refusing one this crate did not write for
    /// that backup.
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] with what is wrong: not JSON, not ours, or another backup's.
    pub fn parse(id: &str, bytes: &[u8]) -> Result<Self> {
        let m: BackupMetadata = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                ErrorKind::Integrity,
                format!("its metadata is not valid JSON ({e})"),
            )
        })?;
        if !m.tool.starts_with(TOOL_NAME) && !m.tool.is_empty() {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("its metadata was written by {:?}, not {TOOL_NAME}", m.tool),
            ));
        }
        if m.id != id {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("its metadata names backup {:?}", m.id),
            ));
        }
        Ok(m)
    }
}

/// Formats a time as backup ids and metadata do (`%Y-%m-%dT%H:%M:%SZ`, UTC).
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a time as [`format_time`] writes it.
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// The id of a backup started at `t` by the unit named `unit` (`app/N`): the time, then the
/// unit's number, so units backing up in the same second never share an id.
pub fn backup_id(t: jiff::Timestamp, unit: &str) -> String {
    match unit.rsplit_once('/') {
        Some((_, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{}-{n}", format_time(t))
        }
        _ => format_time(t),
    }
}

/// Checks that `id` can name a backup folder (one key segment).
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for an empty id, one with `/`, or `.`/`..`.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || id.contains('/')
        || id.chars().any(char::is_control)
    {
        return Err(Error::invalid(format!(
            "{id:?} is not a backup id: run list-backups to see the ids"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_unit_number() {
        let t: jiff::Timestamp = "2026-12-02T16:30:00Z".parse().unwrap();
        assert_eq!(backup_id(t, "charm-backup/12"), "2026-12-02T16:30:00Z-12");
        assert_eq!(backup_id(t, ""), "2026-12-02T16:30:00Z");
        assert_eq!(parse_time(&format_time(t)), Some(t));
    }

    #[test]
    fn sidecars_of_others_are_refused() {
        let m = BackupMetadata {
            id: "x".into(),
            tool: "pgbackrest".into(),
            ..Default::default()
        };
        let err = BackupMetadata::parse("x", &m.to_json().unwrap()).unwrap_err();
        assert!(err.to_string().contains("pgbackrest"), "{err}");
        let ours = BackupMetadata {
            tool: "charm-backup 0.1.0".into(),
            ..m
        };
        assert!(BackupMetadata::parse("y", &ours.to_json().unwrap()).is_err());
        assert!(BackupMetadata::parse("x", &ours.to_json().unwrap()).is_ok());
        assert!(BackupMetadata::parse("x", b"{\n\x01").is_err());
        assert!(check_id("../x").is_err() && check_id("..").is_err());
    }
}
