//! `snapshot`: archive the configured paths into a file in a target directory.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::archive::{
    ArchiveOptions, ArchiveStats, ArchiveWriter, AtomicFile, Compression, Excludes, FORMAT_VERSION,
    GzipEffort, Manifest, SourceInfo, host_name,
};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
#[cfg(feature = "etcd")]
use crate::source::etcd::{self, EtcdOptions, EtcdSnapshot, SNAPSHOT_ENTRY};
#[cfg(feature = "postgresql")]
use crate::source::postgres::{self, PgMode, Postgres, ServerInfo};
#[cfg(feature = "s3")]
use crate::source::s3::{self, S3SourceOptions};

/// What to snapshot and where.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SnapshotOptions {
    /// Absolute paths to archive.
    pub paths: Vec<PathBuf>,
    /// Exclude patterns (see [`Excludes`]).
    pub exclude: Vec<String>,
    /// Compression.
    pub compression: Compression,
    /// Compression threads (0: one per core the process may use).
    pub compression_threads: usize,
    /// Who the snapshot is for (a Juju unit name, or any label); recorded in the manifest.
    pub unit: String,
    /// Also take a consistent snapshot of this etcd member.
    #[cfg(feature = "etcd")]
    pub etcd: Option<EtcdOptions>,
    /// Where the etcd snapshot is staged before it is archived (the unit's state directory).
    pub scratch_dir: PathBuf,
    /// Also back up this PostgreSQL server (dumps or a base backup, streamed).
    #[cfg(feature = "postgresql")]
    pub postgresql: Option<Postgres>,
    /// Encrypt the archive to these age recipients.
    pub recipients: Option<crate::archive::Recipients>,
    /// Also back up these S3 buckets, object by object.
    #[cfg(feature = "s3")]
    pub s3: Option<S3SourceOptions>,
    /// systemd units stopped while the data is read and started again afterwards, whatever
    /// happens (recorded in `scratch_dir` until they run again).
    pub stop_services: Vec<String>,
}

impl SnapshotOptions {
    /// The archive's file-name extension: `tar.gz` or `tar.zst`, then `.age` when encrypted.
    pub fn extension(&self) -> String {
        format!(
            "{}{}",
            self.compression.extension(),
            if self.recipients.is_some() {
                crate::archive::AGE_SUFFIX
            } else {
                ""
            }
        )
    }

    /// Whether anything besides paths is backed up (then the paths may be empty).
    pub fn has_sources(&self) -> bool {
        #[cfg(feature = "etcd")]
        if self.etcd.is_some() {
            return true;
        }
        #[cfg(feature = "postgresql")]
        if self.postgresql.is_some() {
            return true;
        }
        #[cfg(feature = "s3")]
        if self.s3.is_some() {
            return true;
        }
        false
    }
}

impl SnapshotOptions {
    /// Options for these paths, with no excludes and gzip.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        SnapshotOptions {
            paths,
            ..Default::default()
        }
    }

    /// Leaves out what these patterns match (see [`Excludes`]).
    #[must_use]
    pub fn with_exclude(mut self, patterns: Vec<String>) -> Self {
        self.exclude = patterns;
        self
    }

    /// Compresses with `compression`.
    #[must_use]
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Compresses on `threads` threads (0: one per core the process may use).
    #[must_use]
    pub fn with_compression_threads(mut self, threads: usize) -> Self {
        self.compression_threads = threads;
        self
    }

    /// Records `unit` (a Juju unit name, or any label) in the manifest.
    #[must_use]
    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = unit.into();
        self
    }

    /// Encrypts the archive to `recipients` (age X25519).
    #[must_use]
    pub fn with_recipients(mut self, recipients: crate::archive::Recipients) -> Self {
        self.recipients = Some(recipients);
        self
    }

    /// Keeps the unit's lock, staged etcd snapshots and the record of stopped services in
    /// `dir`.
    #[must_use]
    pub fn with_scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_dir = dir.into();
        self
    }

    /// Stops these systemd units while the data is read (see [`SnapshotOptions::stop_services`]).
    #[must_use]
    pub fn with_stop_services(mut self, units: Vec<String>) -> Self {
        self.stop_services = units;
        self
    }
}

/// What a snapshot wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// The archive's final path.
    pub path: PathBuf,
    /// The archive's stats (digest, sizes, warnings).
    pub archive: ArchiveStats,
    /// How long it took.
    pub elapsed: Duration,
    /// How long `stop_services` were down.
    pub services_down: Option<Duration>,
}

/// Runs `capture` with `options.stop_services` stopped, and returns how long they were down.
/// They are started again whatever `capture` returns; a unit that does not start is a warning
/// (the capture stands, and the next action or hook tries again).
///
/// # Errors
/// When a unit does not stop, or as `capture`.
pub(crate) fn with_services_stopped<T>(
    options: &SnapshotOptions,
    by: &str,
    progress: &dyn Progress,
    capture: impl FnOnce() -> Result<T>,
) -> Result<(T, Option<Duration>)> {
    if options.stop_services.is_empty() {
        return capture().map(|t| (t, None));
    }
    let stopped = crate::commands::services::StoppedServices::stop(
        &options.scratch_dir,
        &options.stop_services,
        by,
        progress,
    )?;
    let result = capture();
    let down = match stopped.start() {
        Ok(d) => {
            progress.step(&format!(
                "started {} again after {:.1}s down",
                options.stop_services.join(" "),
                d.as_secs_f64()
            ));
            Some(d)
        }
        Err(e) => {
            progress.warn(&format!(
                "{} did not start again: {}; the next action or hook tries again",
                options.stop_services.join(" "),
                crate::error::chain(&e)
            ));
            None
        }
    };
    result.map(|t| (t, down))
}

/// Builds the manifest for a paths snapshot.
pub(crate) fn manifest_for(options: &SnapshotOptions) -> Manifest {
    let mut sources = Vec::new();
    if !options.paths.is_empty() {
        sources.push(SourceInfo {
            kind: "paths".into(),
            paths: options
                .paths
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            exclude: options.exclude.clone(),
            mounts: mounts_under(&options.paths, &options.exclude),
            details: Default::default(),
        });
    }
    Manifest {
        format_version: FORMAT_VERSION,
        tool: format!("charm-backup {}", env!("CARGO_PKG_VERSION")),
        host: host_name(),
        unit: options.unit.clone(),
        started: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        sources,
    }
}

/// The mount points at or below `paths` that `exclude` does not leave out.
fn mounts_under(paths: &[PathBuf], exclude: &[String]) -> Vec<String> {
    let all = crate::commands::mounts::mount_points();
    let excludes = Excludes::new(exclude).unwrap_or_default();
    paths
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .flat_map(|p| crate::commands::mounts::mounts_within(&p, &all))
        .filter(|m| !excludes.matches(m))
        .map(|m| m.display().to_string())
        .collect()
}

/// Checks the paths: non-empty, absolute, existing, none inside another.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] or [`ErrorKind::NotFound`] saying what to fix.
pub fn check_paths(paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Err(Error::invalid("nothing to archive: no paths are given"));
    }
    for p in paths {
        if !p.is_absolute() {
            return Err(Error::invalid(format!(
                "path {:?} is not absolute",
                p.display().to_string()
            )));
        }
        if p.components().any(|c| c == std::path::Component::ParentDir) || p == Path::new("/") {
            return Err(Error::invalid(format!(
                "path {:?} is not allowed (`/`, or a path with `..`)",
                p.display().to_string()
            )));
        }
        if std::fs::symlink_metadata(p).is_err() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("path {:?} does not exist", p.display().to_string()),
            ));
        }
        for q in paths {
            if p != q && p.starts_with(q) {
                return Err(Error::invalid(format!(
                    "path {:?} lies inside {:?}: list each tree once",
                    p.display().to_string(),
                    q.display().to_string()
                )));
            }
        }
    }
    Ok(())
}

/// Writes the archive of `options.paths` to `out`.
///
/// # Errors
/// When a path cannot be read or the output cannot be written.
pub fn write_archive<W: std::io::Write + Send + 'static>(
    out: W,
    options: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<(W, ArchiveStats)> {
    if !(options.paths.is_empty() && options.has_sources()) {
        check_paths(&options.paths)?;
    }
    let excludes = Excludes::new(&options.exclude)?;
    let mut manifest = manifest_for(options);
    let prepared = Prepared::prepare(options, &mut manifest, progress)?;
    let result = write_with(out, options, &manifest, &excludes, &prepared, progress);
    prepared.clean_up();
    result
}

/// What the sources prepared before the archive was started (what the manifest records of
/// them), and how each writes its data.
#[derive(Default)]
struct Prepared<'a> {
    #[cfg(feature = "postgresql")]
    pg: Option<(&'a Postgres, ServerInfo)>,
    #[cfg(feature = "etcd")]
    etcd: Option<EtcdSnapshot>,
    #[cfg(feature = "s3")]
    s3: Option<s3::Listed>,
    _options: std::marker::PhantomData<&'a SnapshotOptions>,
}

impl<'a> Prepared<'a> {
    /// Asks each source of `options` what the manifest records of it.
    #[cfg_attr(
        not(any(feature = "postgresql", feature = "etcd", feature = "s3")),
        allow(unused_variables, unused_mut)
    )]
    fn prepare(
        options: &'a SnapshotOptions,
        manifest: &mut Manifest,
        progress: &dyn Progress,
    ) -> Result<Self> {
        let mut p = Prepared::default();
        #[cfg(feature = "postgresql")]
        if let Some(pg) = &options.postgresql {
            progress.step(&format!("checking PostgreSQL at {}", pg.target()));
            let info = pg.inspect()?;
            for line in pg.describe(&info) {
                progress.step(&line);
            }
            manifest.sources.push(pg.source_info(&info)?);
            p.pg = Some((pg, info));
        }
        #[cfg(feature = "etcd")]
        if let Some(e) = &options.etcd {
            progress.step(&format!("taking an etcd snapshot from {}", e.endpoint));
            let snap = etcd::save(e, &options.scratch_dir)?;
            manifest.sources.push(SourceInfo {
                kind: "etcd".into(),
                details: snap.details.clone(),
                ..Default::default()
            });
            p.etcd = Some(snap);
        }
        #[cfg(feature = "s3")]
        if let Some(s) = &options.s3 {
            progress.step(&format!("listing the S3 buckets at {}", s.endpoint));
            let listed = s3::list(s)?;
            manifest.sources.push(listed.source_info(&s.endpoint));
            p.s3 = Some(listed);
        }
        Ok(p)
    }

    /// Whether the archive holds database pages (denser gzip pays there).
    fn dense(&self) -> bool {
        #[cfg(feature = "postgresql")]
        if matches!(&self.pg, Some((p, _)) if p.options().mode == PgMode::Physical) {
            return true;
        }
        false
    }

    /// Writes what goes before the paths (the databases); returns what was found while
    /// writing (LSNs, dump sizes), for the manifest the metadata records.
    #[cfg_attr(not(feature = "postgresql"), allow(unused_variables))]
    fn write_before<W: std::io::Write + Send + 'static>(
        &self,
        w: &mut ArchiveWriter<W>,
        progress: &dyn Progress,
    ) -> Result<Option<(&'static str, std::collections::BTreeMap<String, String>)>> {
        #[cfg(feature = "postgresql")]
        if let Some((pg, info)) = &self.pg {
            let details = match pg.options().mode {
                PgMode::Logical => pg.write_logical(info, w, progress)?,
                PgMode::Physical => pg.write_physical(info, w, progress)?,
            };
            return Ok(Some((postgres::KIND, details)));
        }
        Ok(None)
    }

    /// Writes what goes after the paths (an etcd snapshot, S3 objects).
    #[cfg_attr(not(feature = "s3"), allow(unused_variables))]
    fn write_after<W: std::io::Write + Send + 'static>(
        &self,
        options: &SnapshotOptions,
        w: &mut ArchiveWriter<W>,
        progress: &dyn Progress,
    ) -> Result<()> {
        #[cfg(feature = "etcd")]
        if let Some(snap) = &self.etcd {
            let mut f = std::fs::File::open(&snap.path)
                .map_err(|e| Error::io("cannot read the etcd snapshot", &snap.path, e))?;
            let size = f
                .metadata()
                .map_err(|e| Error::io("cannot read the etcd snapshot", &snap.path, e))?
                .len();
            w.append_stream(SNAPSHOT_ENTRY, size, 0o600, &mut f)?;
        }
        #[cfg(feature = "s3")]
        if let (Some(s), Some(l)) = (&options.s3, &self.s3) {
            s3::write(s, l, w, progress)?;
        }
        Ok(())
    }

    /// Removes what was staged (the etcd snapshot).
    fn clean_up(&self) {
        #[cfg(feature = "etcd")]
        if let Some(s) = &self.etcd {
            let _ = std::fs::remove_file(&s.path);
        }
    }
}

fn write_with<W: std::io::Write + Send + 'static>(
    out: W,
    options: &SnapshotOptions,
    manifest: &Manifest,
    excludes: &Excludes,
    prepared: &Prepared<'_>,
    progress: &dyn Progress,
) -> Result<(W, ArchiveStats)> {
    let mut archive_options = ArchiveOptions::with_compression(options.compression);
    archive_options.threads = options.compression_threads;
    archive_options.recipients = options.recipients.clone();
    if prepared.dense() {
        // Database pages: zlib-rs's default level is 7.5% larger there than zlib's.
        archive_options.gzip_effort = GzipEffort::Dense;
    }
    let mut w = ArchiveWriter::create(out, manifest, &archive_options)?;
    let found = prepared.write_before(&mut w, progress)?;
    for p in &options.paths {
        progress.step(&format!("archiving {}", p.display()));
        w.append_tree(p, excludes, progress)?;
    }
    prepared.write_after(options, &mut w, progress)?;
    let (out, mut stats) = w.finish()?;
    if let Some((kind, details)) = found
        && let Some(s) = stats.manifest.sources.iter_mut().find(|s| s.kind == kind)
    {
        s.details.extend(details);
    }
    Ok((out, stats))
}

/// The file name for a snapshot taken now with `options`:
/// `<prefix>-snapshot-YYYY-MM-DD-HH.MM.SS.<ext>` (UTC; see [`SnapshotOptions::extension`]).
pub fn snapshot_file_name(prefix: &str, options: &SnapshotOptions) -> String {
    format!(
        "{prefix}-snapshot-{}.{}",
        jiff::Timestamp::now().strftime("%Y-%m-%d-%H.%M.%S"),
        options.extension()
    )
}

/// Archives the paths into `target_dir/<file_name>`: written under a temporary `0600` name,
/// fsynced, given to the directory's owner, then renamed; when that name is taken (two
/// snapshots in one second) as `<name>-1.tar.gz`, `-2`, … instead.
///
/// # Errors
/// As [`write_archive`], plus when the target directory cannot be created or written; no
/// partial file is left under the final name.
pub fn snapshot(
    target_dir: &Path,
    file_name: &str,
    options: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<SnapshotStats> {
    let start = Instant::now();
    let out = AtomicFile::create_unique(&target_dir.join(file_name))?;
    let ((buf, archive), services_down) =
        with_services_stopped(options, "snapshot", progress, || {
            write_archive(BufWriter::with_capacity(1 << 20, out), options, progress)
        })?;
    let out = buf
        .into_inner()
        .map_err(|e| Error::io("cannot write the archive", target_dir, e.into_error()))?;
    let path = out.commit()?;
    Ok(SnapshotStats {
        path,
        archive,
        elapsed: start.elapsed(),
        services_down,
    })
}
