//! `leader-get`/`leader-set`, `state-get`/`state-set`/`state-delete` and
//! `application-version-set` (juju/juju `leader-get_test.go`, `leader-set_test.go`,
//! `state-get_test.go`, `state-set_test.go`, `application-version-set_test.go`).

use std::collections::BTreeMap;

use charm_backup::juju::HookTools;
use charm_backup::testing::{FakeAgent, UnitState};

use super::{Spy, call, printed, run_error, strs, usage_error};

fn unit(leader: bool) -> FakeAgent {
    FakeAgent::new(UnitState {
        unit: "app/0".into(),
        leader,
        ..Default::default()
    })
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn leader_settings_are_written_at_once_by_the_leader() {
    let a = unit(true);
    let (spy, tools) = Spy::new(&a);
    tools
        .leader_set([("key", "value"), ("sample", "settings")])
        .unwrap();
    assert_eq!(
        spy.last(),
        (
            "leader-set".into(),
            strs(&["--", "key=value", "sample=settings"])
        )
    );
    let all = map(&[("key", "value"), ("sample", "settings")]);
    assert_eq!(
        a.state().leader_settings,
        all,
        "no need to wait for the hook to end"
    );
    assert_eq!(tools.leader_get().unwrap(), all);
    assert_eq!(
        tools.leader_get_key("key").unwrap().as_deref(),
        Some("value")
    );
    assert_eq!(tools.leader_get_key("unknown").unwrap(), None);
    assert_eq!(spy.last().1, strs(&["--format=json", "--", "unknown"]));

    for (args, out) in [
        (&["key"][..], "value\n"),
        (&["unknown"], ""),
        (&["--format", "smart", "key"], "value\n"),
        (&["--format", "json", "unknown"], "null\n"),
        (&["--format", "json", "key"], "\"value\"\n"),
        (&["--format", "yaml", "key"], "value\n"),
        (&["--format", "yaml", "unknown"], ""),
        (&["-"], "key: value\nsample: settings\n"),
        (&[], "key: value\nsample: settings\n"),
        (
            &["--format=json"],
            "{\"key\":\"value\",\"sample\":\"settings\"}\n",
        ),
    ] {
        assert_eq!(call(&a, "leader-get", args), printed(out), "{args:?}");
    }
    assert_eq!(
        call(&a, "leader-get", &["x=x"]),
        usage_error("invalid key \"x=x\"")
    );
    assert_eq!(
        call(&a, "leader-get", &["--format", "bad"]),
        usage_error("invalid value \"bad\" for option --format: unknown format \"bad\"")
    );
    assert_eq!(
        call(&a, "leader-get", &["a", "b"]),
        usage_error("unrecognized args: [\"b\"]")
    );
    assert_eq!(
        call(&a, "leader-set", &["nonsense"]),
        usage_error("expected \"key=value\", got \"nonsense\"")
    );
    tools.leader_set([("sample", "")]).unwrap();
    assert_eq!(
        a.state().leader_settings,
        map(&[("key", "value")]),
        "an empty value deletes"
    );
}

#[test]
fn only_the_leader_writes_leader_settings_but_anyone_reads_them() {
    let a = unit(false);
    let tools = HookTools::new(Box::new(a.clone()));
    let msg = "cannot write leadership settings: cannot write settings: not the leader";
    assert_eq!(
        tools.leader_set([("k", "v")]).unwrap_err().to_string(),
        format!("leader-set failed (exit status 1): {msg}")
    );
    assert_eq!(call(&a, "leader-set", &[]), run_error(msg));
    assert_eq!(tools.leader_get().unwrap(), BTreeMap::new());
    assert_eq!(call(&a, "leader-get", &[]), printed("{}\n"));
    assert_eq!(call(&a, "leader-get", &["--format=json"]), printed("{}\n"));
    assert!(
        tools.leader_set([("a=b", "c")]).is_err(),
        "leader-set has no --file for such keys"
    );
}

#[test]
fn stored_state_waits_for_the_hook_to_succeed() {
    let a = unit(false);
    let (spy, tools) = Spy::new(&a);
    // Nothing stored: Juju formats a nil map.
    assert_eq!(call(&a, "state-get", &[]), printed("{}\n"));
    assert_eq!(call(&a, "state-get", &["--format=json"]), printed("null\n"));
    assert_eq!(tools.state_get().unwrap(), BTreeMap::new());

    tools
        .state_set([("one", "two"), ("three", "four")])
        .unwrap();
    assert_eq!(
        spy.last(),
        ("state-set".into(), strs(&["--", "one=two", "three=four"]))
    );
    let both = map(&[("one", "two"), ("three", "four")]);
    assert_eq!(
        tools.state_get().unwrap(),
        both,
        "the hook sees its changes"
    );
    assert!(a.state().stored_state.is_empty());
    a.commit();
    assert_eq!(a.state().stored_state, both);

    for (args, out) in [
        (&[][..], "one: two\nthree: four\n"),
        (&["-"], "one: two\nthree: four\n"),
        (&["one"], "two\n"),
        (&["five"], ""),
        (&["--format=json", "five"], "\"\"\n"),
        (&["--format=yaml", "five"], "\"\"\n"),
    ] {
        assert_eq!(call(&a, "state-get", args), printed(out), "{args:?}");
    }
    assert_eq!(
        call(&a, "state-get", &["--strict", "five"]),
        run_error("\"five\" not found")
    );
    assert_eq!(
        call(&a, "state-get", &["a", "b"]),
        usage_error("unrecognized args: [\"b\"]")
    );
    assert_eq!(tools.state_get_key("one").unwrap().as_deref(), Some("two"));
    assert_eq!(tools.state_get_key("five").unwrap(), None);
    assert_eq!(
        spy.last().1,
        strs(&["--format=json", "--strict", "--", "five"])
    );

    tools.state_set([("one", "")]).unwrap();
    assert_eq!(
        tools.state_get_key("one").unwrap().as_deref(),
        Some(""),
        "state-set keeps an empty value"
    );
    tools.state_delete("one").unwrap();
    assert_eq!(spy.last(), ("state-delete".into(), strs(&["--", "one"])));
    assert_eq!(tools.state_get_key("one").unwrap(), None);
    assert_eq!(call(&a, "state-delete", &[]), printed(""));
    assert_eq!(call(&a, "state-delete", &["never-set"]), printed(""));
    assert_eq!(
        call(&a, "state-delete", &["a", "b"]),
        usage_error("unrecognized args: [\"b\"]")
    );
    a.discard();
    assert_eq!(
        tools.state_get().unwrap(),
        both,
        "a failed hook stores nothing"
    );
}

#[test]
fn state_set_arguments_files_and_quota_as_juju() {
    let a = unit(false);
    let (spy, tools) = Spy::new(&a);
    assert_eq!(call(&a, "state-set", &[]), printed(""));
    assert_eq!(
        call(&a, "state-set", &["five"]),
        usage_error("expected \"key=value\", got \"five\"")
    );
    let long_key = format!("{}=v", "k".repeat(257));
    assert_eq!(
        call(&a, "state-set", &[&long_key]),
        run_error("max allowed key length (256) exceeded")
    );
    let e = tools
        .state_set([("big", "v".repeat(64 * 1024 + 1))])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "state-set failed (exit status 1): max allowed value length (65536) exceeded"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("state.yaml");
    std::fs::write(&f, "{one: two, three: four}").unwrap();
    let fs = f.to_str().unwrap();
    assert_eq!(
        call(&a, "state-set", &["--file", fs, "three=4"]),
        printed("")
    );
    std::fs::write(&f, "one = two").unwrap();
    assert_eq!(
        call(&a, "state-set", &["--file", fs]),
        run_error(
            "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `one = two` into \
             map[string]string"
        )
    );
    // Three values of 60 KiB pass the quota one by one but not the OS limit together.
    let values: Vec<(String, String)> = (0..3)
        .map(|i| (format!("k{i}"), "v".repeat(60 * 1024)))
        .collect();
    tools.state_set(values.clone()).unwrap();
    assert_eq!(spy.last().1[0], "--file");
    a.commit();
    let stored = a.state().stored_state;
    assert_eq!(stored["one"], "two");
    assert_eq!(stored["three"], "4");
    assert_eq!(stored["k2"], values[2].1);
}

#[test]
fn application_version_is_set_at_once() {
    let a = unit(false);
    let (spy, tools) = Spy::new(&a);
    tools.application_version_set("dia de los muertos").unwrap();
    assert_eq!(
        spy.last(),
        (
            "application-version-set".into(),
            strs(&["--", "dia de los muertos"])
        )
    );
    assert_eq!(a.state().workload_version, "dia de los muertos");
    tools.application_version_set("-rc1").unwrap();
    assert_eq!(a.state().workload_version, "-rc1");
    assert_eq!(
        call(&a, "application-version-set", &[]),
        usage_error("no version specified")
    );
    assert_eq!(
        call(&a, "application-version-set", &["1", "2"]),
        usage_error("unrecognized args: [\"2\"]")
    );
}
