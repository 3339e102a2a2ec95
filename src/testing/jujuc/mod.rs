//! An in-memory unit agent that answers hook-tool calls the way Juju's `jujuc` server does:
//! the same flags, output formats, merge rules, error messages and exit codes
//! (0 success, 1 run error, 2 usage error, `ERROR <msg>` on stderr).
//!
//! Like Juju's hook context (`internal/worker/uniter/runner/context/context.go`), some changes
//! apply at once (status, leadership settings, the workload version, action results) and others
//! are kept aside until the hook ends: relation data (`relation-set`), stored state
//! (`state-set`, `state-delete`) and ports (`open-port`, `close-port`). Juju writes those only
//! when the hook or action process exits 0 (`HookContext.Flush`); call [`FakeAgent::commit`]
//! then, or [`FakeAgent::discard`] after a failure.
//!
//! The test harness calls it in-process; the local agent serves it to real tool executables.

mod action;
mod parse;
mod ports;
mod relation;
mod state;
#[cfg(test)]
mod tests;
mod unit;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::error::Result;
use crate::juju::{PortRange, ToolOutput, ToolRunner};
use parse::{Answer, Fail, Reply, RunErr, Usage, run_err};
pub use parse::{format_value, merge_path, yaml};

/// A relation as the fake agent holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeRelation {
    /// Numeric id (the `N` of `endpoint:N`).
    pub id: u32,
    /// This charm's endpoint name.
    pub endpoint: String,
    /// The remote application (this unit's own application in a peer relation).
    pub app: String,
    /// The remote units (the other peers in a peer relation).
    pub units: Vec<String>,
    /// The remote application's data bag (unused in a peer relation, whose one application bag
    /// is [`FakeRelation::local_app_data`]).
    pub app_data: BTreeMap<String, String>,
    /// Each remote unit's data bag.
    pub unit_data: BTreeMap<String, BTreeMap<String, String>>,
    /// This unit's own data bag, as `relation-set` writes it.
    pub local_unit_data: BTreeMap<String, String>,
    /// This application's data bag, as the leader writes it with `relation-set --app`.
    pub local_app_data: BTreeMap<String, String>,
    /// Whether this is a peer relation (an endpoint under `peers:` in `metadata.yaml`).
    pub peer: bool,
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
    /// The application's leadership settings (`leader-set`, `leader-get`).
    pub leader_settings: BTreeMap<String, String>,
    /// The unit's stored state (`state-set`, `state-get`, `state-delete`).
    pub stored_state: BTreeMap<String, String>,
    /// The workload version (`application-version-set`).
    pub workload_version: String,
    /// Opened port ranges by endpoint (`""`: every endpoint), as `open-port` and `close-port`
    /// leave them.
    pub opened_ports: BTreeMap<String, BTreeSet<PortRange>>,
}

impl UnitState {
    /// The unit's application: its name without `/<n>`.
    pub fn app(&self) -> &str {
        self.unit.split('/').next().unwrap_or_default()
    }

    /// The first relation on `endpoint`.
    pub fn relation(&self, endpoint: &str) -> Option<&FakeRelation> {
        self.relations.iter().find(|r| r.endpoint == endpoint)
    }

    /// Every opened port range once, sorted as `opened-ports` lists them.
    pub fn ports(&self) -> Vec<PortRange> {
        let all: BTreeSet<PortRange> = self.opened_ports.values().flatten().copied().collect();
        all.into_iter().collect()
    }

    /// Forgets what belongs to one run (params, results, failure, logs) and keeps the rest,
    /// for the next action or hook.
    pub fn next_run(mut self) -> Self {
        self.params = None;
        self.results = Map::new();
        self.failed = false;
        self.fail_message.clear();
        self.logs.clear();
        self.juju_logs.clear();
        self
    }
}

/// Changes Juju keeps in the hook context until the hook ends.
#[derive(Debug, Clone, Default)]
struct Pending {
    /// This unit's working copy of its data bag, by relation id.
    unit_settings: BTreeMap<u32, BTreeMap<String, String>>,
    /// The leader's working copy of its application's data bag, by relation id.
    app_settings: BTreeMap<u32, BTreeMap<String, String>>,
    /// The working copy of the stored state, once loaded.
    stored: Option<BTreeMap<String, String>>,
    /// `open-port` requests: endpoint and range, in order.
    open: Vec<(String, PortRange)>,
    /// `close-port` requests.
    close: Vec<(String, PortRange)>,
}

/// The unit's state and the hook context's pending changes.
#[derive(Debug, Default)]
struct Shared {
    state: UnitState,
    pending: Pending,
}

impl std::ops::Deref for Shared {
    type Target = UnitState;
    fn deref(&self) -> &UnitState {
        &self.state
    }
}

impl std::ops::DerefMut for Shared {
    fn deref_mut(&mut self) -> &mut UnitState {
        &mut self.state
    }
}

type LogSink = Box<dyn Fn(&LogLine) + Send + Sync>;

/// The fake unit agent: shared state plus an optional live sink for `action-log` lines.
#[derive(Clone)]
pub struct FakeAgent {
    shared: Arc<Mutex<Shared>>,
    on_log: Arc<Option<LogSink>>,
}

impl std::fmt::Debug for FakeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeAgent")
    }
}

impl FakeAgent {
    /// An agent over `state`.
    pub fn new(state: UnitState) -> Self {
        FakeAgent {
            shared: Arc::new(Mutex::new(Shared {
                state,
                pending: Pending::default(),
            })),
            on_log: Arc::new(None),
        }
    }

    /// Also sends every `action-log` line to `sink` as it arrives (the local agent prints them
    /// live, as `juju run` does).
    pub fn with_log_sink(mut self, sink: impl Fn(&LogLine) + Send + Sync + 'static) -> Self {
        self.on_log = Arc::new(Some(Box::new(sink)));
        self
    }

    /// A copy of the current state: what Juju holds, without the changes still pending in the
    /// hook context (see [`FakeAgent::commit`]).
    pub fn state(&self) -> UnitState {
        self.lock().state.clone()
    }

    /// Applies the pending relation data, stored state and port changes, as Juju does when the
    /// hook or action exits 0 (`HookContext.Flush` → `doFlush`).
    pub fn commit(&self) {
        let mut guard = self.lock();
        let Shared { state, pending } = &mut *guard;
        let p = std::mem::take(pending);
        for r in &mut state.relations {
            if let Some(data) = p.unit_settings.get(&r.id) {
                r.local_unit_data = data.clone();
            }
            if let Some(data) = p.app_settings.get(&r.id) {
                r.local_app_data = data.clone();
            }
        }
        if let Some(stored) = p.stored {
            state.stored_state = stored;
        }
        state.opened_ports = ports::merged(&state.opened_ports, &p.open, &p.close);
    }

    /// Drops the pending changes, as Juju does when the hook fails.
    pub fn discard(&self) {
        self.lock().pending = Pending::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`FakeAgent::call`] with string arguments, its output as text: exit status, stdout,
    /// stderr (for tests of the tools' flags, formats and errors).
    pub fn call_text(&self, tool: &str, args: &[&str]) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let o = self.call(tool, &args);
        (
            o.status,
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
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
        let (status, stdout, stderr) = match self.dispatch(tool, args) {
            Ok(Reply { stdout, stderr }) => (0, stdout, stderr),
            Err(Fail::Usage(Usage(m))) => (2, String::new(), format!("ERROR {m}\n")),
            Err(Fail::Run(RunErr(m))) => (1, String::new(), format!("ERROR {m}\n")),
        };
        ToolOutput {
            status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        }
    }

    fn dispatch(&self, tool: &str, args: &[String]) -> Answer {
        let out = match tool {
            "action-get" => self.action_get(args),
            "action-set" => self.action_set(args),
            "action-fail" => self.action_fail(args),
            "action-log" => self.action_log(args),
            "status-set" => self.status_set(args),
            "juju-log" => return self.juju_log(args),
            "config-get" => self.config_get(args),
            "is-leader" => self.is_leader(args),
            "leader-get" => self.leader_get(args),
            "leader-set" => self.leader_set(args),
            "application-version-set" => self.application_version_set(args),
            "relation-ids" => self.relation_ids(args),
            "relation-list" => self.relation_list(args),
            "relation-get" => self.relation_get(args),
            "relation-set" => return self.relation_set(args),
            "state-get" => self.state_get(args),
            "state-set" => self.state_set(args),
            "state-delete" => self.state_delete(args),
            "open-port" => return self.port_change(args, true),
            "close-port" => return self.port_change(args, false),
            "opened-ports" => self.opened_ports(args),
            "resource-get" => self.resource_get(args),
            "secret-get" => self.secret_get(args),
            other => run_err(format!("bad request: unknown command: {other}")),
        };
        out.map(Reply::from)
    }
}

impl ToolRunner for FakeAgent {
    fn invoke(&self, tool: &str, args: &[String]) -> Result<ToolOutput> {
        Ok(self.call(tool, args))
    }
}

/// `--format flag deprecated for command "<tool>"` (no newline), as the tools whose `--format`
/// is kept only for compatibility write it on stderr.
fn deprecated_format(tool: &str) -> String {
    format!("--format flag deprecated for command {tool:?}")
}
