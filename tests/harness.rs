//! The harness as a charm author uses it: built from `metadata.yaml` (the unit is named after
//! the charm; unknown endpoints and resources are refused), relations with per-unit and peer
//! data, and the state one hook leaves carried into the next, as in ops' Scenario.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "testing")]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use charm_backup::juju::{Action, BoxError, Charm, Context, PortRange, Status};
use charm_backup::testing::{Harness, Relation, action};
use serde::Deserialize;

const METADATA: &str = r#"
name: kv-store
requires:
  backup:
    interface: s3
provides:
  api: http
peers:
  cluster:
    interface: kv-peers
resources:
  seed:
    type: file
"#;

const ACTIONS: &str = r#"
remember:
  description: Store a value for later hooks.
  params:
    key: {type: string}
    value: {type: string}
  required: [key, value]
  additionalProperties: false
"#;

const CONFIG: &str = r#"
options:
  port:
    type: int
    default: 8080
"#;

fn harness() -> Harness {
    Harness::with_metadata(METADATA, ACTIONS, CONFIG).unwrap()
}

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("it should panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The id of the first relation on `endpoint`.
fn relation_id(ctx: &Context, endpoint: &str) -> Result<String, BoxError> {
    let ids = ctx.tools().relation_ids(endpoint)?;
    Ok(ids.into_iter().next().ok_or("no relation")?)
}

#[derive(Deserialize)]
struct Config {
    port: u16,
}

/// The kv-store charm's hooks.
fn hooks(ctx: &mut Context, hook: &str) -> Result<(), BoxError> {
    match hook {
        "install" => {
            let config: Config = ctx.config()?;
            ctx.set_workload_version("1.2.3")?;
            ctx.open_port(&PortRange::tcp(config.port))?;
            ctx.store([("installed", "yes")])?;
            ctx.set_status(&Status::Maintenance("installed".into()))?;
        }
        "leader-elected" => ctx.set_leader_settings([("cluster-token", "abc")])?,
        "config-changed" => {
            if ctx.stored("installed")?.as_deref() != Some("yes") {
                return Err("config-changed before install".into());
            }
            let cluster = relation_id(ctx, "cluster")?;
            let peers = ctx.relation_units(&cluster)?;
            let ready = peers
                .values()
                .filter(|d| d.get("ready").map(String::as_str) == Some("true"));
            let ready = ready.count();
            let shared = ctx.local_relation_data(&cluster, true)?;
            let token = shared.get("token").cloned().unwrap_or_default();
            ctx.set_relation_data(&cluster, [("ready", "true")], false)?;
            if ctx.is_leader()? {
                let members = (peers.len() + 1).to_string();
                ctx.set_relation_data(&cluster, [("members", members.as_str())], true)?;
            }
            let backup = relation_id(ctx, "backup")?;
            let regions: Vec<String> = ctx
                .relation_units(&backup)?
                .values()
                .filter_map(|d| d.get("region").cloned())
                .collect();
            let bucket =
                ctx.relation("backup")?.ok_or("no backup relation")?.data["bucket"].clone();
            ctx.set_status(&Status::Active(format!(
                "{ready}/{} peers ready; token {token}; bucket {bucket} in {}",
                peers.len(),
                regions.join(",")
            )))?;
        }
        "update-status" => {
            let cluster = relation_id(ctx, "cluster")?;
            let mine = ctx.local_relation_data(&cluster, false)?;
            let token = ctx.leader_settings()?.get("cluster-token").cloned();
            let stored = ctx.stored("last")?.unwrap_or_default();
            ctx.set_status(&Status::Active(format!(
                "ready={} token={} last={stored}",
                mine.get("ready").cloned().unwrap_or_default(),
                token.unwrap_or_default()
            )))?;
        }
        "stop" => {
            let config: Config = ctx.config()?;
            ctx.close_port(&PortRange::tcp(config.port))?;
        }
        "fails" => {
            let cluster = relation_id(ctx, "cluster")?;
            ctx.set_relation_data(&cluster, [("ready", "true")], false)?;
            ctx.store([("half-done", "yes")])?;
            ctx.open_port(&PortRange::udp(53))?;
            ctx.set_status(&Status::Maintenance("trying".into()))?;
            ctx.set_leader_settings([("attempt", "1")])?;
            ctx.set_workload_version("2.0")?;
            return Err("the workload did not start".into());
        }
        _ => {}
    }
    Ok(())
}

/// Stores a value; an empty one fails the action after storing it.
struct Remember;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RememberParams {
    key: String,
    value: String,
}

impl Action for Remember {
    const NAME: &'static str = "remember";
    type Params = RememberParams;
    type Results = BTreeMap<String, String>;
    fn run(&self, ctx: &mut Context, p: RememberParams) -> Result<Self::Results, BoxError> {
        ctx.store([(p.key.as_str(), p.value.as_str())])?;
        if p.value.is_empty() {
            return Err("remembered an empty value".into());
        }
        Ok(BTreeMap::from([("stored".to_string(), p.key)]))
    }
}

fn charm() -> Charm {
    Charm::new().action(Remember).hooks(hooks)
}

fn with_peers_and_backup(h: Harness) -> Harness {
    h.with_relation(
        Relation::peer("cluster")
            .local_app_data([("token", "t")])
            .unit(1, [("ready", "true"), ("address", "10.0.0.2")])
            .unit(2, [("ready", "false")]),
    )
    .with_relation(
        Relation::new("backup", "s3-integrator")
            .remote_app_data([("bucket", "b")])
            .unit(0, [("region", "eu")])
            .unit(1, [("region", "us")]),
    )
}

#[test]
fn the_unit_is_named_after_the_charm_in_metadata_yaml() {
    assert_eq!(harness().state().unit, "kv-store/0");
    assert_eq!(harness().metadata().unwrap().name, "kv-store");
    let own = Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert_eq!(own.state().unit, "charm-backup/0");
    let anything = Harness::new(ACTIONS, CONFIG).unwrap();
    assert!(anything.metadata().is_none());
    let anything = anything
        .relation("whatever", "x", [])
        .resource("any", "/tmp/x");
    assert_eq!(
        anything.state().relations.len(),
        1,
        "no metadata: anything goes"
    );
}

#[test]
fn unknown_endpoints_and_resources_are_refused_naming_what_metadata_yaml_has() {
    let m = panic_message(|| {
        harness().relation("nope", "x", []);
    });
    assert_eq!(
        m,
        "metadata.yaml of kv-store has no relation endpoint \"nope\"; it has requires: \
         backup; provides: api; peers: cluster"
    );
    let m = panic_message(|| {
        harness().relation("cluster", "x", []);
    });
    assert!(m.contains("is under peers: in metadata.yaml"), "{m}");
    let m = panic_message(|| {
        harness().with_relation(Relation::peer("backup"));
    });
    assert!(
        m.contains("is under requires: in metadata.yaml, not peers:"),
        "{m}"
    );
    let m = panic_message(|| {
        harness().resource("nope", "/tmp/x");
    });
    assert_eq!(
        m,
        "metadata.yaml of kv-store has no resource \"nope\"; it has: seed"
    );
    let h = harness()
        .relation("backup", "s3-integrator", [])
        .relation("api", "web", [])
        .resource("seed", "/tmp/seed");
    assert_eq!(h.state().relations.len(), 2);

    let own = Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let m = panic_message(|| {
        own.relation("s3", "x", []);
    });
    assert!(
        m.contains("it has requires: juju-info, s3-parameters, s3-source"),
        "{m}"
    );
}

#[test]
fn peers_and_remote_units_each_have_their_own_data() {
    let h = with_peers_and_backup(harness()).stored_state([("installed", "yes")]);
    let out = h.run_hook(&charm(), "config-changed");
    assert_eq!(out.error, None);
    assert_eq!(
        out.status,
        (
            "active".into(),
            "1/2 peers ready; token t; bucket b in eu,us".into()
        )
    );
    let cluster = out.state.relation("cluster").unwrap();
    assert_eq!(cluster.units, ["kv-store/1", "kv-store/2"]);
    assert_eq!(cluster.local_unit_data["ready"], "true");
    assert_eq!(cluster.local_app_data["members"], "3");
    assert_eq!(
        cluster.local_app_data["token"], "t",
        "the shared bag keeps the rest"
    );

    let out = h.leader(false).run_hook(&charm(), "config-changed");
    assert_eq!(out.error, None);
    let cluster = out.state.relation("cluster").unwrap();
    assert!(
        !cluster.local_app_data.contains_key("members"),
        "only the leader writes the application bag"
    );
}

#[test]
fn the_state_one_run_leaves_is_what_the_next_run_sees() {
    let h = with_peers_and_backup(harness()).config("port", 9000);
    assert_eq!(
        h.run_hook(&charm(), "config-changed").error.as_deref(),
        Some("config-changed before install")
    );
    let installed = h.run_hook(&charm(), "install");
    assert_eq!(installed.error, None);
    assert_eq!(installed.state.stored_state["installed"], "yes");

    let h = h.with_state(installed.state);
    let changed = h.run_hook(&charm(), "config-changed");
    assert_eq!(changed.error, None, "install's stored state is carried");

    let remembered = h
        .clone()
        .with_state(changed.state)
        .run(
            action("remember").param("key", "last").param("value", "42"),
            &Remember,
        )
        .unwrap();
    assert_eq!(remembered.results["stored"], "last");

    let h = h.with_state(remembered.state);
    assert!(h.state().results.is_empty(), "a run's results stay with it");
    let later = h.run_hook(&charm(), "update-status");
    assert_eq!(
        later.status,
        ("active".into(), "ready=true token= last=42".into()),
        "relation data and stored state written by earlier runs"
    );
}

#[test]
fn leadership_settings_are_written_by_the_leader_and_read_by_all() {
    let h = with_peers_and_backup(harness());
    let minion = h.clone().leader(false).run_hook(&charm(), "leader-elected");
    assert!(
        minion
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("cannot write leadership settings: cannot write settings: not the leader"),
        "{:?}",
        minion.error
    );
    let leader = h.run_hook(&charm(), "leader-elected");
    assert_eq!(leader.error, None);
    assert_eq!(leader.state.leader_settings["cluster-token"], "abc");

    let deposed = harness().with_state(leader.state).leader(false);
    let out = deposed.run_hook(&charm(), "update-status");
    assert_eq!(out.error, None);
    assert!(out.status.1.contains("token=abc"), "{:?}", out.status);
}

#[test]
fn ports_and_the_workload_version() {
    let h = with_peers_and_backup(harness()).config("port", 9000);
    let out = h.run_hook(&charm(), "install");
    assert_eq!(out.state.ports(), [PortRange::tcp(9000)]);
    assert_eq!(out.state.workload_version, "1.2.3");
    let stopped = h.with_state(out.state).run_hook(&charm(), "stop");
    assert_eq!(stopped.error, None);
    assert!(stopped.state.ports().is_empty());
    assert_eq!(stopped.state.workload_version, "1.2.3");
}

#[test]
fn a_failed_hook_keeps_only_what_juju_writes_at_once() {
    let h = with_peers_and_backup(harness()).stored_state([("installed", "yes")]);
    let out = h.run_hook(&charm(), "fails");
    assert_eq!(out.error.as_deref(), Some("the workload did not start"));
    let st = &out.state;
    assert!(st.relation("cluster").unwrap().local_unit_data.is_empty());
    assert_eq!(st.stored_state, h.state().stored_state);
    assert!(st.ports().is_empty());
    assert_eq!(out.status, ("maintenance".into(), "trying".into()));
    assert_eq!(st.leader_settings["attempt"], "1");
    assert_eq!(st.workload_version, "2.0");
}

#[test]
fn an_action_failed_with_action_fail_still_writes_its_changes() {
    let failed = harness()
        .run(
            action("remember").param("key", "k").param("value", ""),
            &Remember,
        )
        .unwrap_err();
    assert_eq!(failed.message, "remembered an empty value");
    let state = failed.state.unwrap();
    assert_eq!(
        state.stored_state.get("k").map(String::as_str),
        Some(""),
        "the process exited 0, so Juju writes the stored state"
    );
}
