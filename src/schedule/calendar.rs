//! systemd calendar expressions (`daily`, `*-*-* 02:30:00`, `Mon..Fri 23:00`), checked and
//! expanded by systemd's own parser (`systemd-analyze calendar`), so what is accepted here is
//! exactly what the timer will accept, in the machine's time zone.

use std::process::Command;

use jiff::{SignedDuration, Timestamp};

use crate::error::{Error, ErrorKind, Result};

/// How many elapses are computed: enough to see a weekly pattern's longest gap.
const ITERATIONS: usize = 8;

/// A calendar expression systemd accepts, with its next elapses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// The expression as given.
    pub expression: String,
    /// systemd's normalized form (`*-*-* 02:30:00`).
    pub normalized: String,
    /// The next elapses from now, soonest first.
    pub next: Vec<Timestamp>,
}

impl Calendar {
    /// Checks `expression` with `systemd-analyze calendar` and computes its next elapses.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] saying why when systemd refuses the expression or it never
    /// elapses again; [`ErrorKind::NotFound`] when `systemd-analyze` is not installed.
    pub fn parse(expression: &str) -> Result<Self> {
        let expression = expression.trim();
        if expression.is_empty() {
            return Err(Error::invalid("the calendar expression is empty"));
        }
        if expression.chars().any(|c| c.is_control() || c == '%') {
            return Err(Error::invalid(format!(
                "{expression:?} is not a calendar expression: it holds a control character or %"
            )));
        }
        let out = Command::new("systemd-analyze")
            .args(["calendar", &format!("--iterations={ITERATIONS}"), "--"])
            .arg(expression)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::new(
                    ErrorKind::NotFound,
                    "systemd-analyze is not installed; it is needed to check backup-schedule",
                ),
                _ => Error::new(ErrorKind::Other, "cannot run systemd-analyze").with_source(e),
            })?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.trim();
            let why = why
                .rsplit_once(": ")
                .map_or(why, |(_, w)| w)
                .trim_end_matches('.');
            return Err(Error::invalid(format!(
                "{expression:?} is not a systemd calendar expression ({why}); write it as \
                 `systemd-analyze calendar` reads it, e.g. \"daily\", \"*-*-* 02:30:00\" or \
                 \"Mon..Fri 23:00\""
            )));
        }
        let mut c = Self::from_output(&String::from_utf8_lossy(&out.stdout))?;
        c.expression = expression.to_string();
        if c.next.is_empty() {
            return Err(Error::invalid(format!(
                "{expression:?} never elapses again: give a recurring expression such as \"daily\""
            )));
        }
        Ok(c)
    }

    /// Reads what `systemd-analyze calendar` printed for one expression.
    fn from_output(text: &str) -> Result<Self> {
        let mut c = Calendar {
            expression: String::new(),
            normalized: String::new(),
            next: Vec::new(),
        };
        // A time in the local zone is followed by its "(in UTC)" line unless the zone is UTC.
        let mut pending_local = false;
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(": ") else {
                continue;
            };
            let value = value.trim();
            match key {
                "Normalized form" => c.normalized = value.to_string(),
                k if k == "Next elapse" || k.starts_with("Iter. #") => {
                    if value == "never" {
                        break;
                    }
                    match utc_time(value) {
                        Some(t) => {
                            c.next.push(t);
                            pending_local = false;
                        }
                        None => pending_local = true,
                    }
                }
                "(in UTC)" if pending_local => {
                    let t = utc_time(value).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Other,
                            format!("systemd-analyze printed a time this cannot read: {value:?}"),
                        )
                    })?;
                    c.next.push(t);
                    pending_local = false;
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// The next elapse after now.
    pub fn next_elapse(&self) -> Option<Timestamp> {
        self.next.first().copied()
    }

    /// The longest time between two consecutive elapses (a weekday schedule's weekend), or
    /// `None` with fewer than two.
    pub fn interval(&self) -> Option<SignedDuration> {
        self.next
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
    }
}

/// `Sat 2026-12-05 23:00:00 UTC` as a timestamp; `None` for a time in another zone.
fn utc_time(value: &str) -> Option<Timestamp> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, date, time, "UTC"] = parts.as_slice() else {
        return None;
    };
    format!("{date}T{time}Z").parse().ok()
}

/// A duration for people: `3d 4h`, `2h 5m`, `40s`.
pub fn human_duration(d: SignedDuration) -> String {
    let s = d.as_secs().max(0);
    let (days, hours, mins) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Parses a duration as operators write one: a number and a unit (`s`, `m`, `h`, `d`, `w`),
/// several allowed (`1d 12h`).
///
/// # Errors
/// [`ErrorKind::InvalidInput`] naming what could not be read.
pub fn parse_duration(text: &str) -> Result<SignedDuration> {
    let bad = || {
        Error::invalid(format!(
            "{text:?} is not a duration: write a number and a unit (s, m, h, d or w), e.g. \"36h\" \
             or \"2d\""
        ))
    };
    let mut total: i64 = 0;
    let mut any = false;
    for part in text.split_whitespace() {
        let split = part.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = part.split_at(split);
        let n: i64 = n.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        any = true;
    }
    if !any {
        return Err(bad());
    }
    Ok(SignedDuration::from_secs(total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn local_times_are_read_from_their_utc_lines() {
        let text = "  Original form: daily\nNormalized form: *-*-* 00:00:00\n    Next elapse: Sun 2026-12-06 00:00:00 CET\n       (in UTC): Sat 2026-12-05 23:00:00 UTC\n       From now: 9h left\n       Iter. #2: Mon 2026-12-07 00:00:00 CET\n       (in UTC): Sun 2026-12-06 23:00:00 UTC\n";
        let c = Calendar::from_output(text).unwrap();
        assert_eq!(c.normalized, "*-*-* 00:00:00");
        assert_eq!(
            c.next,
            vec![
                "2026-12-05T23:00:00Z".parse::<Timestamp>().unwrap(),
                "2026-12-06T23:00:00Z".parse().unwrap()
            ]
        );
        assert_eq!(c.interval(), Some(SignedDuration::from_hours(24)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("36h").unwrap().as_secs(), 36 * 3600);
        assert_eq!(parse_duration("1d 12h").unwrap().as_secs(), 36 * 3600);
        assert_eq!(parse_duration("2w").unwrap().as_secs(), 14 * 86_400);
        for bad in ["", "h", "12", "3 days", "-1h", "1y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            human_duration(SignedDuration::from_secs(3 * 86_400 + 7200)),
            "3d 2h"
        );
        assert_eq!(human_duration(SignedDuration::from_secs(125 * 60)), "2h 5m");
        assert_eq!(human_duration(SignedDuration::from_secs(40)), "40s");
    }
}
