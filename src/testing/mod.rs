//! Run a charm's actions and hooks in-process, against given params, config, relation data,
//! leadership and resources, and read back results, logs, failure and status, as
//! `ops.testing` does for Python charms. Enabled by the `testing` feature.
//!
//! Params are checked against the charm's `actions.yaml` and defaulted exactly as Juju does
//! before the action runs; the hook tools are served by a fake agent that follows Juju's
//! behaviour (key rules, merges, error texts), reached through the same client code a real unit
//! uses.
//!
//! With the charm's `metadata.yaml` ([`Harness::from_charm_dir`], [`Harness::with_metadata`])
//! the unit is `<charm name>/0` and every relation endpoint and resource a test names is checked
//! against it. [`Relation`] describes a relation with each remote unit's data, this unit's own
//! data, or a peer relation. Every output carries the [`UnitState`] the run left (relation data,
//! leadership settings, stored state, status, workload version, ports), which
//! [`Harness::with_state`] carries into the next run, as Scenario's `State` does:
//!
//! ```
//! use charm_backup::juju::Charm;
//! use charm_backup::testing::{Harness, Relation};
//!
//! let metadata = "name: kv\nrequires:\n  db: {interface: pgsql}\npeers:\n  cluster: {interface: kv}\n";
//! let h = Harness::with_metadata(metadata, "{}", "options: {}")?
//!     .with_relation(Relation::new("db", "postgresql").unit(0, [("host", "10.0.0.1")]))
//!     .with_relation(Relation::peer("cluster").unit(1, [("ready", "true")]));
//! let charm = Charm::new().hooks(|ctx, hook| {
//!     match hook {
//!         "install" => ctx.store([("installed", "yes")])?,
//!         _ => {
//!             let seen = ctx.stored("installed")?.ok_or("install did not run")?;
//!             let db = ctx.tools().relation_ids("db")?.remove(0);
//!             let host = ctx.relation_units(&db)?["postgresql/0"]["host"].clone();
//!             ctx.set_relation_data(&db, [("installed", seen.as_str()), ("host-seen", host.as_str())], false)?;
//!         }
//!     }
//!     Ok(())
//! });
//! let installed = h.run_hook(&charm, "install");
//! assert_eq!(h.state().unit, "kv/0");
//! let changed = h.with_state(installed.state).run_hook(&charm, "config-changed");
//! assert_eq!(changed.error, None);
//! assert_eq!(changed.state.relation("db").unwrap().local_unit_data["host-seen"], "10.0.0.1");
//! # Ok::<(), charm_backup::Error>(())
//! ```
//!
//! An action, its params checked against `actions.yaml`:
//!
//! ```
//! use charm_backup::juju::{Action, BoxError, Context};
//! use charm_backup::testing::{Harness, action};
//! use serde::{Deserialize, Serialize};
//!
//! /// An author's own action: greets someone, counting greetings in a result.
//! struct Greet;
//!
//! #[derive(Deserialize)]
//! #[serde(rename_all = "kebab-case", deny_unknown_fields)]
//! struct GreetParams { name: String, times: u32 }
//!
//! #[derive(Serialize)]
//! struct GreetResults { greeting: String, count: u32 }
//!
//! impl Action for Greet {
//!     const NAME: &'static str = "greet";
//!     type Params = GreetParams;
//!     type Results = GreetResults;
//!     fn run(&self, ctx: &mut Context, p: GreetParams) -> Result<GreetResults, BoxError> {
//!         if p.name.is_empty() {
//!             return Err("name must not be empty: pass name=<who>".into());
//!         }
//!         ctx.log(&format!("greeting {} {} times", p.name, p.times));
//!         Ok(GreetResults { greeting: format!("hello {}", p.name), count: p.times })
//!     }
//! }
//!
//! let actions_yaml = r#"
//! greet:
//!   description: Say hello.
//!   params:
//!     name: {type: string}
//!     times: {type: integer, default: 1}
//!   required: [name]
//!   additionalProperties: false
//! "#;
//! let harness = Harness::new(actions_yaml, "options: {}")?;
//!
//! let out = harness.run(action("greet").param("name", "ops"), &Greet).expect("completes");
//! assert_eq!(out.results["greeting"], "hello ops");
//! assert_eq!(out.results["count"], "1"); // the default came from actions.yaml
//! assert_eq!(out.logs, ["greeting ops 1 times"]);
//!
//! let failed = harness.run(action("greet").param("name", ""), &Greet).unwrap_err();
//! assert_eq!(failed.message, "name must not be empty: pass name=<who>");
//!
//! let refused = harness.run(action("greet").param("nmae", "x"), &Greet).unwrap_err();
//! assert!(!refused.scheduled);
//! assert!(refused.message.contains("additional property \"nmae\" is not allowed"));
//! # Ok::<(), charm_backup::Error>(())
//! ```

pub mod charm_metadata;
mod harness;
pub mod jujuc;
pub mod metadata;
mod relation;

use serde_json::{Map, Value};

pub use charm_metadata::{CharmMetadata, EndpointRole};
pub use harness::Harness;
pub use jujuc::{FakeAgent, FakeRelation, LogLine, UnitState};
pub use metadata::{ActionSpecs, ConfigSpec, parse_cli_params};
pub use relation::Relation;

/// An action to run, with its params.
#[derive(Debug, Clone)]
pub struct ActionCall {
    name: String,
    params: Map<String, Value>,
}

/// Starts an [`ActionCall`] for the action `name`.
pub fn action(name: &str) -> ActionCall {
    ActionCall {
        name: name.to_string(),
        params: Map::new(),
    }
}

impl ActionCall {
    /// Adds a param (a dotted key sets a nested one).
    pub fn param(mut self, key: &str, value: impl Into<Value>) -> Self {
        let path: Vec<&str> = key.split('.').collect();
        jujuc::merge_path(&mut self.params, &path, value.into());
        self
    }
}

/// What a completed action left behind.
#[derive(Debug, Clone)]
pub struct ActionOutput {
    /// Results as Juju stores them (nested maps of strings).
    pub results: Value,
    /// `action-log` messages, in order.
    pub logs: Vec<String>,
    /// The unit status and message afterwards.
    pub status: (String, String),
    /// Everything the fake agent recorded: results, logs, relation data, leadership settings,
    /// stored state, status, workload version and ports. Carry it into the next run with
    /// [`Harness::with_state`].
    pub state: UnitState,
}

/// A failed action: the failure message and whatever it set before failing.
#[derive(Debug, Clone)]
pub struct ActionFailed {
    /// `false` when Juju would not even have scheduled the action (params failed validation
    /// or the action is not in `actions.yaml`); `true` when the action ran and failed.
    pub scheduled: bool,
    /// The message `juju show-task` would show.
    pub message: String,
    /// `action-log` messages, in order.
    pub logs: Vec<String>,
    /// Results set before the failure.
    pub results: Value,
    /// Everything the fake agent recorded.
    pub state: Option<Box<UnitState>>,
}

impl std::fmt::Display for ActionFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.scheduled {
            write!(f, "action failed: {}", self.message)
        } else {
            write!(f, "action not scheduled: {}", self.message)
        }
    }
}

impl std::error::Error for ActionFailed {}

/// What a hook left behind.
#[derive(Debug, Clone)]
pub struct HookOutput {
    /// The unit status and message afterwards.
    pub status: (String, String),
    /// `juju-log` lines as `LEVEL message`.
    pub juju_logs: Vec<String>,
    /// The hook's error, when it failed (Juju would put the unit in error state).
    pub error: Option<String>,
    /// Everything the fake agent recorded: relation data, leadership settings, stored state,
    /// status, workload version and ports as the hook left them (a failed hook's relation
    /// data, stored state and ports are dropped, as Juju drops them). Carry it into the next
    /// run with [`Harness::with_state`].
    pub state: UnitState,
}
