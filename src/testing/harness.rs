//! [`Harness`]: a unit built from the charm's files and a world (config, leadership, relations,
//! resources, secrets, leadership settings, stored state), on which actions and hooks run.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::juju::{Action, Charm, Context, Event, HookTools, JujuContext, Outcome, execute};
use crate::testing::charm_metadata::{CharmMetadata, EndpointRole};
use crate::testing::jujuc::{FakeAgent, FakeRelation, UnitState};
use crate::testing::metadata::{ActionSpecs, ConfigSpec};
use crate::testing::relation::Relation;
use crate::testing::{ActionCall, ActionFailed, ActionOutput, HookOutput};

/// A unit to run actions and hooks on, built up with config, leadership, relations and
/// resources.
///
/// What a run writes (relation data, leadership settings, stored state, status, workload
/// version, ports) is in its output's `state`; [`Harness::with_state`] carries it into the
/// next run, as Scenario's `State` does. With `metadata.yaml` known
/// ([`Harness::from_charm_dir`], [`Harness::with_metadata`]) the unit is `<charm name>/0` and
/// relations and resources are checked against it.
#[derive(Debug, Clone)]
pub struct Harness {
    actions: ActionSpecs,
    config_spec: ConfigSpec,
    metadata: Option<CharmMetadata>,
    state: UnitState,
    charm_dir: PathBuf,
}

/// Applies or drops the hook context's pending changes as Juju's `Flush` does: they are written
/// only when the process exits 0 (which an action failed with `action-fail` still does).
fn settle(agent: &FakeAgent, outcome: &Outcome) {
    match outcome {
        Outcome::Completed | Outcome::Failed(_) => agent.commit(),
        Outcome::Unreported(_) => agent.discard(),
    }
}

impl Harness {
    /// A unit `charm-backup/0` of a charm with this `actions.yaml` and `config.yaml` and no
    /// known `metadata.yaml` (any relation endpoint and resource is accepted), config at its
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
            metadata: None,
            charm_dir: PathBuf::from("."),
        })
    }

    /// A unit `<name>/0` of the charm this `metadata.yaml` describes, with these
    /// `actions.yaml` and `config.yaml`: relations and resources are checked against the
    /// metadata.
    ///
    /// # Errors
    /// When a file is invalid.
    pub fn with_metadata(
        metadata_yaml: &str,
        actions_yaml: &str,
        config_yaml: &str,
    ) -> Result<Self> {
        let metadata = CharmMetadata::parse(metadata_yaml)?;
        let mut h = Harness::new(actions_yaml, config_yaml)?;
        h.state.unit = format!("{}/0", metadata.name);
        h.metadata = Some(metadata);
        Ok(h)
    }

    /// A harness for the charm whose files (`metadata.yaml`, `actions.yaml`, `config.yaml`)
    /// are in `dir`.
    ///
    /// # Errors
    /// When a file is missing or invalid.
    pub fn from_charm_dir(dir: &Path) -> Result<Self> {
        let read = |f: &str| {
            let p = dir.join(f);
            std::fs::read_to_string(&p).map_err(|e| Error::io("cannot read charm file", &p, e))
        };
        let mut h = Harness::with_metadata(
            &read("metadata.yaml")?,
            &read("actions.yaml")?,
            &read("config.yaml")?,
        )?;
        h.charm_dir = dir.to_path_buf();
        Ok(h)
    }

    /// Names the unit (`app/n`). Peer relations follow the application's new name.
    pub fn unit(mut self, name: &str) -> Self {
        self.state.unit = name.to_string();
        let app = self.state.app().to_string();
        for r in self.state.relations.iter_mut().filter(|r| r.peer) {
            let rename = |u: &String| {
                let n = u.rsplit('/').next().unwrap_or_default();
                format!("{app}/{n}")
            };
            r.units = r.units.iter().map(rename).collect();
            r.unit_data = std::mem::take(&mut r.unit_data)
                .into_iter()
                .map(|(u, d)| (rename(&u), d))
                .collect();
            r.app = app.clone();
        }
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
    /// application's data. [`Harness::with_relation`] takes per-unit data, this unit's own
    /// data and peer relations.
    ///
    /// # Panics
    /// When `metadata.yaml` is known and has no such endpoint under `requires:` or
    /// `provides:`; the message lists the endpoints it has.
    pub fn relation<'a>(
        self,
        endpoint: &str,
        app: &str,
        data: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        self.with_relation(Relation::new(endpoint, app).remote_app_data(data))
    }

    /// Adds a relation, with its remote units' and this unit's data bags, or a peer relation.
    ///
    /// # Panics
    /// When `metadata.yaml` is known and does not declare the endpoint in the matching section
    /// (`peers:` for [`Relation::peer`], `requires:` or `provides:` otherwise), when the id is
    /// taken, or when a peer has this unit's own name: the message says what metadata.yaml has.
    pub fn with_relation(mut self, relation: Relation) -> Self {
        self.check_endpoint(relation.endpoint(), relation.is_peer());
        let id = relation
            .chosen_id()
            .unwrap_or_else(|| self.state.relations.iter().map(|r| r.id).max().unwrap_or(0) + 1);
        assert!(
            self.state.relations.iter().all(|r| r.id != id),
            "relation id {id} is already taken"
        );
        let fake: FakeRelation = relation.to_fake(id, self.state.app());
        assert!(
            !fake.units.contains(&self.state.unit),
            "peer {} is this unit: number the other peers differently",
            self.state.unit
        );
        self.state.relations.push(fake);
        self
    }

    fn check_endpoint(&self, endpoint: &str, peer: bool) {
        let Some(m) = &self.metadata else {
            return;
        };
        match m.role(endpoint) {
            None => panic!(
                "metadata.yaml of {} has no relation endpoint {endpoint:?}; it has {}",
                m.name,
                m.describe_endpoints()
            ),
            Some(EndpointRole::Peers) if !peer => panic!(
                "endpoint {endpoint:?} is under peers: in metadata.yaml: add it with \
                 Relation::peer({endpoint:?})"
            ),
            Some(role) if peer && role != EndpointRole::Peers => panic!(
                "endpoint {endpoint:?} is under {role}: in metadata.yaml, not peers:; add it with \
                 Relation::new({endpoint:?}, <remote application>)"
            ),
            Some(_) => {}
        }
    }

    /// Attaches a file resource.
    ///
    /// # Panics
    /// When `metadata.yaml` is known and declares no such resource; the message lists those it
    /// declares.
    pub fn resource(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        if let Some(m) = &self.metadata {
            assert!(
                m.resources.contains_key(name),
                "metadata.yaml of {} has no resource {name:?}; it has: {}",
                m.name,
                m.describe_resources()
            );
        }
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

    /// Sets the application's leadership settings (what `leader-get` reads).
    pub fn leader_settings<K: Into<String>, V: Into<String>>(
        mut self,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.state.leader_settings = data
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// Sets the unit's stored state (what `state-get` reads).
    pub fn stored_state<K: Into<String>, V: Into<String>>(
        mut self,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.state.stored_state = data
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// Carries a state into this harness: typically the `state` of a previous run's output,
    /// so the next hook or action sees the relation data, stored state, leadership settings,
    /// status and ports the previous one left (as Scenario's `State`). What belonged to the
    /// previous run only (params, results, failure, logs) is dropped.
    pub fn with_state(mut self, state: UnitState) -> Self {
        self.state = state.next_run();
        self
    }

    /// The state the next run starts from.
    pub fn state(&self) -> &UnitState {
        &self.state
    }

    /// The parsed `metadata.yaml`, when known.
    pub fn metadata(&self) -> Option<&CharmMetadata> {
        self.metadata.as_ref()
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
            ..self.state.clone().next_run()
        }))
    }

    fn finish(
        agent: &FakeAgent,
        outcome: Outcome,
    ) -> std::result::Result<ActionOutput, ActionFailed> {
        settle(agent, &outcome);
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

    /// Runs a hook through a [`Charm`]. When the hook fails, the relation data, stored state
    /// and ports it changed are dropped, as Juju drops them.
    pub fn run_hook(&self, charm: &Charm, hook: &str) -> HookOutput {
        let agent = FakeAgent::new(self.state.clone().next_run());
        let mut ctx = self.context(&agent, None);
        let outcome = charm.run_event(&Event::Hook(hook.to_string()), &mut ctx);
        settle(&agent, &outcome);
        let st = agent.state();
        HookOutput {
            status: st.status.clone(),
            juju_logs: st.juju_logs.clone(),
            error: match outcome {
                Outcome::Unreported(m) | Outcome::Failed(m) => Some(m),
                Outcome::Completed => None,
            },
            state: st,
        }
    }
}
