//! `restore`: put an archive's paths back, checking everything before touching anything.
//!
//! Order: take the unit's operation lock; verify the whole archive and its checksum; check that
//! it only restores configured paths; save the existing data as an archive (unless told not
//! to); extract into staging directories beside each path (same filesystem); stop services;
//! swap each staging directory in with renames, rolling back on failure; start services.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::archive::{
    ArchiveInfo, Compression, ExtractStats, Limits, VerifyOptions, extract, verify_file,
};
use crate::commands::lock::OperationLock;
use crate::commands::snapshot::{SnapshotOptions, SnapshotStats, snapshot};
use crate::error::{Error, ErrorKind, IoContext, Result, chain};
use crate::progress::Progress;

/// How to restore.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// The SHA-256 the archive must have, if known.
    pub expected_sha256: Option<String>,
    /// The paths this unit backs up; the archive may only restore these or paths inside them.
    pub allowed_paths: Vec<PathBuf>,
    /// Where to save the existing data first (`None`: do not save it).
    pub save_existing_to: Option<PathBuf>,
    /// File-name prefix of the saved archive (the application name).
    pub name_prefix: String,
    /// Compression of the saved archive.
    pub compression: Compression,
    /// systemd units to stop before the swap and start after.
    pub services: Vec<String>,
    /// Directory for the unit's lock.
    pub state_dir: PathBuf,
    /// The unit, recorded in the saved archive's manifest.
    pub unit: String,
    /// Archive size limits.
    pub limits: Limits,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreStats {
    /// The verified archive.
    pub archive: ArchiveInfo,
    /// The paths put back.
    pub paths: Vec<PathBuf>,
    /// The archive of the data that was there before, if saved.
    pub saved: Option<SnapshotStats>,
    /// What extraction wrote.
    pub extracted: ExtractStats,
    /// How long it took.
    pub elapsed: Duration,
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.charm-backup-{tag}"))
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `systemctl <verb> <units>`.
fn systemctl(verb: &str, units: &[String]) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let out = Command::new("systemctl")
        .arg(verb)
        .args(units)
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::SourceFailed,
                format!("cannot run systemctl {verb}"),
            )
            .with_source(e)
        })?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::SourceFailed,
            format!(
                "systemctl {verb} {} failed: {}",
                units.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// Restores the archive at `archive`.
///
/// # Errors
/// [`ErrorKind::Busy`] when another operation runs; [`ErrorKind::Integrity`] for a bad
/// checksum or archive; [`ErrorKind::InvalidInput`] when the archive holds paths this unit does
/// not back up. Any failure before the swap leaves the data as it was; a failure during the
/// swap puts the old data back.
pub fn restore(
    archive: &Path,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    let start = Instant::now();
    let _lock = OperationLock::acquire(&options.state_dir, "restore")?;
    progress.step(&format!("verifying {}", archive.display()));
    let file = fs::File::open(archive).at("cannot open the archive", archive)?;
    let verify_opts = VerifyOptions {
        expected_sha256: options.expected_sha256.clone(),
        limits: options.limits,
    };
    let info = verify_file(&file, &verify_opts, progress).map_err(|e| e.with_path(archive))?;
    let roots: Vec<PathBuf> = info.manifest.roots().iter().map(PathBuf::from).collect();
    if options.allowed_paths.is_empty() {
        return Err(Error::invalid(
            "the paths option is empty, so nothing may be restored: set it to the paths this unit backs up",
        ));
    }
    for r in &roots {
        if !options.allowed_paths.iter().any(|a| r.starts_with(a)) {
            return Err(Error::invalid(format!(
                "the archive holds {:?}, which is not in the paths option ({}): refusing to write there",
                r.display().to_string(),
                options
                    .allowed_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
    }
    let mut stats = RestoreStats {
        paths: roots.clone(),
        ..Default::default()
    };
    if let Some(target) = &options.save_existing_to {
        let existing: Vec<PathBuf> = roots
            .iter()
            .filter(|r| fs::symlink_metadata(r).is_ok())
            .cloned()
            .collect();
        if !existing.is_empty() {
            progress.step(&format!("saving the existing data to {}", target.display()));
            let mut so = SnapshotOptions::new(existing);
            so.compression = options.compression;
            so.unit = options.unit.clone();
            let name = format!(
                "{}-pre-restore-{}.{}",
                options.name_prefix,
                jiff::Timestamp::now().strftime("%Y-%m-%d-%H.%M.%S"),
                options.compression.extension()
            );
            let saved = snapshot(target, &name, &so, progress).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "cannot save the existing data first, so nothing was restored: {}",
                        chain(&e)
                    ),
                )
            })?;
            stats.saved = Some(saved);
        }
    }
    let staging: Vec<PathBuf> = roots.iter().map(|r| sibling(r, "new")).collect();
    let cleanup = |staging: &[PathBuf]| {
        for s in staging {
            let _ = remove_any(s);
        }
    };
    for (r, s) in roots.iter().zip(&staging) {
        if let Some(parent) = r.parent() {
            fs::create_dir_all(parent).at("cannot create the parent directory", parent)?;
        }
        remove_any(s).at("cannot remove a leftover staging directory", s)?;
    }
    progress.step("extracting into staging directories");
    match extract(&file, &info, &staging, options.limits, progress) {
        Ok(x) => stats.extracted = x,
        Err(e) => {
            cleanup(&staging);
            return Err(Error::new(
                e.kind(),
                format!("extraction failed, nothing was changed: {}", chain(&e)),
            ));
        }
    }
    // A root the archive has no entry for (excluded or vanished) gets an empty staging
    // directory only if it was a directory; otherwise it is left alone.
    let present: Vec<bool> = staging
        .iter()
        .map(|s| fs::symlink_metadata(s).is_ok())
        .collect();
    if let Err(e) = systemctl("stop", &options.services) {
        cleanup(&staging);
        let _ = systemctl("start", &options.services);
        return Err(e);
    }
    progress.step("swapping the restored data in");
    let mut done: Vec<usize> = Vec::new();
    let mut failure = None;
    for (i, r) in roots.iter().enumerate() {
        if !present[i] {
            continue;
        }
        let old = sibling(r, "old");
        let step = || -> std::io::Result<()> {
            remove_any(&old)?;
            if fs::symlink_metadata(r).is_ok() {
                fs::rename(r, &old)?;
            }
            fs::rename(&staging[i], r)
        };
        match step() {
            Ok(()) => done.push(i),
            Err(e) => {
                failure = Some(Error::io(
                    "cannot swap the restored data in; the old data was put back",
                    r,
                    e,
                ));
                break;
            }
        }
    }
    if let Some(err) = failure {
        for &i in done.iter().rev() {
            let r = &roots[i];
            let old = sibling(r, "old");
            let _ = fs::rename(r, &staging[i]);
            if fs::symlink_metadata(&old).is_ok() {
                let _ = fs::rename(&old, r);
            }
        }
        cleanup(&staging);
        let _ = systemctl("start", &options.services);
        return Err(err);
    }
    for r in &roots {
        let _ = remove_any(&sibling(r, "old"));
    }
    systemctl("start", &options.services).map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "the data was restored, but the services did not start: {}",
                chain(&e)
            ),
        )
    })?;
    stats.archive = info;
    stats.elapsed = start.elapsed();
    Ok(stats)
}
