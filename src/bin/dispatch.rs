//! The charm's one executable: Juju runs it as `dispatch` (or through the `actions/<name>` and
//! `hooks/<name>` links), and it runs the action or hook Juju asked for. systemd runs it as
//! `dispatch scheduled-backup SETTINGS` for scheduled backups.

use std::process::ExitCode;
use std::time::Duration;

use std::path::Path;

use charm_backup::charm::schedule::{DEFAULT_LOCK_WAIT, run_scheduled};
use charm_backup::charm::wal;

const USAGE: &str = "\
usage: dispatch scheduled-backup [--wait SECONDS] SETTINGS
       dispatch wal-push SETTINGS PATH NAME
       dispatch wal-fetch [--identity FILE] SETTINGS NAME PATH

Takes the create-backup the charm's backup-schedule asks for, with the settings the last hook
saved in SETTINGS (the backup timer's service runs exactly this). Waits up to --wait seconds
(default 1800) for an operation that holds the unit, then skips. Logs to stdout; exits 1 when
the backup failed.

wal-push is PostgreSQL's archive_command (postgresql-wal-archive sets it): it stores the WAL
file at PATH as NAME in the backup store, compressed (and encrypted to encryption-recipients),
and exits 0 once it is stored. wal-fetch is the restore_command of a point-in-time restore: it
writes NAME to PATH and exits 0, exits 1 only when the store does not hold NAME, and 255 when
the store cannot be read after three tries (PostgreSQL then stops recovery rather than end it
early). --identity names a file holding the age identity of encrypted WAL.

Without arguments, runs the Juju action or hook that JUJU_DISPATCH_PATH names.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => charm_backup::charm::charm().main(),
        Some("scheduled-backup") => scheduled(&args[1..]),
        Some("wal-push") => match &args[1..] {
            [settings, path, name] => wal::run_push(Path::new(settings), Path::new(path), name),
            _ => usage_error("wal-push takes SETTINGS PATH NAME"),
        },
        Some("wal-fetch") => match &args[1..] {
            [flag, id, settings, name, path] if flag == "--identity" => wal::run_fetch(
                Path::new(settings),
                Some(Path::new(id)),
                name,
                Path::new(path),
            ),
            [settings, name, path] => {
                wal::run_fetch(Path::new(settings), None, name, Path::new(path))
            }
            _ => usage_error("wal-fetch takes [--identity FILE] SETTINGS NAME PATH"),
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn scheduled(args: &[String]) -> ExitCode {
    let mut wait = DEFAULT_LOCK_WAIT;
    let mut settings = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--wait" => match it.next().and_then(|s| s.parse().ok()) {
                Some(s) => wait = Duration::from_secs(s),
                None => {
                    eprintln!("--wait takes a number of seconds\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            s if settings.is_none() => settings = Some(s.to_string()),
            s => {
                eprintln!("unexpected argument {s:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match settings {
        Some(s) => run_scheduled(std::path::Path::new(&s), wait),
        None => {
            eprintln!("the settings file is missing\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn usage_error(what: &str) -> ExitCode {
    eprintln!("{what}\n\n{USAGE}");
    ExitCode::from(2)
}
