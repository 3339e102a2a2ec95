//! Unit tests of the fake agent's tools, straight through `FakeAgent::call`.

use super::*;

fn agent_in_action(params: Value) -> FakeAgent {
    FakeAgent::new(UnitState {
        unit: "charm-backup/0".into(),
        params: Some(params),
        ..Default::default()
    })
}

fn call(a: &FakeAgent, tool: &str, args: &[&str]) -> (i32, String, String) {
    a.call_text(tool, args)
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
