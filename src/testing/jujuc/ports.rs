//! `open-port`, `close-port` and `opened-ports`, following `ports.go` and `opened-ports.go` in
//! `internal/worker/uniter/runner/jujuc/` and the hook context's port recorder
//! (`runner/context/ports.go`: conflicts with what this unit opened or asked to open earlier
//! are errors, repeating a request is a no-op, requests apply when the hook succeeds).
//!
//! Only this unit's ranges are modelled: the conflicts Juju reports with other units on the
//! same machine cannot happen here, and unknown `--endpoints` names (which Juju refuses when it
//! commits the hook's changes) are not checked.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::parse::{Answer, FORMAT, Fail, Flag, OLD_FORMAT, OUTPUT, Out, Reply, go_quote, parse};
use super::parse::{run_err, usage};
use super::{FakeAgent, Shared, deprecated_format};
use crate::juju::PortRange;

/// Why a request matches an existing range (`checkForConflict`).
enum Conflict {
    /// The same range for the same endpoint: the request is a no-op.
    AlreadyExists,
    /// An overlapping range: the message.
    With(String),
}

/// Juju's `checkForConflict` for ranges of this unit.
fn check<'a>(
    unit: &str,
    endpoint: &str,
    range: &PortRange,
    existing: impl IntoIterator<Item = (&'a str, &'a PortRange)>,
    pending: bool,
) -> Option<Conflict> {
    for (ep, r) in existing {
        if !range.conflicts_with(r) {
            continue;
        }
        if range == r {
            if ep != endpoint {
                continue;
            }
            return Some(Conflict::AlreadyExists);
        }
        let earlier = if pending { " requested earlier" } else { "" };
        return Some(Conflict::With(format!(
            "port range conflicts with {r} (unit {}){earlier}",
            go_quote(unit)
        )));
    }
    None
}

/// Every (endpoint, range) of a grouped set.
fn flat(ports: &BTreeMap<String, BTreeSet<PortRange>>) -> impl Iterator<Item = (&str, &PortRange)> {
    ports
        .iter()
        .flat_map(|(ep, set)| set.iter().map(move |r| (ep.as_str(), r)))
}

/// Removes the first `(endpoint, range)` request equal to the given one.
fn cancel(requests: &mut Vec<(String, PortRange)>, endpoint: &str, range: &PortRange) {
    if let Some(i) = requests
        .iter()
        .position(|(ep, r)| ep == endpoint && r == range)
    {
        requests.remove(i);
    }
}

/// The opened ranges once `open` and then `close` requests are applied
/// (`MergePendingOpenPortRanges`, `MergePendingClosePortRanges`).
pub(super) fn merged(
    opened: &BTreeMap<String, BTreeSet<PortRange>>,
    open: &[(String, PortRange)],
    close: &[(String, PortRange)],
) -> BTreeMap<String, BTreeSet<PortRange>> {
    let mut out = opened.clone();
    for (ep, r) in open {
        out.entry(ep.clone()).or_default().insert(*r);
    }
    for (ep, r) in close {
        if let Some(set) = out.get_mut(ep) {
            set.remove(r);
        }
    }
    out.retain(|_, set| !set.is_empty());
    out
}

impl FakeAgent {
    /// `open-port`/`close-port [--endpoints <a,b>] <port>[/<protocol>] | <from>-<to>[/<protocol>]
    /// | icmp` (`ports.go`): the range is lowercased and parsed as `network.ParsePortRange`
    /// does; each endpoint (or every endpoint) gets its own request.
    pub(super) fn port_change(&self, args: &[String], open: bool) -> Answer {
        const ENDPOINTS: Flag = Flag {
            names: &["endpoints"],
            takes_value: true,
        };
        let tool = if open { "open-port" } else { "close-port" };
        let p = parse(args, &[&OLD_FORMAT, &ENDPOINTS])?;
        let Some(text) = p.args.first() else {
            return usage("no port or range specified");
        };
        let range: PortRange = match text.parse() {
            Ok(r) => r,
            Err(e) => return usage(e.to_string()),
        };
        p.at_most(1)?;
        let stderr = if p.value("old-format").is_some() {
            deprecated_format(tool)
        } else {
            String::new()
        };
        let endpoints: Vec<String> = match p.value("endpoints") {
            None => vec![String::new()],
            Some(list) => list.split(',').map(|e| e.trim().to_string()).collect(),
        };
        let mut guard = self.lock();
        for ep in &endpoints {
            if open {
                open_range(&mut guard, ep, &range)?;
            } else {
                close_range(&mut guard, ep, &range)?;
            }
        }
        Ok(Reply {
            stdout: String::new(),
            stderr,
        })
    }

    /// `opened-ports [--endpoints]` (`opened-ports.go`): this unit's ranges, requests made in
    /// this hook included, sorted; with `--endpoints` each followed by its endpoints (`*` for
    /// all).
    pub(super) fn opened_ports(&self, args: &[String]) -> Out {
        const ENDPOINTS: Flag = Flag {
            names: &["endpoints"],
            takes_value: false,
        };
        let p = parse(args, &[&FORMAT, &OUTPUT, &ENDPOINTS])?;
        p.at_most(0)?;
        let guard = self.lock();
        let ports = merged(
            &guard.state.opened_ports,
            &guard.pending.open,
            &guard.pending.close,
        );
        drop(guard);
        let mut by_range: BTreeMap<PortRange, BTreeSet<&str>> = BTreeMap::new();
        for (ep, r) in flat(&ports) {
            by_range.entry(*r).or_default().insert(ep);
        }
        let lines: Vec<Value> = by_range
            .into_iter()
            .map(|(r, eps)| {
                if !p.flag("endpoints") {
                    return Value::String(r.to_string());
                }
                let shown = if eps.contains("") {
                    "*".to_string()
                } else {
                    eps.into_iter().collect::<Vec<_>>().join(", ")
                };
                Value::String(format!("{r} ({shown})"))
            })
            .collect();
        p.emit(&Value::Array(lines))
    }
}

/// `portRangeChangeRecorder.OpenPortRange`.
fn open_range(sh: &mut Shared, endpoint: &str, range: &PortRange) -> Result<(), Fail> {
    let Shared { state, pending } = sh;
    cancel(&mut pending.close, endpoint, range);
    let err = |m: String| {
        run_err(format!(
            "cannot open {range} (unit {}): {m}",
            go_quote(&state.unit)
        ))
    };
    let earlier = pending.open.iter().map(|(ep, r)| (ep.as_str(), r));
    match check(&state.unit, endpoint, range, earlier, true) {
        Some(Conflict::AlreadyExists) => return Ok(()),
        Some(Conflict::With(m)) => return err(m),
        None => {}
    }
    match check(
        &state.unit,
        endpoint,
        range,
        flat(&state.opened_ports),
        false,
    ) {
        Some(Conflict::AlreadyExists) => return Ok(()),
        Some(Conflict::With(m)) => return err(m),
        None => {}
    }
    pending.open.push((endpoint.to_string(), *range));
    Ok(())
}

/// `portRangeChangeRecorder.ClosePortRange`.
fn close_range(sh: &mut Shared, endpoint: &str, range: &PortRange) -> Result<(), Fail> {
    let Shared { state, pending } = sh;
    cancel(&mut pending.open, endpoint, range);
    let err = |m: String| {
        run_err(format!(
            "cannot close {range} (unit {}): {m}",
            go_quote(&state.unit)
        ))
    };
    let earlier = pending.close.iter().map(|(ep, r)| (ep.as_str(), r));
    match check(&state.unit, endpoint, range, earlier, true) {
        Some(Conflict::AlreadyExists) => return Ok(()),
        Some(Conflict::With(m)) => return err(m),
        None => {}
    }
    if let Some(Conflict::With(m)) = check(
        &state.unit,
        endpoint,
        range,
        flat(&state.opened_ports),
        false,
    ) {
        return err(m);
    }
    if state.opened_ports.is_empty() {
        // Nothing is open: closing is a no-op.
        return Ok(());
    }
    pending.close.push((endpoint.to_string(), *range));
    Ok(())
}
