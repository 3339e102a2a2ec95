//! Run a charm's actions and hooks in-process, against given params, config, relation data,
//! leadership and resources, and read back results, logs, failure and status, as
//! `ops.testing` does for Python charms. Enabled by the `testing` feature.
//!
//! Params are checked against the charm's `actions.yaml` and defaulted exactly as Juju does
//! before the action runs; the hook tools are served by a fake agent that follows Juju's
//! behaviour (key rules, merges, error texts), reached through the same client code a real unit
//! uses.
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

pub mod jujuc;
pub mod metadata;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::juju::{Action, Charm, Context, Event, HookTools, JujuContext, Outcome, execute};
pub use jujuc::{FakeAgent, FakeRelation, LogLine, UnitState};
pub use metadata::{ActionSpecs, ConfigSpec, parse_cli_params};

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
    /// Everything the fake agent recorded.
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
}

/// A unit to run actions and hooks on, built up with config, leadership, relations and
/// resources.
#[derive(Debug, Clone)]
pub struct Harness {
    actions: ActionSpecs,
    config_spec: ConfigSpec,
    state: UnitState,
    charm_dir: PathBuf,
}

impl Harness {
    /// A unit `<app>/0` of a charm with this `actions.yaml` and `config.yaml`, config at its
    /// defaults, leader.
    ///
    /// # Errors
    /// When either file is invalid the way Juju would reject it.
    pub fn new(actions_yaml: &str, config_yaml: &str) -> Result<Self> {
        let config_spec = ConfigSpec::parse(config_yaml)?;
        Ok(Harness {
            actions: ActionSpecs::parse(actions_yaml)?,
            state: UnitState {
                unit: "charm-backup/0".into(),
                config: config_spec.defaults(),
                leader: true,
                status: ("unknown".into(), String::new()),
                ..Default::default()
            },
            config_spec,
            charm_dir: PathBuf::from("."),
        })
    }

    /// A harness for the charm whose files are in `dir`.
    ///
    /// # Errors
    /// When a file is missing or invalid.
    pub fn from_charm_dir(dir: &Path) -> Result<Self> {
        let read = |f: &str| {
            let p = dir.join(f);
            std::fs::read_to_string(&p).map_err(|e| Error::io("cannot read charm file", &p, e))
        };
        let mut h = Harness::new(&read("actions.yaml")?, &read("config.yaml")?)?;
        h.charm_dir = dir.to_path_buf();
        Ok(h)
    }

    /// Names the unit (`app/n`).
    pub fn unit(mut self, name: &str) -> Self {
        self.state.unit = name.to_string();
        self
    }

    /// Sets a config option (checked against `config.yaml`; a string is converted to the
    /// option's type as `juju config` does).
    ///
    /// # Panics
    /// When the option is unknown or the value has the wrong type: that is a bug in the test.
    pub fn config(mut self, key: &str, value: impl Into<Value>) -> Self {
        let v = match value.into() {
            Value::String(s) => match self.config_spec.coerce(key, &s) {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            },
            v => {
                assert!(
                    self.config_spec.options.contains_key(key),
                    "unknown option {key:?}"
                );
                v
            }
        };
        self.state.config.insert(key.to_string(), v);
        self
    }

    /// Sets the charm directory the handler sees in `JUJU_CHARM_DIR` (the charm's files are
    /// still read from where the harness was made). Handlers that keep state beside the
    /// charm directory then keep it under `dir`'s parent.
    pub fn charm_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.charm_dir = dir.into();
        self
    }

    /// Sets leadership.
    pub fn leader(mut self, leader: bool) -> Self {
        self.state.leader = leader;
        self
    }

    /// Adds a relation on `endpoint` to application `app` (one unit, `app/0`) with that
    /// application's data.
    pub fn relation<'a>(
        mut self,
        endpoint: &str,
        app: &str,
        data: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let id = self.state.relations.len() as u32 + 1;
        self.state.relations.push(FakeRelation {
            id,
            endpoint: endpoint.to_string(),
            app: app.to_string(),
            units: vec![format!("{app}/0")],
            app_data: data
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            unit_data: Default::default(),
        });
        self
    }

    /// Attaches a file resource.
    pub fn resource(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        self.state.resources.insert(name.to_string(), path.into());
        self
    }

    /// Grants the unit a secret: `uri` (`secret:<20 characters>`) holding `key` = `value`
    /// (call again for more keys).
    pub fn secret(mut self, uri: &str, key: &str, value: &str) -> Self {
        self.state
            .secrets
            .entry(uri.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
        self
    }

    /// The parsed `actions.yaml`.
    pub fn actions(&self) -> &ActionSpecs {
        &self.actions
    }

    fn context(&self, agent: &FakeAgent, action: Option<&str>) -> Context {
        let mut vars = vec![
            ("JUJU_UNIT_NAME".to_string(), self.state.unit.clone()),
            ("JUJU_MODEL_NAME".into(), "test".into()),
            (
                "JUJU_MODEL_UUID".into(),
                "00000000-0000-4000-8000-000000000000".into(),
            ),
            (
                "JUJU_CHARM_DIR".into(),
                self.charm_dir.display().to_string(),
            ),
            ("JUJU_VERSION".into(), "3.6.1".into()),
        ];
        if let Some(a) = action {
            vars.extend([
                ("JUJU_ACTION_NAME".to_string(), a.to_string()),
                ("JUJU_ACTION_UUID".into(), "1".into()),
                ("JUJU_ACTION_TAG".into(), "action-1".into()),
                ("JUJU_DISPATCH_PATH".into(), format!("actions/{a}")),
            ]);
        }
        Context::new(
            JujuContext::from_vars(vars),
            HookTools::new(Box::new(agent.clone())),
        )
    }

    fn prepare(&self, call: &ActionCall) -> std::result::Result<FakeAgent, ActionFailed> {
        let params = self
            .actions
            .prepare(
                &self.state.unit,
                &call.name,
                &Value::Object(call.params.clone()),
            )
            .map_err(|e| ActionFailed {
                scheduled: false,
                message: e.to_string(),
                logs: Vec::new(),
                results: Value::Object(Map::new()),
                state: None,
            })?;
        Ok(FakeAgent::new(UnitState {
            params: Some(params),
            ..self.state.clone()
        }))
    }

    fn finish(
        agent: &FakeAgent,
        outcome: Outcome,
    ) -> std::result::Result<ActionOutput, ActionFailed> {
        let st = agent.state();
        let logs: Vec<String> = st.logs.iter().map(|l| l.message.clone()).collect();
        let results = Value::Object(st.results.clone());
        if st.failed || !matches!(outcome, Outcome::Completed) {
            let message = match outcome {
                Outcome::Unreported(_) => "exit status 1".to_string(),
                _ => st.fail_message.clone(),
            };
            return Err(ActionFailed {
                scheduled: true,
                message,
                logs,
                results,
                state: Some(Box::new(st)),
            });
        }
        Ok(ActionOutput {
            results,
            logs,
            status: st.status.clone(),
            state: st,
        })
    }

    /// Runs one action handler.
    ///
    /// # Errors
    /// [`ActionFailed`] when Juju would refuse the params or `call` names another action than
    /// the handler's (`scheduled: false`), or the action failed.
    pub fn run<A: Action>(
        &self,
        call: ActionCall,
        handler: &A,
    ) -> std::result::Result<ActionOutput, ActionFailed> {
        if call.name != A::NAME {
            return Err(ActionFailed {
                scheduled: false,
                message: format!(
                    "action {:?} was run through the handler of {:?}: run it through its own \
                     handler, or through the whole charm with run_action",
                    call.name,
                    A::NAME
                ),
                logs: Vec::new(),
                results: Value::Object(Map::new()),
                state: None,
            });
        }
        let agent = self.prepare(&call)?;
        let mut ctx = self.context(&agent, Some(&call.name));
        let outcome = execute(handler, &mut ctx);
        Harness::finish(&agent, outcome)
    }

    /// Runs an action through a whole [`Charm`], as its dispatch binary would.
    ///
    /// # Errors
    /// As [`Harness::run`].
    pub fn run_action(
        &self,
        charm: &Charm,
        call: ActionCall,
    ) -> std::result::Result<ActionOutput, ActionFailed> {
        let agent = self.prepare(&call)?;
        let mut ctx = self.context(&agent, Some(&call.name));
        let outcome = charm.run_event(&Event::Action(call.name.clone()), &mut ctx);
        Harness::finish(&agent, outcome)
    }

    /// Runs a hook through a [`Charm`].
    pub fn run_hook(&self, charm: &Charm, hook: &str) -> HookOutput {
        let agent = FakeAgent::new(self.state.clone());
        let mut ctx = self.context(&agent, None);
        let outcome = charm.run_event(&Event::Hook(hook.to_string()), &mut ctx);
        let st = agent.state();
        HookOutput {
            status: st.status,
            juju_logs: st.juju_logs,
            error: match outcome {
                Outcome::Unreported(m) | Outcome::Failed(m) => Some(m),
                Outcome::Completed => None,
            },
        }
    }
}
