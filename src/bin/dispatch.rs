//! The charm's one executable: Juju runs it as `dispatch` (or through the `actions/<name>` and
//! `hooks/<name>` links), and it runs the action or hook Juju asked for. systemd runs it as
//! `dispatch scheduled-backup SETTINGS` for scheduled backups.

use std::process::ExitCode;
use std::time::Duration;

use charm_backup::charm::schedule::{DEFAULT_LOCK_WAIT, run_scheduled};

const USAGE: &str = "\
usage: dispatch scheduled-backup [--wait SECONDS] SETTINGS

Takes the create-backup the charm's backup-schedule asks for, with the settings the last hook
saved in SETTINGS (the backup timer's service runs exactly this). Waits up to --wait seconds
(default 1800) for an operation that holds the unit, then skips. Logs to stdout; exits 1 when
the backup failed.

Without arguments, runs the Juju action or hook that JUJU_DISPATCH_PATH names.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => charm_backup::charm::charm().main(),
        Some("scheduled-backup") => scheduled(&args[1..]),
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
