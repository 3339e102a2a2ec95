//! The systemd timer and service that run scheduled backups: written, enabled, updated and
//! removed through `systemctl`, named after the Juju unit so two applications on one machine
//! never share one.

use std::path::PathBuf;
use std::process::Command;

use crate::error::{Error, IoContext, Result};

/// Where the machine's systemd keeps unit files, and the `systemctl` that manages them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Systemd {
    /// The directory unit files are written to (`/etc/systemd/system`).
    pub unit_dir: PathBuf,
    /// The `systemctl` program.
    pub systemctl: PathBuf,
}

impl Default for Systemd {
    fn default() -> Self {
        Systemd {
            unit_dir: PathBuf::from("/etc/systemd/system"),
            systemctl: PathBuf::from("systemctl"),
        }
    }
}

/// A timer and the oneshot service it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerUnits {
    /// The units' name without suffix (`juju-backup-postgresql-0`).
    pub name: String,
    /// What they do, for `systemctl status` (`create-backup of Juju unit postgresql/0`).
    pub description: String,
    /// The service's command line, program first.
    pub command: Vec<String>,
    /// The timer's `OnCalendar=` expression.
    pub calendar: String,
    /// Seconds of random delay added to each elapse (0: none); fixed per unit, so the units of
    /// one application are spread rather than reshuffled every night.
    pub jitter_secs: u64,
}

impl TimerUnits {
    /// The units' name for the Juju unit `unit` (`app/N`): `juju-backup-app-N`.
    pub fn name_for(unit: &str) -> String {
        let safe: String = unit
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("juju-backup-{safe}")
    }

    /// `<name>.service`.
    pub fn service_name(&self) -> String {
        format!("{}.service", self.name)
    }

    /// `<name>.timer`.
    pub fn timer_name(&self) -> String {
        format!("{}.timer", self.name)
    }

    /// The service unit file.
    pub fn service_text(&self) -> String {
        let exec: Vec<String> = self.command.iter().map(|a| exec_quote(a)).collect();
        format!(
            "# Written by charm-backup; its hooks rewrite this file, so edits here do not last.\n\
             [Unit]\n\
             Description={desc}\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart={exec}\n\
             UMask=0077\n\
             Nice=10\n\
             IOSchedulingClass=best-effort\n\
             IOSchedulingPriority=7\n\
             SyslogIdentifier={name}\n",
            desc = unit_escape(&self.description),
            exec = exec.join(" "),
            name = self.name,
        )
    }

    /// The timer unit file.
    pub fn timer_text(&self) -> String {
        let jitter = if self.jitter_secs > 0 {
            format!(
                "RandomizedDelaySec={}\nFixedRandomDelay=true\n",
                self.jitter_secs
            )
        } else {
            String::new()
        };
        format!(
            "# Written by charm-backup; its hooks rewrite this file, so edits here do not last.\n\
             [Unit]\n\
             Description=Schedule of the {desc}\n\
             \n\
             [Timer]\n\
             OnCalendar={calendar}\n\
             {jitter}\
             Persistent=true\n\
             Unit={service}\n\
             \n\
             [Install]\n\
             WantedBy=timers.target\n",
            desc = unit_escape(&self.description),
            calendar = self.calendar,
            service = self.service_name(),
        )
    }
}

/// `%` and `$` as a unit file needs them written (`%%`, `$$`).
fn unit_escape(s: &str) -> String {
    s.replace('%', "%%").replace('$', "$$")
}

/// One `ExecStart=` word: as is when plain, else in double quotes with `\` and `"` escaped.
fn exec_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@+,".contains(c));
    let arg = unit_escape(arg);
    if plain {
        arg
    } else {
        format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// What [`Systemd::install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The files were written (new or changed) and the timer (re)enabled.
    Written,
    /// The files were as they should be; the timer was enabled again.
    Enabled,
    /// Nothing needed doing.
    Unchanged,
}

impl Systemd {
    fn path(&self, file: &str) -> PathBuf {
        self.unit_dir.join(file)
    }

    fn systemctl(&self, args: &[&str]) -> Result<()> {
        crate::source::process::run(Command::new(&self.systemctl).args(args), &args.join(" "))
            .map(drop)
    }

    /// Whether `systemctl is-enabled <unit>` says it is.
    fn is_enabled(&self, unit: &str) -> bool {
        Command::new(&self.systemctl)
            .args(["is-enabled", "--quiet", unit])
            .stdin(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Writes the timer and service (when missing or different), reloads systemd and enables
    /// and starts the timer.
    ///
    /// # Errors
    /// When a file cannot be written or `systemctl` fails.
    pub fn install(&self, units: &TimerUnits) -> Result<Installed> {
        let files = [
            (units.service_name(), units.service_text()),
            (units.timer_name(), units.timer_text()),
        ];
        let mut changed = false;
        for (file, text) in &files {
            let path = self.path(file);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                std::fs::create_dir_all(&self.unit_dir)
                    .at("cannot create the directory", &self.unit_dir)?;
                super::write_atomic(&path, text.as_bytes(), 0o644)?;
                changed = true;
            }
        }
        let timer = units.timer_name();
        if changed {
            let loaded = self
                .systemctl(&["daemon-reload"])
                .and_then(|()| self.systemctl(&["enable", "--now", &timer]))
                // A changed calendar takes effect on restart of an active timer.
                .and_then(|()| self.systemctl(&["restart", &timer]));
            if let Err(e) = loaded {
                // Written but not loaded: removed, so the next hook writes and loads them again
                // rather than taking them for done.
                for (file, _) in &files {
                    let _ = std::fs::remove_file(self.path(file));
                }
                return Err(e);
            }
            Ok(Installed::Written)
        } else if !self.is_enabled(&timer) {
            self.systemctl(&["enable", "--now", &timer])?;
            Ok(Installed::Enabled)
        } else {
            Ok(Installed::Unchanged)
        }
    }

    /// Whether the units `name` are installed.
    pub fn is_installed(&self, name: &str) -> bool {
        self.path(&format!("{name}.timer")).exists()
            || self.path(&format!("{name}.service")).exists()
    }

    /// Disables and stops the timer `name` and removes its files (a backup it started is left
    /// to finish). Returns whether there was anything to remove.
    ///
    /// # Errors
    /// When a file cannot be removed or `systemctl` fails.
    pub fn remove(&self, name: &str) -> Result<bool> {
        if !self.is_installed(name) {
            return Ok(false);
        }
        let timer = format!("{name}.timer");
        if self.path(&timer).exists() {
            self.systemctl(&["disable", "--now", &timer])?;
        }
        for file in [timer, format!("{name}.service")] {
            let path = self.path(&file);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("cannot remove", &path, e)),
            }
        }
        self.systemctl(&["daemon-reload"])?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        assert_eq!(
            TimerUnits::name_for("postgresql/0"),
            "juju-backup-postgresql-0"
        );
        assert_eq!(exec_quote("/var/lib/juju/x"), "/var/lib/juju/x");
        assert_eq!(exec_quote("a b"), "\"a b\"");
        assert_eq!(exec_quote("50%"), "\"50%%\"");
        assert_eq!(exec_quote("q\"\\"), "\"q\\\"\\\\\"");
    }
}
