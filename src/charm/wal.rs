//! WAL archiving as the charm runs it: the hooks install a copy of `dispatch` and the settings
//! it replays where the `postgres` user can reach them, point the server's `archive_command`
//! at it (putting the old settings back when archiving is turned off), and report the
//! archiver's health; PostgreSQL runs `dispatch wal-push` and `dispatch wal-fetch`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::charm::actions::{open_store, state_dir};
use crate::charm::config::CharmConfig;
use crate::commands::wal::{Fetched, WalFetchOptions, WalPushOptions, wal_fetch, wal_push};
use crate::error::{Error, ErrorKind, chain};
use crate::juju::replay::SavedContext;
use crate::juju::{BoxError, Context, Status};
use crate::source::postgres::Postgres;
use crate::source::postgres::wal::{PushOutcome, Setting, WAL_PREFIX};
use crate::store::Store;

/// Exit status of `wal-fetch` when the store failed (after its retries) rather than answered
/// that the file does not exist: above 125, which PostgreSQL takes for a failure of the
/// command itself and ends recovery with an error instead of treating the file as missing.
pub const FETCH_FAILED: u8 = 255;

/// The previous archiving settings, in the unit's state directory while archiving is on.
const PREVIOUS_SETTINGS: &str = "wal-archive-previous-settings.json";

/// Where the `postgres` user finds what it runs: `charm-backup-wal` beside the charm
/// directory, which charm upgrades leave alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalPaths {
    /// The directory (`0750`, group `postgres`).
    pub dir: PathBuf,
    /// The copy of `dispatch` PostgreSQL runs.
    pub binary: PathBuf,
    /// The settings it replays (`0640`, group `postgres`): config, store credentials.
    pub settings: PathBuf,
    /// A directory the `postgres` user writes: the last push error, the identity file of a
    /// point-in-time restore.
    pub private: PathBuf,
}

impl WalPaths {
    /// The paths of the unit in `ctx`.
    pub fn of(ctx: &Context) -> WalPaths {
        let charm = &ctx.juju().charm_dir;
        WalPaths::in_dir(
            charm
                .parent()
                .unwrap_or(Path::new("/var/lib/charm-backup"))
                .join("charm-backup-wal"),
        )
    }

    /// The paths in `dir` (that of the settings file `wal-push` and `wal-fetch` are given).
    pub fn in_dir(dir: PathBuf) -> WalPaths {
        WalPaths {
            binary: dir.join("dispatch"),
            settings: dir.join("settings.json"),
            private: dir.join("private"),
            dir,
        }
    }

    /// `archive_command`: `'<binary>' wal-push '<settings>' %p %f`.
    pub fn archive_command(&self) -> String {
        format!(
            "{} wal-push {} %p %f",
            shell_quote(&self.binary),
            shell_quote(&self.settings)
        )
    }

    /// `restore_command`, with the identity file that decrypts the WAL when there is one.
    pub fn restore_command(&self, identity: Option<&Path>) -> String {
        let id = identity
            .map(|p| format!(" --identity {}", shell_quote(p)))
            .unwrap_or_default();
        format!(
            "{} wal-fetch{id} {} %f %p",
            shell_quote(&self.binary),
            shell_quote(&self.settings)
        )
    }

    /// The file a failed fetch leaves its error in.
    pub fn fetch_failure(&self) -> PathBuf {
        self.private.join("last-fetch-error")
    }

    /// The file holding the last push's error, if it failed.
    pub fn last_error(&self) -> PathBuf {
        self.private.join("last-push-error")
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The owner (uid, gid) of the server's data directory, which must be on this machine.
///
/// # Errors
/// When the server is not local.
pub fn server_owner(pg: &Postgres) -> Result<(u32, u32), BoxError> {
    let dir = pg.data_directory()?;
    let m = std::fs::metadata(&dir).map_err(|_| {
        Error::invalid(format!(
            "the server's data directory {} is not on this machine: WAL archiving runs beside \
             the server (point postgresql-uri at the PostgreSQL of this machine)",
            dir.display()
        ))
    })?;
    Ok((m.uid(), m.gid()))
}

fn chown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<(), BoxError> {
    std::os::unix::fs::chown(path, uid, gid)
        .map_err(|e| Error::io("cannot change the owner of", path, e).into())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BoxError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("cannot set the mode of", path, e).into())
}

/// Lets every user pass through the directories above `path` (adds `o+x` where it is missing,
/// never read), so the `postgres` user reaches what is kept there.
fn make_reachable(path: &Path) -> Result<(), BoxError> {
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            break;
        }
        let m = std::fs::metadata(dir).map_err(|e| Error::io("cannot read", dir, e))?;
        if m.permissions().mode() & 0o001 == 0 {
            set_mode(dir, (m.permissions().mode() & 0o7777) | 0o001)?;
        }
    }
    Ok(())
}

/// Installs the copy of `dispatch` and the settings it replays, readable by root and the
/// server's group only; with the local store, lets the server's user write its `wal/`.
///
/// # Errors
/// When a file cannot be written.
pub fn install(
    ctx: &Context,
    config: &CharmConfig,
    owner: (u32, u32),
) -> Result<WalPaths, BoxError> {
    let paths = WalPaths::of(ctx);
    let (uid, gid) = owner;
    std::fs::create_dir_all(&paths.dir).map_err(|e| Error::io("cannot create", &paths.dir, e))?;
    chown(&paths.dir, Some(0), Some(gid))?;
    set_mode(&paths.dir, 0o750)?;
    make_reachable(&paths.dir)?;
    std::fs::create_dir_all(&paths.private)
        .map_err(|e| Error::io("cannot create", &paths.private, e))?;
    chown(&paths.private, Some(uid), Some(gid))?;
    set_mode(&paths.private, 0o700)?;

    let source = ctx.juju().charm_dir.join("dispatch");
    let new = std::fs::read(&source).map_err(|e| Error::io("cannot read", &source, e))?;
    if std::fs::read(&paths.binary).ok().as_deref() != Some(&new[..]) {
        crate::schedule::write_atomic(&paths.binary, &new, 0o750)?;
    }
    chown(&paths.binary, Some(0), Some(gid))?;

    let tools = ctx.tools();
    tools.start_recording();
    let store = CharmConfig::read(ctx)
        .map_err(BoxError::from)
        .and_then(|c| open_store(ctx, &c));
    let calls = tools.take_recording();
    let store = store?;
    let saved = serde_json::to_vec(&SavedContext::new(ctx.juju(), calls))?;
    crate::schedule::write_atomic(&paths.settings, &saved, 0o640)?;
    chown(&paths.settings, Some(0), Some(gid))?;

    if store.kind() == "local" {
        let root = Path::new(&config.local_store);
        crate::archive::create_private_dir(root)?;
        make_reachable(&root.join("x"))?;
        let wal = root.join(WAL_PREFIX.trim_end_matches('/'));
        std::fs::create_dir_all(&wal).map_err(|e| Error::io("cannot create", &wal, e))?;
        chown(&wal, Some(uid), Some(gid))?;
        set_mode(&wal, 0o700)?;
    }
    Ok(paths)
}

fn previous_path(ctx: &Context) -> PathBuf {
    state_dir(ctx).join(PREVIOUS_SETTINGS)
}

/// Restarts the server through the `services` units, or says what the operator must run.
fn apply_restart(
    pg: &Postgres,
    services: &[String],
    why: &str,
) -> Result<Option<Status>, BoxError> {
    if services.is_empty() {
        return Ok(Some(Status::Blocked(format!(
            "PostgreSQL must restart {why}: run `sudo systemctl restart postgresql` on this \
             machine (or set services to its unit, e.g. postgresql@15-main, and the charm does)"
        ))));
    }
    crate::commands::services::systemctl("restart", services)?;
    pg.wait_ready(Duration::from_secs(300))?;
    Ok(None)
}

/// Brings the server's archiving in line with `postgresql-wal-archive`, then adds the
/// archiver's health to `status`.
///
/// # Errors
/// When the server or the files cannot be reached.
pub fn sync(ctx: &Context, config: &CharmConfig, status: Status) -> Result<Status, BoxError> {
    let previous = previous_path(ctx);
    if !config.postgresql_wal_archive && !previous.exists() {
        return Ok(status);
    }
    let Some(pg) = config.postgresql(ctx)? else {
        return Ok(status);
    };
    if !config.postgresql_wal_archive {
        return turn_off(ctx, config, &pg, status);
    }
    let timeout = config.archive_timeout()?;
    let owner = server_owner(&pg)?;
    let paths = install(ctx, config, owner)?;
    let command = paths.archive_command();
    let state = pg.archive_state()?;
    if !state.archive_library.is_empty() {
        return Ok(Status::Blocked(format!(
            "the server's archive_library is {:?}, which overrides archive_command: unset it for \
             postgresql-wal-archive to work",
            state.archive_library
        )));
    }
    if !previous.exists() {
        let old: Vec<Setting> = state.settings.clone();
        crate::archive::create_private_dir(&state_dir(ctx))?;
        crate::schedule::write_atomic(&previous, &serde_json::to_vec(&old)?, 0o600)?;
    }
    if state.value("archive_command") != command
        || state.value("archive_timeout") != timeout.to_string()
        || state.value("archive_mode") != "on" && !state.pending_restart("archive_mode")
    {
        pg.set_archiving(&command, timeout)?;
        ctx.log(&format!(
            "archive_command set to {command}, archive_timeout to {timeout}s"
        ));
    }
    if reloaded(&pg, "archive_mode")? != "on"
        && let Some(s) = apply_restart(
            &pg,
            &config.services(),
            "for archive_mode=on to start WAL archiving",
        )?
    {
        return Ok(s);
    }
    Ok(health(&pg, &paths, timeout, status))
}

/// The value of `name` once the server has reloaded its configuration (a few seconds at most).
fn reloaded(pg: &Postgres, name: &str) -> Result<String, BoxError> {
    let mut state = pg.archive_state()?;
    for _ in 0..20 {
        if state.value(name) == "on" || state.pending_restart(name) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        state = pg.archive_state()?;
    }
    Ok(state.value(name).to_string())
}

fn turn_off(
    ctx: &Context,
    config: &CharmConfig,
    pg: &Postgres,
    status: Status,
) -> Result<Status, BoxError> {
    let previous = previous_path(ctx);
    let old: Vec<Setting> = serde_json::from_slice(
        &std::fs::read(&previous).map_err(|e| Error::io("cannot read", &previous, e))?,
    )?;
    pg.restore_settings(&old)?;
    let mode_was = old
        .iter()
        .find(|s| s.name == "archive_mode")
        .map_or("off", |s| s.value.as_str());
    std::thread::sleep(Duration::from_millis(300));
    let state = pg.archive_state()?;
    if state.value("archive_mode") != mode_was
        && let Some(s) = apply_restart(
            pg,
            &config.services(),
            "to finish turning WAL archiving off",
        )?
    {
        // Until it restarts, WAL keeps going to the store rather than piling up in pg_wal.
        pg.set_archive_command(
            &WalPaths::of(ctx).archive_command(),
            config.archive_timeout().unwrap_or(60),
        )?;
        return Ok(s);
    }
    std::fs::remove_file(&previous).map_err(|e| Error::io("cannot remove", &previous, e))?;
    let paths = WalPaths::of(ctx);
    let _ = std::fs::remove_file(&paths.settings);
    ctx.log("WAL archiving is off; the server's previous archive settings are back");
    Ok(status)
}

/// `status` with the archiver's health: `blocked` when archiving fails or a segment has
/// waited more than twice the archive timeout, else the last archived segment.
pub fn health(pg: &Postgres, paths: &WalPaths, timeout: u32, status: Status) -> Status {
    let Status::Active(msg) = status else {
        return status;
    };
    let stats = match pg.archiver_stats() {
        Ok(s) => s,
        Err(e) => return Status::Active(format!("{msg}; WAL archiver unknown: {e}")),
    };
    let last = if stats.last_archived_wal.is_empty() {
        "nothing archived yet".to_string()
    } else {
        format!(
            "last archived {} {}",
            stats.last_archived_wal,
            stats
                .last_archived_time
                .map(crate::schedule::history::short_time)
                .unwrap_or_default()
        )
    };
    let failing =
        stats.last_failed_time.is_some() && stats.last_failed_time > stats.last_archived_time;
    if failing {
        let err = std::fs::read_to_string(paths.last_error()).unwrap_or_default();
        let err: String = err.trim().chars().take(200).collect();
        return Status::Blocked(format!(
            "WAL archiving fails: {} not archived ({}){}; {last}",
            stats.last_failed_wal,
            stats
                .last_failed_time
                .map(crate::schedule::history::short_time)
                .unwrap_or_default(),
            if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            }
        ));
    }
    if stats.oldest_ready_secs > 2 * u64::from(timeout) {
        return Status::Blocked(format!(
            "WAL archiving lags: a segment has waited {}s, more than twice \
             postgresql-archive-timeout; {last}",
            stats.oldest_ready_secs
        ));
    }
    Status::Active(format!("{msg}; WAL {last}"))
}

/// The config and the store, replayed from the settings the hooks saved.
fn replayed(settings: &Path) -> Result<(CharmConfig, Box<dyn Store>), BoxError> {
    let saved: SavedContext = serde_json::from_slice(
        &std::fs::read(settings).map_err(|e| Error::io("cannot read", settings, e))?,
    )?;
    let ctx = Context::new(saved.juju(), saved.tools());
    let config = CharmConfig::read(&ctx)?;
    let store = open_store(&ctx, &config)?;
    Ok((config, store))
}

/// The paths beside the settings file.
fn paths_beside(settings: &Path) -> WalPaths {
    WalPaths::in_dir(settings.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// `dispatch wal-push SETTINGS PATH NAME`: PostgreSQL's `archive_command`. Exits 0 once the
/// file is stored (or was already, with the same content); otherwise 1 with the reason on
/// stderr, which PostgreSQL puts in its log (and retries).
pub fn run_push(settings: &Path, path: &Path, name: &str) -> ExitCode {
    let result = (|| -> Result<PushOutcome, BoxError> {
        let (config, store) = replayed(settings)?;
        let o = WalPushOptions {
            recipients: config.recipients()?,
            // A segment is compressed on one core unless compression-threads says otherwise:
            // the archiver runs beside the database, whose cores are its own (one core already
            // pushes 1.8x pgBackRest's rate; two are 1.3x faster on an idle machine).
            threads: match config.compression_threads().unwrap_or(0) {
                0 => 1,
                n => n,
            },
            ..Default::default()
        };
        Ok(wal_push(store.as_ref(), path, name, &o)?)
    })();
    let last_error = paths_beside(settings).last_error();
    match result {
        Ok(PushOutcome::Stored(_)) | Ok(PushOutcome::AlreadyArchived(_)) => {
            let _ = std::fs::remove_file(last_error);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let msg = format!("charm-backup wal-push {name}: {}", chain(e.as_ref()));
            eprintln!("{msg}");
            let _ = std::fs::write(last_error, &msg);
            ExitCode::FAILURE
        }
    }
}

/// `dispatch wal-fetch [--identity FILE] SETTINGS NAME PATH`: PostgreSQL's `restore_command`.
/// Exits 0 with the file written, 1 only when the store answered that it does not hold it,
/// and [`FETCH_FAILED`] when the store could not be read after retries.
pub fn run_fetch(settings: &Path, identity: Option<&Path>, name: &str, dest: &Path) -> ExitCode {
    let result = (|| -> Result<Fetched, BoxError> {
        let (_, store) = replayed(settings)?;
        let mut o = WalFetchOptions::new();
        if let Some(p) = identity {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io("cannot read", p, e))?;
            o.identities = Some(crate::archive::Identities::parse(&text)?);
        }
        Ok(wal_fetch(store.as_ref(), name, dest, &o)?)
    })();
    match result {
        Ok(Fetched::Written) => ExitCode::SUCCESS,
        Ok(Fetched::NotArchived) => ExitCode::from(1),
        Err(e) => {
            let kind = e
                .downcast_ref::<Error>()
                .map_or(ErrorKind::Other, Error::kind);
            let msg = format!(
                "charm-backup wal-fetch {name}: {} ({})",
                chain(e.as_ref()),
                if kind == ErrorKind::InvalidInput {
                    "recovery cannot go on without it"
                } else {
                    "recovery stops here rather than take the file for the end of WAL; start the \
                     server again once the store is back"
                }
            );
            eprintln!("{msg}");
            let _ = std::fs::write(paths_beside(settings).fetch_failure(), &msg);
            ExitCode::from(FETCH_FAILED)
        }
    }
}
