//! The hook-tool client: one typed method per Juju hook tool.
//!
//! Every call builds the argument list Juju expects (`--format=json` where the tool has it, `--`
//! before free text) and hands it to a [`ToolRunner`]: [`ProcessRunner`] runs the real tool from
//! `PATH` (Juju puts its tools directory first); the `testing` module runs an in-process fake
//! that follows Juju's behaviour, so the same argument building is exercised in unit tests.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::juju::replay::{REPLAYABLE, RecordedCall};

mod ports;
mod settings;

pub use ports::{PortRange, Protocol};
pub use settings::{MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES};

/// Linux `MAX_ARG_STRLEN` (32 pages) less the terminating NUL: the longest single argument the
/// kernel passes to a program.
pub const MAX_ARG_BYTES: usize = 32 * 4096 - 1;

/// Total argument bytes put into one `action-set` call before a new call is started. Results
/// merge across calls, so batching keeps far below `ARG_MAX` whatever the environment size.
const ACTION_SET_BATCH_BYTES: usize = 96 * 1024;

/// Keys Juju fills itself after the action exits; `action-set` refuses them in any segment.
pub const RESERVED_RESULT_KEYS: [&str; 4] =
    ["stdout", "stdout-encoding", "stderr", "stderr-encoding"];

/// What a hook tool printed and how it exited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolOutput {
    /// The exit status (0 success, 1 run error, 2 usage error, as Juju's tools do).
    pub status: i32,
    /// Standard output, byte for byte.
    pub stdout: Vec<u8>,
    /// Standard error, byte for byte.
    pub stderr: Vec<u8>,
}

/// Runs one hook tool with arguments and returns what it printed.
///
/// Contract: `invoke` returns `Err` only when the tool could not be run at all (not installed,
/// not executable); a tool that ran and failed returns `Ok` with a non-zero `status`.
pub trait ToolRunner {
    /// Runs `tool` with `args`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when the tool does not exist, or another kind when it cannot start.
    fn invoke(&self, tool: &str, args: &[String]) -> Result<ToolOutput>;
}

/// Runs the real hook tools as child processes found on `PATH`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessRunner;

impl ToolRunner for ProcessRunner {
    fn invoke(&self, tool: &str, args: &[String]) -> Result<ToolOutput> {
        let out = Command::new(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "hook tool {tool} not found on PATH: run this under a Juju unit agent, \
                         or locally with `charm-backup run`"
                    ),
                ),
                _ => Error::new(ErrorKind::Other, format!("cannot run hook tool {tool}"))
                    .with_source(e),
            })?;
        Ok(ToolOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// A unit's workload status, as `status-set` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Ready and doing its job.
    Active(String),
    /// Needs an operator to do something; the message says what.
    Blocked(String),
    /// Waiting for something outside the unit.
    Waiting(String),
    /// Busy with work of its own.
    Maintenance(String),
}

impl Status {
    /// The status name Juju uses.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Active(_) => "active",
            Status::Blocked(_) => "blocked",
            Status::Waiting(_) => "waiting",
            Status::Maintenance(_) => "maintenance",
        }
    }

    /// The message shown beside the status.
    pub fn message(&self) -> &str {
        match self {
            Status::Active(m)
            | Status::Blocked(m)
            | Status::Waiting(m)
            | Status::Maintenance(m) => m,
        }
    }
}

/// Levels `juju-log` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// DEBUG.
    Debug,
    /// INFO.
    Info,
    /// WARNING.
    Warning,
    /// ERROR.
    Error,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }
}

/// The typed hook-tool client.
pub struct HookTools {
    runner: Box<dyn ToolRunner>,
    /// The answers of the read-only tools, while a recording runs.
    recorded: std::cell::RefCell<Option<Vec<RecordedCall>>>,
}

impl std::fmt::Debug for HookTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookTools")
    }
}

impl Default for HookTools {
    fn default() -> Self {
        HookTools::new(Box::new(ProcessRunner))
    }
}

impl HookTools {
    /// A client that runs tools through `runner`.
    pub fn new(runner: Box<dyn ToolRunner>) -> Self {
        HookTools {
            runner,
            recorded: std::cell::RefCell::new(None),
        }
    }

    /// Starts keeping the answers of the read-only tools ([`REPLAYABLE`]), for
    /// [`HookTools::take_recording`].
    pub fn start_recording(&self) {
        *self.recorded.borrow_mut() = Some(Vec::new());
    }

    /// Stops recording and returns what was answered since [`HookTools::start_recording`].
    pub fn take_recording(&self) -> Vec<RecordedCall> {
        self.recorded.borrow_mut().take().unwrap_or_default()
    }

    /// Runs a tool, turning a non-zero exit into an error that carries the tool name, exit
    /// status and stderr (never the arguments, which may hold result values).
    fn call(&self, tool: &str, args: Vec<String>) -> Result<Vec<u8>> {
        for a in &args {
            if a.len() > MAX_ARG_BYTES {
                return Err(Error::invalid(format!(
                    "an argument to {tool} is {} bytes, over the {MAX_ARG_BYTES}-byte limit the OS \
                     puts on one argument: keep results and messages small (an id, a size, a path)",
                    a.len()
                )));
            }
        }
        let out = self.runner.invoke(tool, &args)?;
        if let Some(rec) = self.recorded.borrow_mut().as_mut()
            && REPLAYABLE.contains(&tool)
        {
            rec.push(RecordedCall {
                tool: tool.to_string(),
                args: args.clone(),
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        if out.status != 0 {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim();
            let stderr = stderr.strip_prefix("ERROR ").unwrap_or(stderr);
            let kind = if stderr.contains("not found") {
                ErrorKind::NotFound
            } else if out.status == 2 {
                ErrorKind::InvalidInput
            } else {
                ErrorKind::Other
            };
            return Err(Error::new(
                kind,
                format!("{tool} failed (exit status {}): {stderr}", out.status),
            ));
        }
        Ok(out.stdout)
    }

    fn call_json(&self, tool: &str, args: Vec<String>) -> Result<Value> {
        let out = self.call(tool, args)?;
        if out.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out).map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("{tool} printed output that is not JSON"),
            )
            .with_source(e)
        })
    }

    /// `action-get --format=json`: all the action's parameters, defaults included.
    ///
    /// # Errors
    /// When the tool fails, e.g. `not running an action` outside an action.
    pub fn action_get(&self) -> Result<Value> {
        self.call_json("action-get", vec!["--format=json".into()])
    }

    /// `action-set key=value ...` for already flattened results. Every key is checked with
    /// [`check_result_key`] first, so a bad key fails before anything is set; long result sets are
    /// sent in several calls, which Juju merges.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a bad or reserved key or an argument over
    /// [`MAX_ARG_BYTES`]; otherwise when the tool fails.
    pub fn action_set(&self, results: &[(String, String)]) -> Result<()> {
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for (k, v) in results {
            check_result_key(k)?;
            let arg = format!("{k}={v}");
            if arg.len() > MAX_ARG_BYTES {
                return Err(Error::invalid(format!(
                    "result {k:?} is {} bytes, over the {MAX_ARG_BYTES}-byte limit the OS puts on \
                     one argument: keep results small (an id, a size, a path)",
                    arg.len()
                )));
            }
            if batch_bytes + arg.len() > ACTION_SET_BATCH_BYTES && !batch.is_empty() {
                self.call("action-set", std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
            batch_bytes += arg.len() + 1;
            batch.push(arg);
        }
        if !batch.is_empty() {
            self.call("action-set", batch)?;
        }
        Ok(())
    }

    /// `action-fail -- <message>`: marks the action failed; the process goes on.
    ///
    /// # Errors
    /// When the tool fails.
    pub fn action_fail(&self, message: &str) -> Result<()> {
        self.call("action-fail", vec!["--".into(), clip(message)])
            .map(drop)
    }

    /// `action-log -- <message>`: a progress line the operator sees while the action runs.
    ///
    /// # Errors
    /// When the tool fails.
    pub fn action_log(&self, message: &str) -> Result<()> {
        self.call("action-log", vec!["--".into(), clip(message)])
            .map(drop)
    }

    /// `juju-log --log-level <LEVEL> -- <message>`: a line in `juju debug-log`.
    ///
    /// # Errors
    /// When the tool fails.
    pub fn juju_log(&self, level: LogLevel, message: &str) -> Result<()> {
        let args = vec![
            "--log-level".into(),
            level.as_str().into(),
            "--".into(),
            clip(message),
        ];
        self.call("juju-log", args).map(drop)
    }

    /// `status-set [--application] <status> -- <message>`.
    ///
    /// # Errors
    /// When the tool fails (for `application`, when this unit is not the leader).
    pub fn status_set(&self, status: &Status, application: bool) -> Result<()> {
        let mut args = Vec::new();
        if application {
            args.push("--application".into());
        }
        args.extend([status.name().into(), "--".into(), clip(status.message())]);
        self.call("status-set", args).map(drop)
    }

    /// `config-get --format=json`: every option that is set or has a default.
    ///
    /// # Errors
    /// When the tool fails.
    pub fn config_get(&self) -> Result<Value> {
        self.call_json("config-get", vec!["--format=json".into()])
    }

    /// `is-leader --format=json`.
    ///
    /// # Errors
    /// When the tool fails or prints something other than `true`/`false`.
    pub fn is_leader(&self) -> Result<bool> {
        match self.call_json("is-leader", vec!["--format=json".into()])? {
            Value::Bool(b) => Ok(b),
            other => Err(Error::new(
                ErrorKind::Other,
                format!("is-leader printed {other}, not true or false"),
            )),
        }
    }

    /// `relation-ids --format=json <endpoint>`: ids such as `s3-parameters:7`.
    ///
    /// # Errors
    /// When the tool fails.
    pub fn relation_ids(&self, endpoint: &str) -> Result<Vec<String>> {
        let v = self.call_json(
            "relation-ids",
            vec!["--format=json".into(), endpoint.into()],
        )?;
        Ok(strings(v))
    }

    /// `relation-list --format=json -r <id>`: the remote units in a relation.
    ///
    /// # Errors
    /// When the tool fails.
    pub fn relation_list(&self, relation_id: &str) -> Result<Vec<String>> {
        let args = vec!["--format=json".into(), "-r".into(), relation_id.into()];
        Ok(strings(self.call_json("relation-list", args)?))
    }

    /// `relation-list --format=json -r <id> --app`: the remote application's name.
    ///
    /// # Errors
    /// When the tool fails or prints no name.
    pub fn relation_remote_app(&self, relation_id: &str) -> Result<String> {
        let args = vec![
            "--format=json".into(),
            "-r".into(),
            relation_id.into(),
            "--app".into(),
        ];
        match self.call_json("relation-list", args)? {
            Value::String(s) if !s.is_empty() => Ok(s),
            _ => Err(Error::new(
                ErrorKind::NotFound,
                format!("relation {relation_id} has no remote application yet"),
            )),
        }
    }

    /// `relation-get --format=json -r <id> [--app] - <member>`: all settings a unit or (with
    /// `app`) an application published in the relation.
    ///
    /// # Errors
    /// When the tool fails, e.g. for an unknown relation.
    pub fn relation_get(
        &self,
        relation_id: &str,
        member: &str,
        app: bool,
    ) -> Result<BTreeMap<String, String>> {
        let mut args = vec!["--format=json".into(), "-r".into(), relation_id.into()];
        if app {
            args.push("--app".into());
        }
        args.extend(["-".into(), member.into()]);
        let v = self.call_json("relation-get", args)?;
        let mut out = BTreeMap::new();
        if let Value::Object(m) = v {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(k, v);
            }
        }
        Ok(out)
    }

    /// `secret-get <uri> <key>`: one value of a secret the unit was granted.
    ///
    /// # Errors
    /// When the secret does not exist, is not granted, or lacks the key.
    pub fn secret_get(&self, uri: &str, key: &str) -> Result<String> {
        let v = self.call_json(
            "secret-get",
            vec!["--format=json".into(), uri.into(), key.into()],
        )?;
        match v {
            Value::String(s) => Ok(s),
            Value::Null => Err(Error::new(
                ErrorKind::NotFound,
                format!("secret {uri} has no key {key}"),
            )),
            other => Ok(other.to_string()),
        }
    }

    /// `resource-get <name>`: the local path of an attached resource.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when no resource is attached; otherwise when the tool fails.
    pub fn resource_get(&self, name: &str) -> Result<PathBuf> {
        let out = self.call("resource-get", vec![name.into()])?;
        let path = String::from_utf8_lossy(&out).trim().to_string();
        if path.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("resource-get printed no path for resource {name}"),
            ));
        }
        Ok(PathBuf::from(path))
    }
}

fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Shortens free text to what the OS passes as one argument, at a character boundary.
fn clip(message: &str) -> String {
    if message.len() <= MAX_ARG_BYTES {
        return message.to_string();
    }
    const MARK: &str = " … (truncated)";
    let mut end = MAX_ARG_BYTES - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &message[..end])
}

/// Whether one dot-separated segment of a result key passes Juju's rule
/// `^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`.
fn segment_ok(seg: &str) -> bool {
    let b = seg.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => alnum(f) && alnum(l) && b.iter().all(|c| alnum(c) || *c == b'-'),
        _ => false,
    }
}

/// Checks a result key the way `action-set` does: each dot-separated segment must start and end
/// with a lowercase letter or digit and hold only those and hyphens, and no segment may be one of
/// [`RESERVED_RESULT_KEYS`].
///
/// # Errors
/// [`ErrorKind::InvalidInput`] with Juju's own message.
pub fn check_result_key(key: &str) -> Result<()> {
    for seg in key.split('.') {
        if !segment_ok(seg) {
            return Err(Error::invalid(format!(
                "key {key:?} must start and end with lowercase alphanumeric, and contain only \
                 lowercase alphanumeric and hyphens"
            )));
        }
        if RESERVED_RESULT_KEYS.contains(&seg) {
            return Err(Error::invalid(format!(
                "cannot set reserved action key {seg:?}"
            )));
        }
    }
    Ok(())
}

/// Whether `name` is a valid action, parameter or result-key segment name in Juju's rule.
pub fn is_valid_name(name: &str) -> bool {
    segment_ok(name)
}

/// Flattens results to the dotted `key=value` pairs `action-set` takes: nested objects become
/// dotted keys, list items are numbered from 0, `null` is left out, and scalars become strings.
/// Every key is checked with [`check_result_key`].
///
/// # Errors
/// [`ErrorKind::InvalidInput`] for a bad or reserved key, a top-level value that is not an
/// object, or two entries that flatten to the same key (such as `{"a": {"b": 1}, "a.b": 2}`).
pub fn flatten_results(results: &Value) -> Result<Vec<(String, String)>> {
    let Value::Object(map) = results else {
        if results.is_null() {
            return Ok(Vec::new());
        }
        return Err(Error::invalid(
            "action results must be a map of keys to values",
        ));
    };
    let mut out = Vec::new();
    for (k, v) in map {
        flatten_into(k.clone(), v, &mut out);
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &out {
        check_result_key(k)?;
        if !seen.insert(k.as_str()) {
            return Err(Error::invalid(format!(
                "duplicate key {k:?} in action results: two entries flatten to the same dotted key"
            )));
        }
    }
    Ok(out)
}

fn flatten_into(prefix: String, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                flatten_into(format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(format!("{prefix}.{i}"), v, out);
            }
        }
        Value::String(s) => out.push((prefix, s.clone())),
        other => out.push((prefix, other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_char_boundaries() {
        let s = "é".repeat(MAX_ARG_BYTES);
        let c = clip(&s);
        assert!(c.len() <= MAX_ARG_BYTES);
        assert!(c.ends_with("(truncated)"));
    }
}
