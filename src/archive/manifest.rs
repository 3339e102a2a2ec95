//! The manifest an archive carries as its first entry, so it explains itself without a sidecar.

use serde::{Deserialize, Serialize};

/// Name of the manifest entry, first in every archive.
pub const MANIFEST_NAME: &str = ".charm-backup/manifest.json";

/// The archive format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What an archive holds and where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// `charm-backup <version>`.
    pub tool: String,
    /// Host name of the machine that wrote it.
    pub host: String,
    /// The Juju unit (or other label) it was taken for.
    pub unit: String,
    /// When writing started (RFC 3339, UTC).
    pub started: String,
    /// What was archived: one entry per source.
    pub sources: Vec<SourceInfo>,
}

/// One source of an archive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourceInfo {
    /// `paths`, `command` or `stream`.
    pub kind: String,
    /// The absolute paths archived (for `paths`), stored in the archive without the leading `/`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// The exclude patterns applied.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The mount points at or below the paths when the archive was written (but the excluded
    /// ones): a restore refuses to write a volume's data onto the filesystem above it when
    /// nothing is mounted there any more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// Free-form details (e.g. a server version).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, String>,
}

impl Manifest {
    /// The absolute paths this archive restores to.
    pub fn roots(&self) -> Vec<String> {
        self.sources
            .iter()
            .flat_map(|s| s.paths.iter().cloned())
            .collect()
    }
}

/// The host name, from the kernel.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
