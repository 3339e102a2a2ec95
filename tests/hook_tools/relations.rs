//! `relation-set`, and `relation-get` / `relation-list` over per-unit and peer data bags
//! (juju/juju `relation-set.go`, `relation-get.go`, `relation-list.go`, and their tests).

use std::collections::BTreeMap;

use charm_backup::juju::HookTools;
use charm_backup::testing::{FakeAgent, FakeRelation, UnitState};

use super::{Spy, call, printed, run_error, strs, usage_error};

fn bag(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Unit `app/0`: related on `db:3` to postgresql's two units, and on the peer relation
/// `cluster:5` to its own `app/1`.
fn world(leader: bool) -> FakeAgent {
    FakeAgent::new(UnitState {
        unit: "app/0".into(),
        leader,
        relations: vec![
            FakeRelation {
                id: 3,
                endpoint: "db".into(),
                app: "pg".into(),
                units: vec!["pg/0".into(), "pg/1".into()],
                app_data: bag(&[("database", "main")]),
                unit_data: [
                    ("pg/0".to_string(), bag(&[("host", "10.0.0.1")])),
                    ("pg/1".to_string(), bag(&[("host", "10.0.0.2")])),
                ]
                .into(),
                ..Default::default()
            },
            FakeRelation {
                id: 5,
                endpoint: "cluster".into(),
                app: "app".into(),
                units: vec!["app/1".into()],
                unit_data: [("app/1".to_string(), bag(&[("ready", "false")]))].into(),
                local_app_data: bag(&[("token", "t")]),
                peer: true,
                ..Default::default()
            },
        ],
        ..Default::default()
    })
}

fn own_bag(a: &FakeAgent, endpoint: &str) -> BTreeMap<String, String> {
    a.state()
        .relation(endpoint)
        .unwrap()
        .local_unit_data
        .clone()
}

#[test]
fn relation_set_writes_this_units_bag_when_the_hook_succeeds() {
    let a = world(false);
    let (spy, tools) = Spy::new(&a);
    tools
        .relation_set("db:3", [("host", "10.1.1.1"), ("-odd", "x=y")], false)
        .unwrap();
    assert_eq!(
        spy.last(),
        (
            "relation-set".into(),
            strs(&["-r", "db:3", "--", "host=10.1.1.1", "-odd=x=y"])
        )
    );
    let expected = bag(&[("host", "10.1.1.1"), ("-odd", "x=y")]);
    assert_eq!(
        tools.relation_get("db:3", "app/0", false).unwrap(),
        expected,
        "the hook sees its own changes"
    );
    assert!(
        own_bag(&a, "db").is_empty(),
        "Juju writes them when the hook ends"
    );
    a.commit();
    assert_eq!(own_bag(&a, "db"), expected);

    tools.relation_set("db:3", [("-odd", "")], false).unwrap();
    a.commit();
    assert_eq!(
        own_bag(&a, "db"),
        bag(&[("host", "10.1.1.1")]),
        "an empty value deletes"
    );

    tools.relation_set("3", [("host", "lost")], false).unwrap();
    a.discard();
    assert_eq!(
        own_bag(&a, "db"),
        bag(&[("host", "10.1.1.1")]),
        "a failed hook writes nothing"
    );
    tools
        .relation_set("db:3", Vec::<(&str, &str)>::new(), false)
        .unwrap();
}

#[test]
fn relation_set_app_bag_needs_leadership() {
    let a = world(false);
    let tools = HookTools::new(Box::new(a.clone()));
    let e = tools
        .relation_set("db:3", [("k", "v")], true)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "relation-set failed (exit status 1): cannot write relation settings"
    );
    assert_eq!(
        call(&a, "relation-set", &["-r", "3", "--app", "k=v"]),
        run_error("cannot write relation settings")
    );

    let a = world(true);
    let (spy, tools) = Spy::new(&a);
    tools.relation_set("db:3", [("k", "v")], true).unwrap();
    assert_eq!(spy.last().1, strs(&["-r", "db:3", "--app", "--", "k=v"]));
    assert_eq!(
        tools.relation_get("db:3", "app", true).unwrap(),
        bag(&[("k", "v")]),
        "the leader reads its application's bag from the hook context"
    );
    a.commit();
    assert_eq!(
        a.state().relation("db").unwrap().local_app_data,
        bag(&[("k", "v")])
    );
}

#[test]
fn large_settings_and_keys_with_equals_go_through_a_file() {
    let a = world(false);
    let (spy, tools) = Spy::new(&a);
    let cert = "x".repeat(200 * 1024);
    tools
        .relation_set("db:3", [("cert", cert.as_str()), ("a=b", "c")], false)
        .unwrap();
    let (tool, args) = spy.last();
    assert_eq!(tool, "relation-set");
    assert_eq!(args[..3], strs(&["-r", "db:3", "--file"]));
    assert!(
        !std::path::Path::new(&args[3]).exists(),
        "the settings file is removed after the call"
    );
    a.commit();
    let data = own_bag(&a, "db");
    assert_eq!(data["cert"], cert);
    assert_eq!(data["a=b"], "c");
}

#[test]
fn relation_set_flags_arguments_and_files_as_juju() {
    let a = world(true);
    for (args, msg) in [
        (&["k=v"][..], "no relation id specified"),
        (
            &["-r", "one", "k=v"],
            "invalid value \"one\" for option -r: invalid relation id",
        ),
        (
            &["-r", "ignored:one"],
            "invalid value \"ignored:one\" for option -r: invalid relation id",
        ),
        (
            &["-r", "9"],
            "invalid value \"9\" for option -r: relation not found",
        ),
        (&["-r", "3", "haha"], "expected \"key=value\", got \"haha\""),
        (
            &["-r", "3", "=haha"],
            "expected \"key=value\", got \"=haha\"",
        ),
        (
            &["-r", "3", "a=1", "a=2"],
            "key \"a\" specified more than once",
        ),
        (
            &["-r", "3", "--bogus"],
            "option provided but not defined: --bogus",
        ),
    ] {
        assert_eq!(call(&a, "relation-set", args), usage_error(msg), "{args:?}");
    }
    assert_eq!(
        call(&a, "relation-set", &["-r", "3"]),
        printed(""),
        "no settings is valid"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("settings.yaml");
    let fs = f.to_str().unwrap();
    std::fs::write(&f, "{foo: baz, ham: eggs, n: 123, gone: }").unwrap();
    assert_eq!(
        call(&a, "relation-set", &["-r", "db:3", "--file", fs, "foo=bar"]),
        printed("")
    );
    a.commit();
    assert_eq!(
        own_bag(&a, "db"),
        bag(&[("foo", "bar"), ("ham", "eggs"), ("n", "123")]),
        "arguments override the file; an empty value deletes"
    );

    std::fs::write(&f, "foo=bar ham=eggs good=bad").unwrap();
    assert_eq!(
        call(&a, "relation-set", &["-r", "3", "--file", fs]),
        run_error(
            "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `foo=bar...` into \
             map[string]string"
        )
    );
    std::fs::write(&f, "[haha]").unwrap();
    assert_eq!(
        call(&a, "relation-set", &["-r", "3", "--file", fs]),
        run_error(
            "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!seq into map[string]string"
        )
    );
    let missing = dir.path().join("missing.yaml");
    assert_eq!(
        call(
            &a,
            "relation-set",
            &["-r", "3", "--file", missing.to_str().unwrap()]
        ),
        run_error(&format!(
            "open {}: no such file or directory",
            missing.display()
        ))
    );
    assert_eq!(
        call(&a, "relation-set", &["-r", "3", "--file", "-"]),
        run_error("hook tool requires stdin, none supplied")
    );
    assert_eq!(
        call(&a, "relation-set", &["-r", "3", "--format", "foo", "rel="]),
        (
            0,
            String::new(),
            "--format flag deprecated for command \"relation-set\"".into()
        )
    );
}

#[test]
fn relation_get_reads_remote_units_and_apps_and_refuses_the_rest() {
    let a = world(false);
    let tools = HookTools::new(Box::new(a.clone()));
    assert_eq!(tools.relation_list("db:3").unwrap(), ["pg/0", "pg/1"]);
    assert_eq!(tools.relation_remote_app("db:3").unwrap(), "pg");
    assert_eq!(
        tools.relation_get("db:3", "pg/1", false).unwrap(),
        bag(&[("host", "10.0.0.2")])
    );
    assert_eq!(
        tools.relation_get("db:3", "pg", true).unwrap(),
        bag(&[("database", "main")])
    );
    let get = |args: &[&str]| {
        let mut all = vec!["-r", "db:3"];
        all.extend(args);
        call(&a, "relation-get", &all)
    };
    assert_eq!(get(&["host", "pg/0"]), printed("10.0.0.1\n"));
    assert_eq!(get(&["--app", "database", "pg/0"]), printed("main\n"));
    assert_eq!(
        get(&["--format=json", "host", "pg/0"]),
        printed("\"10.0.0.1\"\n")
    );
    assert_eq!(get(&["--format=json", "nope", "pg/0"]), printed("null\n"));
    assert_eq!(get(&["nope", "pg/0"]), printed(""));
    assert_eq!(get(&["-", "pg/0"]), printed("host: 10.0.0.1\n"));
    assert_eq!(
        get(&["--format=yaml", "-", "pg/0"]),
        printed("host: 10.0.0.1\n")
    );

    assert_eq!(
        get(&["-", "pg"]),
        usage_error("expected unit name, got application name \"pg\"")
    );
    assert_eq!(
        get(&["-", "PG/0"]),
        usage_error("invalid unit name \"PG/0\"")
    );
    assert_eq!(get(&[]), usage_error("no unit or application specified"));
    assert_eq!(
        get(&["--app"]),
        usage_error("no unit or application specified")
    );
    assert_eq!(
        get(&["-", "pg/0", "extra"]),
        usage_error("unrecognized args: [\"extra\"]")
    );
    assert_eq!(get(&["-", "other/0"]), run_error("permission denied"));
    assert_eq!(
        get(&["--app", "-", "other"]),
        run_error("permission denied")
    );
    assert_eq!(
        get(&["--app", "-", "app"]),
        run_error("permission denied"),
        "outside a peer relation only the leader reads its application's bag"
    );
    assert_eq!(get(&["-", "app/0"]), printed("{}\n"), "its own bag");

    assert_eq!(
        call(&a, "relation-list", &["-r", "3"]),
        printed("pg/0\npg/1\n")
    );
    assert_eq!(
        call(&a, "relation-list", &["-r", "3", "--format=json"]),
        printed("[\"pg/0\",\"pg/1\"]\n")
    );
    assert_eq!(
        call(&a, "relation-list", &["-r", "3", "--format=yaml"]),
        printed("- pg/0\n- pg/1\n")
    );
    assert_eq!(
        call(&a, "relation-list", &["-r", "3", "x"]),
        usage_error("unrecognized args: [\"x\"]")
    );
}

#[test]
fn peers_read_each_other_and_the_shared_application_bag() {
    let a = world(false);
    let tools = HookTools::new(Box::new(a.clone()));
    assert_eq!(tools.relation_ids("cluster").unwrap(), ["cluster:5"]);
    assert_eq!(tools.relation_list("cluster:5").unwrap(), ["app/1"]);
    assert_eq!(
        tools.relation_remote_app("cluster:5").unwrap(),
        "app",
        "the other side of a peer relation is this application"
    );
    assert_eq!(
        tools.relation_get("cluster:5", "app/1", false).unwrap(),
        bag(&[("ready", "false")])
    );
    assert_eq!(
        tools.relation_get("cluster:5", "app", true).unwrap(),
        bag(&[("token", "t")]),
        "any peer reads the application bag"
    );
    assert_eq!(
        call(&a, "relation-set", &["-r", "5", "--app", "token=u"]),
        run_error("cannot write relation settings"),
        "only the leader writes it"
    );
    tools
        .relation_set("cluster:5", [("ready", "true")], false)
        .unwrap();
    a.commit();
    assert_eq!(own_bag(&a, "cluster"), bag(&[("ready", "true")]));
}
