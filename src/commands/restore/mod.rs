//! `restore`: put an archive's paths back, checking everything before touching anything.
//!
//! Order: take the unit's operation lock; verify the whole archive and its checksum; check that
//! it only restores configured paths; save the existing data as an archive (unless told not
//! to); extract into staging directories beside each path (same filesystem); stop services;
//! swap each staging directory in with renames, rolling back on failure; start services.

mod interrupted;
mod options;
#[cfg(feature = "postgresql")]
mod recovery;

use std::fs;
use std::path::PathBuf;
#[cfg(feature = "postgresql")]
use std::time::Duration;
use std::time::Instant;

use crate::archive::{
    ArchiveSource, ChecksumCheck, Excludes, ExtractOptions, check_sha256, extract,
    read_manifest_only,
};
use crate::commands::journal::{Journal, JournalPath, Phase, sibling};
use crate::commands::layout::{Plan, check_no_running_server, resolve_target};
use crate::commands::lock::OperationLock;
use crate::commands::mounts;
use crate::commands::services::systemctl;
use crate::commands::snapshot::{SnapshotOptions, snapshot};
use crate::commands::trash::remove_any;
use crate::error::{Error, ErrorKind, IoContext, Result, chain};
use crate::progress::Progress;
#[cfg(feature = "etcd")]
use crate::source::etcd;
use crate::source::postgres::PgCtl;
#[cfg(feature = "postgresql")]
use crate::source::postgres::{self, Current, LogicalRestore, Postgres};
#[cfg(feature = "s3")]
use crate::source::s3;

pub use interrupted::recover;
use interrupted::recover_locked;
pub use options::{RestoreOptions, RestoreStats};

/// What is stopped around the swap: systemd units, and a PostgreSQL server run by `pg_ctl`.
fn stop_services(units: &[String], pg_ctl: Option<&PgCtl>) -> Result<()> {
    systemctl("stop", units)?;
    match pg_ctl {
        Some(p) => p.stop(),
        None => Ok(()),
    }
}

fn start_services(units: &[String], pg_ctl: Option<&PgCtl>) -> Result<()> {
    let started = systemctl("start", units);
    match pg_ctl {
        Some(p) => started.and(p.start()),
        None => started,
    }
}

/// Restores the archive `archive` (a local file, or an object streamed from a store: either
/// is read once into staging, its sha256 computed on the way and checked before the swap).
///
/// # Errors
/// [`ErrorKind::Busy`] when another operation runs; [`ErrorKind::Integrity`] for a bad
/// checksum or archive; [`ErrorKind::InvalidInput`] when the archive holds paths this unit does
/// not back up. Any failure before the swap leaves the data as it was; a failure during the
/// swap puts the old data back.
pub fn restore(
    archive: &dyn ArchiveSource,
    options: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    let start = Instant::now();
    let _lock = OperationLock::acquire(&options.state_dir, "restore")?;
    if let Some(done) = recover_locked(&options.state_dir)? {
        progress.step(&done);
    }
    let name = archive.name();
    // A local file's sum is checked alongside the rest, on a thread of its own: a wrong file
    // stops the extraction early, and its mismatch is the error reported whatever else failed,
    // since it explains the rest. A stream's sum is computed as it is read.
    let mut checksum = match (&options.expected_sha256, archive.file()) {
        (Some(expected), Some(file)) => {
            progress.step(&format!("checking the sha256 of {name}"));
            Some(ChecksumCheck::start(file, expected)?)
        }
        _ => None,
    };
    let restored = restore_open(archive, options, &mut checksum, start, progress);
    match (checksum, &restored) {
        // A damaged or unexpected file: the sum says which.
        (Some(c), Err(e)) if e.kind() == ErrorKind::Integrity => {
            c.wait().map_err(|e| e.with_context(name.clone()))?;
        }
        // Other failures (settings, a busy unit) do not wait for the whole file to be hashed.
        _ => {}
    }
    restored
}

/// Refuses an archive holding a source this build cannot restore (built without its feature).
fn refuse_unbuilt_sources(manifest: &crate::archive::Manifest) -> Result<()> {
    let built = |kind: &str| {
        (kind != "postgresql" || cfg!(feature = "postgresql"))
            && (kind != "etcd" || cfg!(feature = "etcd"))
            && (kind != "s3" || cfg!(feature = "s3"))
    };
    match manifest.sources.iter().find(|s| !built(&s.kind)) {
        Some(s) => Err(Error::invalid(format!(
            "the archive holds a {} backup, and this program was built without the {:?} \
             feature that restores it",
            s.kind, s.kind
        ))),
        None => Ok(()),
    }
}

/// [`restore`] once the lock is held; waits for `checksum` (taking it) before anything is
/// swapped.
fn restore_open(
    archive: &dyn ArchiveSource,
    options: &RestoreOptions,
    checksum: &mut Option<ChecksumCheck>,
    start: Instant,
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    let manifest = read_manifest_only(archive).map_err(|e| e.with_context(archive.name()))?;
    let roots: Vec<PathBuf> = manifest.roots().iter().map(PathBuf::from).collect();
    refuse_unbuilt_sources(&manifest)?;
    #[cfg_attr(not(feature = "postgresql"), allow(unused_mut))]
    let mut allowed = options.allowed_paths.clone();
    #[cfg_attr(not(feature = "postgresql"), allow(unused_mut))]
    let mut pg_ctl: Option<PgCtl> = None;
    #[cfg(feature = "postgresql")]
    let pg_source = manifest.sources.iter().find(|s| s.kind == postgres::KIND);
    #[cfg(feature = "postgresql")]
    let pg = match (pg_source, &options.postgresql) {
        (Some(_), None) => {
            return Err(Error::invalid(
                "the archive holds a PostgreSQL backup: set postgresql-uri (and the password) to restore it",
            ));
        }
        (Some(s), Some(pg)) => Some((s, pg)),
        (None, _) => None,
    };
    #[cfg(feature = "postgresql")]
    let mut logical = None;
    #[cfg(feature = "postgresql")]
    let mut pg_data_dir: Option<PathBuf> = None;
    #[cfg(feature = "postgresql")]
    if let Some((source, pg)) = pg {
        if source.details.get("mode").map(String::as_str) == Some("physical") {
            let data_dir = physical_target(pg, source)?;
            pg.check_compatible(source, &Current::of_data_dir(pg, &data_dir)?)?;
            if options.services.is_empty() {
                let mut ctl = PgCtl::new(
                    &data_dir,
                    pg.options().bin_dir.clone(),
                    options.state_dir.join("postgresql.log"),
                );
                // Recovery needs the server running, whether or not it ran before.
                ctl.was_running |= options.recovery.is_some();
                pg_ctl = Some(ctl);
            }
            pg_data_dir = Some(data_dir.clone());
            allowed.push(data_dir);
        } else if options.recovery.is_some() {
            return Err(Error::invalid(
                "a point-in-time restore starts from a physical base backup, and this one is \
                 logical: give the id of a physical one (postgresql-mode=physical)",
            ));
        } else {
            progress.step(&format!("checking PostgreSQL at {}", pg.target()));
            let info = pg.inspect()?;
            for line in pg.describe(&info) {
                progress.step(&line);
            }
            logical = Some(LogicalRestore::prepare(
                pg,
                &info,
                source,
                options.logical,
                progress,
            )?);
        }
    }
    if allowed.is_empty() && !roots.is_empty() {
        return Err(Error::invalid(
            "the paths option is empty, so nothing may be restored: set it to the paths this unit backs up",
        ));
    }
    for r in &roots {
        if !allowed.iter().any(|a| r.starts_with(a)) {
            return Err(Error::invalid(format!(
                "the archive holds {:?}, which is not among the paths this unit restores ({}): refusing to write there",
                r.display().to_string(),
                allowed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
    }
    #[cfg(feature = "etcd")]
    let has_etcd = manifest.sources.iter().any(|s| s.kind == "etcd");
    #[cfg(feature = "etcd")]
    let etcd = match (&options.etcd, has_etcd) {
        (Some(e), true) => Some(e.clone()),
        (None, true) => {
            return Err(Error::invalid(
                "the archive holds an etcd snapshot: set etcd-data-dir, etcd-name and etcd-peer-url to restore it",
            ));
        }
        (_, false) => None,
    };
    #[cfg(feature = "etcd")]
    if let Some(e) = &etcd {
        progress.step(&etcd::check_single_member(e)?);
    }
    #[cfg(feature = "s3")]
    let s3_target = match (
        manifest.sources.iter().any(|s| s.kind == s3::KIND),
        &options.s3,
    ) {
        (true, None) => {
            return Err(Error::invalid(
                "the archive holds S3 objects: relate s3-source to an s3-integrator for the \
                 gateway to put them back into",
            ));
        }
        (true, Some(t)) => Some(t),
        (false, _) => None,
    };
    // Everything that gets swapped: the archive's paths, and the etcd data directory; a
    // symlinked one where it points.
    #[cfg_attr(not(feature = "etcd"), allow(unused_mut))]
    let mut targets: Vec<PathBuf> = roots.iter().map(|r| resolve_target(r)).collect();
    #[cfg(feature = "etcd")]
    if let Some(e) = &etcd {
        if !e.data_dir.is_absolute() {
            return Err(Error::invalid("etcd-data-dir must be an absolute path"));
        }
        targets.push(resolve_target(&e.data_dir));
    }
    if options.services.is_empty() {
        check_no_running_server(&targets, pg_ctl.as_ref())?;
    }
    if !options.limits.allow_unmounted {
        check_volumes_mounted(&manifest)?;
    }
    let mut stats = RestoreStats {
        paths: targets.clone(),
        ..Default::default()
    };
    let plan = Plan::new(
        &targets,
        &manifest.roots(),
        &mounts::mount_points(),
        &options.keep,
    );
    let mut journal = Journal::new(Phase::Staging, archive.name(), plan.units.clone());
    journal.services = options.services.clone();
    journal.pg_ctl = pg_ctl.clone();
    for r in &targets {
        if let Some(parent) = r.parent() {
            fs::create_dir_all(parent).at("cannot create the parent directory", parent)?;
        }
    }
    journal.save(&options.state_dir)?;
    let undo = |journal: &Journal, e: Error, what: &str| -> Error {
        let undone = journal
            .roll_back()
            .and_then(|()| Journal::clear(&options.state_dir));
        let _ = start_services(&journal.services, journal.pg_ctl.as_ref());
        match undone {
            Ok(()) => Error::new(
                e.kind(),
                format!("{what}, nothing was changed: {}", chain(&e)),
            ),
            Err(u) => Error::new(
                e.kind(),
                format!(
                    "{what}: {}; undoing it also failed ({}): the next action or hook will try again",
                    chain(&e),
                    chain(&u)
                ),
            ),
        }
    };
    progress.step(&format!(
        "verifying and extracting {} into staging directories",
        archive.name()
    ));
    let side = sibling(&options.state_dir.join("side"), "new");
    let _ = remove_any(&side);
    let mut extract_options = ExtractOptions::with_limits(options.limits);
    extract_options.stop = checksum.as_ref().map(ChecksumCheck::stop_flag);
    extract_options.redirects = plan.redirects.clone();
    let mut no_sink = ();
    #[cfg(feature = "postgresql")]
    let inner: &mut dyn crate::archive::SideSink = match logical.as_mut() {
        Some(l) => l,
        None => &mut no_sink,
    };
    #[cfg(not(feature = "postgresql"))]
    let inner: &mut dyn crate::archive::SideSink = &mut no_sink;
    // S3 objects are read and hashed, never written to the unit's disk.
    #[cfg(feature = "s3")]
    let (extracted, s3_seen) = {
        let mut collect = s3::Collect::new(inner);
        let x = extract(
            archive,
            &manifest,
            &plan.staging,
            &side,
            &mut collect,
            &extract_options,
            progress,
        );
        (x, collect.finish())
    };
    #[cfg(not(feature = "s3"))]
    let extracted = extract(
        archive,
        &manifest,
        &plan.staging,
        &side,
        inner,
        &extract_options,
        progress,
    );
    #[cfg(feature = "postgresql")]
    let extracted = match logical.as_mut() {
        Some(l) => extracted.and_then(|x| l.finish().map(|()| x)),
        None => extracted,
    };
    #[cfg(feature = "s3")]
    let mut s3_plan = None;
    let restored_etcd = extracted.and_then(|(x, info)| {
        stats.extracted = x;
        if let Some(c) = checksum.take() {
            c.wait()?;
        }
        // The file may have changed while its checksum was checked: compare what was read.
        check_sha256(&info.sha256, options.expected_sha256.as_deref())?;
        stats.archive = info;
        #[cfg(feature = "postgresql")]
        if let (Some(pg), Some((_, p))) = (&pg_ctl, pg) {
            progress.step("checking the restored data directory against its backup manifest");
            p.verify_base(
                &plan.staging_of(&resolve_target(&pg.data_dir)),
                &pg.data_dir,
            )?;
        }
        #[cfg(feature = "etcd")]
        if let Some(e) = &etcd {
            {
                progress.step("restoring the etcd snapshot into a fresh data directory");
                stats.etcd = Some(etcd::restore(
                    &side.join("etcd/snapshot.db"),
                    e,
                    &plan.staging_of(&resolve_target(&e.data_dir)),
                )?);
            }
        }
        Ok(())
    });
    let _ = remove_any(&side);
    if let Err(e) = restored_etcd {
        return Err(undo(&journal, e, "extraction failed"));
    }
    #[cfg(feature = "s3")]
    if let Some(t) = s3_target {
        // Objects in the way are refused here, before anything is swapped or written.
        match s3::plan_restore(&s3_seen, t, progress) {
            Ok(p) => s3_plan = Some(p),
            Err(e) => return Err(undo(&journal, e, "the S3 objects cannot be put back")),
        }
    }
    // Stopped before the existing data is saved, so the saved copy is consistent too.
    if let Err(e) = stop_services(&options.services, pg_ctl.as_ref()) {
        return Err(undo(&journal, e, "the services did not stop"));
    }
    if let Err(e) = check_no_running_server(&targets, None) {
        return Err(undo(&journal, e, "a server still runs on the data"));
    }
    // What the backup left out: kept as it is on the unit, so neither saved nor replaced.
    let excluded: Vec<String> = manifest
        .sources
        .iter()
        .flat_map(|s| s.exclude.iter().cloned())
        .collect();
    if let Some(target) = &options.save_existing_to {
        let existing: Vec<PathBuf> = targets
            .iter()
            .filter(|r| fs::symlink_metadata(r).is_ok())
            .cloned()
            .collect();
        if !existing.is_empty() {
            progress.step(&format!("saving the existing data to {}", target.display()));
            let mut so = SnapshotOptions::new(existing);
            so.compression = options.compression;
            so.recipients = options.recipients.clone();
            so.unit = options.unit.clone();
            // What the restore keeps in place anyway is not saved again.
            so.exclude = excluded
                .iter()
                .cloned()
                .chain(
                    options
                        .keep
                        .iter()
                        .map(|k| glob::Pattern::escape(&k.display().to_string())),
                )
                .collect();
            let name = format!(
                "{}-pre-restore-{}.{}",
                options.name_prefix,
                jiff::Timestamp::now().strftime("%Y-%m-%d-%H.%M.%S"),
                so.extension()
            );
            // Recorded first, so that a killed restore leaves no partial archive behind.
            journal.saving = Some(target.join(&name));
            if let Err(e) = journal.save(&options.state_dir) {
                return Err(undo(&journal, e, "cannot record the save"));
            }
            match snapshot(target, &name, &so, progress) {
                Ok(saved) => stats.saved = Some(saved),
                Err(e) => {
                    return Err(undo(&journal, e, "cannot save the existing data first"));
                }
            }
        }
    }
    // Only paths the archive has entries for are swapped.
    journal
        .paths
        .retain(|p| fs::symlink_metadata(p.staging()).is_ok());
    // What the backup left out stays as it is on the unit.
    match Excludes::new(&excluded).and_then(|x| journal.carry_excluded(&x, &options.state_dir)) {
        Ok(0) => {}
        Ok(n) => progress.step(&format!(
            "kept {n} excluded subtree(s) and socket(s) of the existing data (the backup left them out)"
        )),
        Err(e) => return Err(undo(&journal, e, "cannot keep the excluded subtrees")),
    }
    #[cfg_attr(not(feature = "postgresql"), allow(unused_mut))]
    let mut swap_phase = Phase::Swapping;
    #[cfg(feature = "postgresql")]
    if let Some(l) = logical.as_mut() {
        progress.step("putting the restored databases in place");
        stats.databases = l.databases();
        stats.warnings = l.warnings().to_vec();
        match l.swap(options.save_existing_to.is_some()) {
            Ok(kept) => stats.kept_databases = kept,
            Err(e) => return Err(undo(&journal, e, "the databases could not be swapped")),
        }
        // From here on the paths follow the databases: an interruption finishes the restore.
        swap_phase = Phase::DatabasesSwapped;
    }

    progress.step("swapping the restored data in");
    // Before the databases moved, a failed swap is undone; after, it is left to be finished.
    let swap_failed = |journal: &Journal, e: Error, what: &str| match swap_phase {
        Phase::DatabasesSwapped => databases_ahead(e),
        _ => undo(journal, e, what),
    };
    let recorded = journal
        .paths
        .iter_mut()
        .try_for_each(JournalPath::record_staged)
        .and_then(|()| journal.advance(swap_phase, &options.state_dir));
    if let Err(e) = recorded {
        return Err(swap_failed(&journal, e, "cannot record the swap"));
    }
    for p in &journal.paths {
        if let Err(e) = Journal::swap_one(p) {
            return Err(swap_failed(&journal, e, "the swap failed and was undone"));
        }
    }
    journal.advance(Phase::Swapped, &options.state_dir)?;
    journal.clean_up(&options.state_dir)?;
    Journal::clear(&options.state_dir)?;
    #[cfg(feature = "postgresql")]
    if let (Some(target), Some(dir)) = (&options.recovery, &pg_data_dir) {
        target.write(dir)?;
    }
    // The objects go back while the services are still stopped, so none writes meanwhile;
    // the services start whatever happens.
    #[cfg(feature = "s3")]
    let put = match (s3_target, &s3_plan) {
        (Some(t), Some(plan)) => Some(
            s3::put_back(
                archive,
                &stats.archive.sha256,
                &s3_seen,
                plan,
                t,
                options.limits,
                progress,
            )
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "the other data was restored, but the S3 objects were not all put back: \
                         {}; run the same restore again to finish (objects already back are \
                         skipped)",
                        chain(&e)
                    ),
                )
            }),
        ),
        _ => None,
    };
    #[cfg(feature = "postgresql")]
    if let (Some(target), Some((_, p)), Some(dir)) = (&options.recovery, pg, &pg_data_dir) {
        stats.recovered = Some(recovery::recover(
            p,
            target,
            dir,
            &options.services,
            pg_ctl.as_ref(),
            progress,
        )?);
        stats.elapsed = start.elapsed();
        return Ok(stats);
    }
    start_services(&options.services, pg_ctl.as_ref()).map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "the data was restored, but the services did not start: {}",
                chain(&e)
            ),
        )
    })?;
    #[cfg(feature = "postgresql")]
    if let (Some(ctl), Some((_, p))) = (&pg_ctl, pg)
        && ctl.was_running
    {
        progress.step("waiting for PostgreSQL to accept connections");
        p.wait_ready(Duration::from_secs(300)).map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "the data was restored and PostgreSQL started, but it does not accept connections: {}",
                    chain(&e)
                ),
            )
        })?;
    }
    #[cfg(feature = "s3")]
    if let Some(put) = put {
        stats.s3 = Some(put?);
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

/// Refuses a restore that would write a volume's data onto the filesystem above it: the
/// archive was written with a filesystem mounted where nothing is mounted now.
fn check_volumes_mounted(manifest: &crate::archive::Manifest) -> Result<()> {
    let now = mounts::mount_points();
    for m in manifest.sources.iter().flat_map(|s| s.mounts.iter()) {
        let m = PathBuf::from(m);
        let here = fs::canonicalize(&m).unwrap_or_else(|_| m.clone());
        if !now.contains(&here) {
            return Err(Error::invalid(format!(
                "the backup was taken with a filesystem mounted at {}, and none is mounted there now: mount it so that its data goes back onto it, or restore with allow-unmounted=true to write it onto the filesystem above",
                m.display()
            )));
        }
    }
    Ok(())
}

/// The error when the databases are restored but the paths could not follow: not undone (the
/// databases cannot be), left for the next action or hook to finish.
fn databases_ahead(e: Error) -> Error {
    Error::new(
        e.kind(),
        format!(
            "the databases were restored, but the files could not be put in place ({}): the next action or hook will finish it",
            chain(&e)
        ),
    )
}

/// The data directory a physical backup goes back to: the backup's own, which must be the
/// server's (from `postgresql-data-dir`, else asked of the running server).
#[cfg(feature = "postgresql")]
fn physical_target(pg: &Postgres, source: &crate::archive::SourceInfo) -> Result<PathBuf> {
    let backup_dir = source.paths.first().map(PathBuf::from).unwrap_or_default();
    let current = pg.data_directory().map_err(|_| {
        Error::invalid(
            "cannot tell this server's data directory (it is not running, or the role may not read data_directory): set postgresql-data-dir",
        )
    })?;
    if current != backup_dir {
        return Err(Error::invalid(format!(
            "the backup is of the data directory {}, but this server's is {}: a physical backup goes back where it came from",
            backup_dir.display(),
            current.display()
        )));
    }
    Ok(current)
}
