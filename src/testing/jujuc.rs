//! An in-memory unit agent that answers hook-tool calls the way Juju's `jujuc` server does:
//! the same flags, output formats, merge rules, error messages and exit codes
//! (0 success, 1 run error, 2 usage error, `ERROR <msg>` on stderr).
//!
//! The test harness calls it in-process; the local agent serves it to real tool executables.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::error::Result;
use crate::juju::{ToolOutput, ToolRunner, check_result_key};

/// A relation as the fake agent holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeRelation {
    /// Numeric id (the `N` of `endpoint:N`).
    pub id: u32,
    /// This charm's endpoint name.
    pub endpoint: String,
    /// The remote application.
    pub app: String,
    /// The remote units.
    pub units: Vec<String>,
    /// The remote application's data bag.
    pub app_data: BTreeMap<String, String>,
    /// Each remote unit's data bag.
    pub unit_data: BTreeMap<String, BTreeMap<String, String>>,
}

impl FakeRelation {
    /// `endpoint:id`, as `relation-ids` prints it.
    pub fn key(&self) -> String {
        format!("{}:{}", self.endpoint, self.id)
    }
}

/// One timestamped `action-log` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When Juju received it (whole seconds, UTC).
    pub time: jiff::Timestamp,
    /// The message.
    pub message: String,
}

/// Everything the fake agent knows and records for one unit.
#[derive(Debug, Clone, Default)]
pub struct UnitState {
    /// `app/n`.
    pub unit: String,
    /// The running action's params (defaults included), or `None` when running a hook.
    pub params: Option<Value>,
    /// Charm config: options that are set or have a default.
    pub config: Map<String, Value>,
    /// Whether the unit is the leader.
    pub leader: bool,
    /// Relations.
    pub relations: Vec<FakeRelation>,
    /// Attached resources by name.
    pub resources: BTreeMap<String, PathBuf>,
    /// Secrets the unit may read, by URI (`secret:<id>`), each a set of key-value pairs.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Results set with `action-set`, merged as Juju merges them.
    pub results: Map<String, Value>,
    /// Whether `action-fail` was called.
    pub failed: bool,
    /// The `action-fail` message (last wins).
    pub fail_message: String,
    /// `action-log` lines.
    pub logs: Vec<LogLine>,
    /// `juju-log` lines as `LEVEL message`.
    pub juju_logs: Vec<String>,
    /// The unit's workload status and message.
    pub status: (String, String),
    /// The application's status and message (set by the leader).
    pub app_status: (String, String),
}

type LogSink = Box<dyn Fn(&LogLine) + Send + Sync>;

/// The fake unit agent: shared state plus an optional live sink for `action-log` lines.
#[derive(Clone)]
pub struct FakeAgent {
    state: Arc<Mutex<UnitState>>,
    on_log: Arc<Option<LogSink>>,
}

impl std::fmt::Debug for FakeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeAgent")
    }
}

struct Usage(String);
struct RunErr(String);

enum Fail {
    Usage(Usage),
    Run(RunErr),
}

impl From<Usage> for Fail {
    fn from(u: Usage) -> Self {
        Fail::Usage(u)
    }
}
impl From<RunErr> for Fail {
    fn from(r: RunErr) -> Self {
        Fail::Run(r)
    }
}

fn usage<T>(msg: impl Into<String>) -> std::result::Result<T, Fail> {
    Err(Fail::Usage(Usage(msg.into())))
}
fn run_err<T>(msg: impl Into<String>) -> std::result::Result<T, Fail> {
    Err(Fail::Run(RunErr(msg.into())))
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(args: &[String]) -> String {
    let items: Vec<String> = args.iter().map(|a| go_quote(a)).collect();
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of a string (close enough: JSON string escaping).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A flag a tool accepts.
struct Flag {
    names: &'static [&'static str],
    takes_value: bool,
}

const FORMAT: Flag = Flag {
    names: &["format"],
    takes_value: true,
};
const OUTPUT: Flag = Flag {
    names: &["o", "output"],
    takes_value: true,
};
const RELATION: Flag = Flag {
    names: &["r", "relation"],
    takes_value: true,
};
const LABEL: Flag = Flag {
    names: &["label"],
    takes_value: true,
};
const PEEK: Flag = Flag {
    names: &["peek"],
    takes_value: false,
};
const REFRESH: Flag = Flag {
    names: &["refresh"],
    takes_value: false,
};
const APP: Flag = Flag {
    names: &["app"],
    takes_value: false,
};

/// Parsed command line: flags by their first name, positionals in order.
struct Parsed {
    flags: BTreeMap<&'static str, String>,
    args: Vec<String>,
}

impl Parsed {
    fn has(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }

    /// The `--format` value, `smart` by default.
    fn format(&self) -> &str {
        self.flags.get("format").map_or("smart", String::as_str)
    }

    /// Refuses positional arguments past the first `n`, as `cmd.CheckEmpty` does.
    fn at_most(&self, n: usize) -> std::result::Result<(), Fail> {
        if self.args.len() > n {
            return usage(format!(
                "unrecognized args: {}",
                go_quote_list(&self.args[n..])
            ));
        }
        Ok(())
    }
}

/// gnuflag-style parsing: flags may be mixed with positionals, `--` ends flags, `--long`,
/// `--long=v`, `--long v`, and single-dash clusters of one-rune flags.
fn parse(args: &[String], spec: &[&Flag]) -> std::result::Result<Parsed, Fail> {
    let find = |name: &str| spec.iter().find(|f| f.names.contains(&name)).copied();
    let dashed = |name: &str| {
        if name.chars().count() > 1 {
            format!("--{name}")
        } else {
            format!("-{name}")
        }
    };
    let mut p = Parsed {
        flags: BTreeMap::new(),
        args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            p.args.extend(it.by_ref().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(flag) = find(name) else {
                return usage(format!("option provided but not defined: {}", dashed(name)));
            };
            let value = if flag.takes_value {
                match inline.or_else(|| it.next().cloned()) {
                    Some(v) => v,
                    None => return usage(format!("option needs an argument: {}", dashed(name))),
                }
            } else {
                match inline.as_deref() {
                    None | Some("true") | Some("True") | Some("1") => "true".into(),
                    Some("false") | Some("False") | Some("0") => "false".into(),
                    Some(v) => {
                        return usage(format!(
                            "invalid boolean value {} for option {}",
                            go_quote(v),
                            dashed(name)
                        ));
                    }
                }
            };
            p.flags.insert(flag.names[0], value);
        } else if a.len() > 1 && a.starts_with('-') {
            let cluster: Vec<char> = a[1..].chars().collect();
            let mut i = 0;
            while i < cluster.len() {
                let name = cluster[i].to_string();
                let Some(flag) = find(&name) else {
                    return usage(format!("option provided but not defined: -{name}"));
                };
                if flag.takes_value {
                    let rest: String = cluster[i + 1..].iter().collect();
                    let rest = rest.strip_prefix('=').map(str::to_string).unwrap_or(rest);
                    let value = if !rest.is_empty() {
                        rest
                    } else {
                        match it.next() {
                            Some(v) => v.clone(),
                            None => return usage(format!("option needs an argument: -{name}")),
                        }
                    };
                    p.flags.insert(flag.names[0], value);
                    break;
                }
                p.flags.insert(flag.names[0], "true".into());
                i += 1;
            }
        } else {
            p.args.push(a.clone());
        }
    }
    if p.flags
        .get("format")
        .is_some_and(|f| !matches!(f.as_str(), "smart" | "yaml" | "json"))
    {
        let f = &p.flags["format"];
        return usage(format!(
            "invalid value {} for option --format: unknown format {}",
            go_quote(f),
            go_quote(f)
        ));
    }
    Ok(p)
}

/// Renders a value in one of Juju's output formats (`smart` is the default).
pub fn format_value(v: &Value, format: &str) -> String {
    match format {
        "json" => {
            let s = serde_json::to_string(v).unwrap_or_default();
            // Go's encoder escapes these three; they can only occur inside strings.
            let s = s
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026");
            format!("{s}\n")
        }
        "yaml" => match v {
            Value::Null => String::new(),
            Value::String(s) if s.is_empty() => "\"\"\n".into(),
            v => yaml(v),
        },
        _ => match v {
            Value::Null => String::new(),
            Value::String(s) if s.is_empty() => String::new(),
            Value::String(s) => format!("{s}\n"),
            Value::Bool(true) => "True\n".into(),
            Value::Bool(false) => "False\n".into(),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                if items.is_empty() {
                    String::new()
                } else {
                    let lines: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                    format!("{}\n", lines.join("\n"))
                }
            }
            v => yaml(v),
        },
    }
}

/// YAML as Juju prints it: sorted keys, one trailing newline.
pub fn yaml(v: &Value) -> String {
    let s = serde_norway::to_string(v).unwrap_or_default();
    format!("{}\n", s.trim_end_matches('\n'))
}

/// Walks `a.b.c` into nested maps; a missing key or a non-map gives `None`.
fn lookup<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.').try_fold(v, |cur, k| cur.as_object()?.get(k))
}

/// Juju's `addValueToMap`: creates or replaces intermediate maps; the last segment wins.
pub fn merge_path(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, inner)) = path.split_last() else {
        return;
    };
    let mut cur = map;
    for seg in inner {
        let entry = cur
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(m) = entry else {
            return;
        };
        cur = m;
    }
    cur.insert(last.to_string(), value);
}

const NOT_IN_ACTION: &str = "not running an action";

impl FakeAgent {
    /// An agent over `state`.
    pub fn new(state: UnitState) -> Self {
        FakeAgent {
            state: Arc::new(Mutex::new(state)),
            on_log: Arc::new(None),
        }
    }

    /// Also sends every `action-log` line to `sink` as it arrives (the local agent prints them
    /// live, as `juju run` does).
    pub fn with_log_sink(mut self, sink: impl Fn(&LogLine) + Send + Sync + 'static) -> Self {
        self.on_log = Arc::new(Some(Box::new(sink)));
        self
    }

    /// A copy of the current state.
    pub fn state(&self) -> UnitState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UnitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one tool call as Juju's server would: returns stdout, stderr and exit status.
    pub fn call(&self, tool: &str, args: &[String]) -> ToolOutput {
        if args.iter().any(|a| a == "-h" || a == "--help") && !args.contains(&"--".to_string()) {
            return ToolOutput {
                status: 0,
                stdout: format!("Usage: {tool} [options] ...\n").into_bytes(),
                stderr: Vec::new(),
            };
        }
        let r = self.dispatch(tool, args);
        match r {
            Ok(stdout) => ToolOutput {
                status: 0,
                stdout: stdout.into_bytes(),
                stderr: Vec::new(),
            },
            Err(Fail::Usage(Usage(m))) => ToolOutput {
                status: 2,
                stdout: Vec::new(),
                stderr: format!("ERROR {m}\n").into_bytes(),
            },
            Err(Fail::Run(RunErr(m))) => ToolOutput {
                status: 1,
                stdout: Vec::new(),
                stderr: format!("ERROR {m}\n").into_bytes(),
            },
        }
    }

    fn dispatch(&self, tool: &str, args: &[String]) -> std::result::Result<String, Fail> {
        match tool {
            "action-get" => self.action_get(args),
            "action-set" => self.action_set(args),
            "action-fail" => self.action_fail(args),
            "action-log" => self.action_log(args),
            "status-set" => self.status_set(args),
            "juju-log" => self.juju_log(args),
            "config-get" => self.config_get(args),
            "is-leader" => self.is_leader(args),
            "relation-ids" => self.relation_ids(args),
            "relation-list" => self.relation_list(args),
            "relation-get" => self.relation_get(args),
            "resource-get" => self.resource_get(args),
            "secret-get" => self.secret_get(args),
            other => run_err(format!("bad request: unknown command: {other}")),
        }
    }

    fn action_get(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let p = parse(args, &[&FORMAT, &OUTPUT])?;
        p.at_most(1)?;
        let st = self.lock();
        let Some(params) = &st.params else {
            return run_err(NOT_IN_ACTION);
        };
        let answer = match p.args.first() {
            None => match params {
                Value::Object(_) => params.clone(),
                _ => Value::Object(Map::new()),
            },
            Some(key) => lookup(params, key).cloned().unwrap_or(Value::Null),
        };
        Ok(format_value(&answer, p.format()))
    }

    fn action_set(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let p = parse(args, &[])?;
        let mut pairs = Vec::new();
        for a in &p.args {
            let Some((k, v)) = a.split_once('=') else {
                return usage(format!(
                    "argument {} must be of the form key...=value",
                    go_quote(a)
                ));
            };
            check_result_key(k).map_err(|e| Fail::Usage(Usage(e.to_string())))?;
            pairs.push((k.to_string(), v.to_string()));
        }
        let mut st = self.lock();
        if st.params.is_none() {
            return run_err(NOT_IN_ACTION);
        }
        for (k, v) in pairs {
            let path: Vec<&str> = k.split('.').collect();
            merge_path(&mut st.results, &path, Value::String(v));
        }
        Ok(String::new())
    }

    fn action_fail(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let p = parse(args, &[])?;
        p.at_most(1)?;
        let mut st = self.lock();
        if st.params.is_none() {
            return run_err(NOT_IN_ACTION);
        }
        st.failed = true;
        st.fail_message = p.args.first().cloned().unwrap_or_else(|| {
            "action failed without reason given, check action for errors".into()
        });
        Ok(String::new())
    }

    fn action_log(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let p = parse(args, &[])?;
        if p.args.is_empty() {
            return usage("no message specified");
        }
        let line = {
            let mut st = self.lock();
            if st.params.is_none() {
                return run_err(NOT_IN_ACTION);
            }
            if st.logs.len() >= 1000 {
                // Juju drops messages past 1000 without an error.
                return Ok(String::new());
            }
            let now = jiff::Timestamp::now();
            let line = LogLine {
                time: jiff::Timestamp::from_second(now.as_second()).unwrap_or(now),
                message: p.args.join(" "),
            };
            st.logs.push(line.clone());
            line
        };
        if let Some(sink) = self.on_log.as_ref() {
            sink(&line);
        }
        Ok(String::new())
    }

    fn status_set(&self, args: &[String]) -> std::result::Result<String, Fail> {
        const APP: Flag = Flag {
            names: &["application"],
            takes_value: false,
        };
        let p = parse(args, &[&APP])?;
        let Some(status) = p.args.first() else {
            return usage("invalid args, require <status> [message]");
        };
        let valid = ["maintenance", "blocked", "waiting", "active"];
        if !valid.contains(&status.as_str()) {
            return usage(format!(
                "invalid status {}, expected one of [{}]",
                go_quote(status),
                valid.join(" ")
            ));
        }
        p.at_most(2)?;
        let msg = p.args.get(1).cloned().unwrap_or_default();
        let mut st = self.lock();
        if p.flags.get("application").is_some_and(|v| v == "true") {
            if !st.leader {
                return run_err("this unit is not the leader");
            }
            st.app_status = (status.clone(), msg);
        } else {
            st.status = (status.clone(), msg);
        }
        Ok(String::new())
    }

    fn juju_log(&self, args: &[String]) -> std::result::Result<String, Fail> {
        const DEBUG: Flag = Flag {
            names: &["debug"],
            takes_value: false,
        };
        const LEVEL: Flag = Flag {
            names: &["l", "log-level"],
            takes_value: true,
        };
        let p = parse(args, &[&DEBUG, &LEVEL, &FORMAT])?;
        if p.args.is_empty() {
            return usage("no message specified");
        }
        let level = if p.has("debug") {
            "DEBUG".to_string()
        } else {
            let l = p
                .flags
                .get("l")
                .map_or("INFO", String::as_str)
                .to_ascii_uppercase();
            match l.as_str() {
                "TRACE" | "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL" => l,
                "WARN" => "WARNING".into(),
                _ => "INFO".into(),
            }
        };
        self.lock()
            .juju_logs
            .push(format!("{level} {}", p.args.join(" ")));
        Ok(String::new())
    }

    fn config_get(&self, args: &[String]) -> std::result::Result<String, Fail> {
        const ALL: Flag = Flag {
            names: &["a", "all"],
            takes_value: false,
        };
        let p = parse(args, &[&FORMAT, &OUTPUT, &ALL])?;
        p.at_most(1)?;
        if let (Some(k), true) = (p.args.first(), p.has("a")) {
            return usage(format!(
                "cannot use argument --all together with key {}",
                go_quote(k)
            ));
        }
        let st = self.lock();
        let v = match p.args.first() {
            Some(k) => st.config.get(k).cloned().unwrap_or(Value::Null),
            None => Value::Object(
                st.config
                    .iter()
                    .filter(|(_, v)| p.has("a") || !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        };
        Ok(format_value(&v, p.format()))
    }

    fn is_leader(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let p = parse(args, &[&FORMAT, &OUTPUT])?;
        p.at_most(0)?;
        Ok(format_value(&Value::Bool(self.lock().leader), p.format()))
    }

    fn relation_ids(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let p = parse(args, &[&FORMAT, &OUTPUT])?;
        let Some(name) = p.args.first() else {
            return usage("no endpoint name specified");
        };
        p.at_most(1)?;
        let mut ids: Vec<String> = self
            .lock()
            .relations
            .iter()
            .filter(|r| &r.endpoint == name)
            .map(FakeRelation::key)
            .collect();
        ids.sort();
        let v = Value::Array(ids.into_iter().map(Value::String).collect());
        Ok(match (p.format(), &v) {
            ("yaml", Value::Array(a)) if a.is_empty() => "[]\n".into(),
            _ => format_value(&v, p.format()),
        })
    }

    fn find_relation(&self, st: &UnitState, id: &str) -> std::result::Result<FakeRelation, Fail> {
        let num = id.rsplit(':').next().unwrap_or(id);
        let Ok(n) = num.parse::<u32>() else {
            return usage(format!(
                "invalid value {} for option -r: invalid relation id",
                go_quote(id)
            ));
        };
        match st.relations.iter().find(|r| r.id == n) {
            Some(r) => Ok(r.clone()),
            None => usage(format!(
                "invalid value {} for option -r: relation not found",
                go_quote(id)
            )),
        }
    }

    /// Parses a relation tool's flags and finds the relation `-r` names.
    fn relation_call(&self, args: &[String]) -> std::result::Result<(Parsed, FakeRelation), Fail> {
        let p = parse(args, &[&FORMAT, &OUTPUT, &RELATION, &APP])?;
        let Some(id) = p.flags.get("r") else {
            return usage("no relation id specified");
        };
        let st = self.lock();
        let rel = self.find_relation(&st, id)?;
        Ok((p, rel))
    }

    fn relation_list(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let (p, rel) = self.relation_call(args)?;
        p.at_most(0)?;
        let v = if p.has("app") {
            Value::String(rel.app)
        } else {
            Value::Array(rel.units.into_iter().map(Value::String).collect())
        };
        Ok(format_value(&v, p.format()))
    }

    fn relation_get(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let (p, rel) = self.relation_call(args)?;
        p.at_most(2)?;
        let key = p.args.first().map_or("-", String::as_str);
        let Some(member) = p.args.get(1) else {
            return usage("no unit or application specified");
        };
        let app = p.has("app");
        let data = if app {
            let app_name = member.split('/').next().unwrap_or(member);
            if app_name != rel.app {
                return run_err(format!(
                    "permission denied: cannot read application {app_name:?}"
                ));
            }
            rel.app_data.clone()
        } else {
            if !member.contains('/') {
                return usage(format!(
                    "expected unit name, got application name {}",
                    go_quote(member)
                ));
            }
            rel.unit_data.get(member).cloned().unwrap_or_default()
        };
        let v = if key == "-" {
            Value::Object(
                data.into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            )
        } else {
            data.get(key).cloned().map_or(Value::Null, Value::String)
        };
        Ok(format_value(&v, p.format()))
    }

    fn resource_get(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let p = parse(args, &[])?;
        let Some(name) = p.args.first() else {
            return usage("missing required resource name");
        };
        p.at_most(1)?;
        let st = self.lock();
        match st.resources.get(name) {
            Some(path) => Ok(path.display().to_string()),
            None => {
                let tag = st.unit.replace('/', "-");
                let app = st.unit.split('/').next().unwrap_or_default();
                run_err(format!(
                    "could not download resource: HTTP request failed: Get \
                     https://localhost:17070/units/unit-{tag}/resources/{name}: \
                     resource#{app}/{name} not found"
                ))
            }
        }
    }
}

impl FakeAgent {
    /// `secret-get [--format yaml|json] [--label L] [--peek|--refresh] <uri> [key]`, as Juju
    /// 3 has it: the whole content as a map, or one key's value.
    fn secret_get(&self, args: &[String]) -> std::result::Result<String, Fail> {
        let p = parse(args, &[&FORMAT, &OUTPUT, &LABEL, &PEEK, &REFRESH])?;
        let format = p.flags.get("format").map_or("yaml", String::as_str);
        if format != "yaml" && format != "json" {
            return usage(format!(
                "invalid value {format:?} for option --format: unknown format {format:?}"
            ));
        }
        let Some(uri) = p.args.first() else {
            return usage("require either a secret URI or label");
        };
        let id = uri.strip_prefix("secret:").unwrap_or(uri);
        if id.len() != 20
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return usage(format!("secret URI {uri:?} not valid"));
        }
        if p.has("peek") && p.has("refresh") {
            return usage("specify one of --peek or --refresh but not both");
        }
        p.at_most(2)?;
        let st = self.lock();
        let Some(content) = st.secrets.get(&format!("secret:{id}")) else {
            return run_err(format!("secret {id:?} not found"));
        };
        let value = match p.args.get(1) {
            None => Value::Object(
                content
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
            Some(key) => match content.get(key) {
                Some(v) => Value::String(v.clone()),
                None => return run_err(format!("secret key value {key:?} not found")),
            },
        };
        Ok(format_value(&value, format))
    }
}

impl ToolRunner for FakeAgent {
    fn invoke(&self, tool: &str, args: &[String]) -> Result<ToolOutput> {
        Ok(self.call(tool, args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_in_action(params: Value) -> FakeAgent {
        FakeAgent::new(UnitState {
            unit: "charm-backup/0".into(),
            params: Some(params),
            ..Default::default()
        })
    }

    fn call(a: &FakeAgent, tool: &str, args: &[&str]) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let o = a.call(tool, &args);
        (
            o.status,
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    #[test]
    fn action_get_formats_match_juju() {
        let a = agent_in_action(
            serde_json::json!({"outfile": {"type": {"1": "raw"}}, "s": "foo", "b": true, "e": ""}),
        );
        assert_eq!(call(&a, "action-get", &["s"]).1, "foo\n");
        assert_eq!(
            call(&a, "action-get", &["--format=json", "s"]).1,
            "\"foo\"\n"
        );
        assert_eq!(call(&a, "action-get", &["b"]).1, "True\n");
        assert_eq!(
            call(&a, "action-get", &["--format", "yaml", "b"]).1,
            "true\n"
        );
        assert_eq!(call(&a, "action-get", &["e"]).1, "");
        assert_eq!(call(&a, "action-get", &["--format=yaml", "e"]).1, "\"\"\n");
        assert_eq!(
            call(&a, "action-get", &["missing"]),
            (0, String::new(), String::new())
        );
        assert_eq!(
            call(&a, "action-get", &["--format=json", "missing"]).1,
            "null\n"
        );
        assert_eq!(
            call(&a, "action-get", &["--format=json", "outfile.type"]).1,
            "{\"1\":\"raw\"}\n"
        );
        assert_eq!(
            call(&a, "action-get", &["a", "keys"]),
            (
                2,
                String::new(),
                "ERROR unrecognized args: [\"keys\"]\n".into()
            )
        );
        assert_eq!(
            call(&a, "action-get", &["--format=x"]).2,
            "ERROR invalid value \"x\" for option --format: unknown format \"x\"\n"
        );
        let none = agent_in_action(Value::Object(Map::new()));
        for f in ["--format=smart", "--format=yaml", "--format=json"] {
            assert_eq!(call(&none, "action-get", &[f]).1, "{}\n");
        }
    }

    #[test]
    fn action_set_merges_like_juju() {
        let a = agent_in_action(Value::Object(Map::new()));
        assert_eq!(
            call(
                &a,
                "action-set",
                &["outfile.size=10G", "foo.bar=2", "foo.baz.val=3"]
            )
            .0,
            0
        );
        assert_eq!(
            call(
                &a,
                "action-set",
                &["foo.bar.zab=4", "foo.baz=1", "a=b=c", "e="]
            )
            .0,
            0
        );
        assert_eq!(
            Value::Object(a.state().results),
            serde_json::json!({"outfile": {"size": "10G"}, "foo": {"bar": {"zab": "4"}, "baz": "1"}, "a": "b=c", "e": ""})
        );
        let (code, _, err) = call(&a, "action-set", &["ok=1", "Bad=2"]);
        assert_eq!(code, 2);
        assert!(
            err.starts_with("ERROR key \"Bad\" must start and end"),
            "{err}"
        );
        assert!(
            a.state().results.get("ok").is_none(),
            "a rejected call sets nothing"
        );
        assert_eq!(
            call(&a, "action-set", &["a.stderr=1"]).2,
            "ERROR cannot set reserved action key \"stderr\"\n"
        );
        assert_eq!(
            call(&a, "action-set", &["result"]).2,
            "ERROR argument \"result\" must be of the form key...=value\n"
        );
        assert_eq!(
            call(&a, "action-set", &["-x=1"]).2,
            "ERROR option provided but not defined: -x\n"
        );
        assert_eq!(
            call(&a, "action-set", &["-foo=1"]).2,
            "ERROR option provided but not defined: -f\n"
        );
        assert_eq!(
            call(&a, "action-set", &["--foo=1"]).2,
            "ERROR option provided but not defined: --foo\n"
        );
        assert_eq!(call(&a, "action-set", &[]).0, 0);
    }

    #[test]
    fn action_fail_and_log() {
        let a = agent_in_action(Value::Object(Map::new()));
        call(&a, "action-fail", &["first"]);
        call(&a, "action-fail", &["--", "-second"]);
        assert_eq!(a.state().fail_message, "-second");
        call(&a, "action-fail", &[]);
        assert_eq!(
            a.state().fail_message,
            "action failed without reason given, check action for errors"
        );
        assert_eq!(
            call(&a, "action-log", &[]).2,
            "ERROR no message specified\n"
        );
        call(&a, "action-log", &["--", "a", "b"]);
        assert_eq!(a.state().logs[0].message, "a b");
    }

    #[test]
    fn action_tools_outside_an_action_fail_with_exit_1() {
        let a = FakeAgent::new(UnitState::default());
        for tool in ["action-get", "action-fail", "action-log"] {
            assert_eq!(
                call(&a, tool, &["x"]),
                (1, String::new(), "ERROR not running an action\n".into()),
                "{tool}"
            );
        }
    }

    #[test]
    fn status_leader_config_relations_resources() {
        let a = FakeAgent::new(UnitState {
            unit: "charm-backup/0".into(),
            config: serde_json::json!({"paths": "/etc", "none": null})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            relations: vec![FakeRelation {
                id: 7,
                endpoint: "s3-parameters".into(),
                app: "s3-integrator".into(),
                units: vec!["s3-integrator/0".into()],
                app_data: [("bucket".to_string(), "b".to_string())].into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(
            call(&a, "status-set", &["foo"]).2,
            "ERROR invalid status \"foo\", expected one of [maintenance blocked waiting active]\n"
        );
        assert_eq!(call(&a, "status-set", &["blocked", "--", "set paths"]).0, 0);
        assert_eq!(a.state().status, ("blocked".into(), "set paths".into()));
        assert_eq!(
            call(&a, "status-set", &["--application", "active"]).2,
            "ERROR this unit is not the leader\n"
        );
        assert_eq!(call(&a, "is-leader", &[]).1, "False\n");
        assert_eq!(call(&a, "is-leader", &["--format=json"]).1, "false\n");
        assert_eq!(
            call(&a, "config-get", &["--format=json"]).1,
            "{\"paths\":\"/etc\"}\n"
        );
        assert_eq!(call(&a, "config-get", &["paths"]).1, "/etc\n");
        assert_eq!(
            call(&a, "config-get", &["--format=json", "nope"]).1,
            "null\n"
        );
        assert_eq!(
            call(&a, "relation-ids", &["--format=json", "s3-parameters"]).1,
            "[\"s3-parameters:7\"]\n"
        );
        assert_eq!(
            call(&a, "relation-ids", &["--format=json", "other"]).1,
            "[]\n"
        );
        assert_eq!(
            call(
                &a,
                "relation-list",
                &["--format=json", "-r", "s3-parameters:7", "--app"]
            )
            .1,
            "\"s3-integrator\"\n"
        );
        assert_eq!(
            call(
                &a,
                "relation-get",
                &["--format=json", "-r", "7", "--app", "-", "s3-integrator"]
            )
            .1,
            "{\"bucket\":\"b\"}\n"
        );
        assert_eq!(call(&a, "relation-get", &["-r", "9", "-", "x/0"]).0, 2);
        let (code, _, err) = call(&a, "resource-get", &["snapshot"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("resource#charm-backup/snapshot not found"),
            "{err}"
        );
        assert_eq!(
            call(&a, "resource-get", &[]).2,
            "ERROR missing required resource name\n"
        );
    }
}
