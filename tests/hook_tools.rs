//! The hook-tool layer: key rules, flattening, how tools are invoked, and failure semantics.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "testing")]

use std::sync::{Arc, Mutex};

use charm_backup::juju::{
    Action, BoxError, Context, HookTools, JujuContext, MAX_ARG_BYTES, ToolOutput, ToolRunner,
    check_result_key, flatten_results,
};
use charm_backup::testing::{FakeAgent, Harness, UnitState, action};
use serde_json::json;

#[test]
fn every_key_rule_and_reserved_key() {
    for ok in [
        "a",
        "a1",
        "snapshot.path",
        "copy.cmd",
        "backup-id",
        "a.b.c",
        "0",
        "x-y-z.1",
    ] {
        assert!(check_result_key(ok).is_ok(), "{ok} should pass");
    }
    let rule = "must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric and hyphens";
    for bad in [
        "",
        "A",
        "result-Value",
        "-a",
        "a-",
        "a_b",
        "a..b",
        ".a",
        "a.",
        "a b",
        "é",
        "a.-b",
    ] {
        let e = check_result_key(bad).unwrap_err().to_string();
        assert_eq!(e, format!("key {bad:?} {rule}"));
    }
    for reserved in ["stdout", "stdout-encoding", "stderr", "stderr-encoding"] {
        assert_eq!(
            check_result_key(reserved).unwrap_err().to_string(),
            format!("cannot set reserved action key {reserved:?}")
        );
        assert!(
            check_result_key(&format!("a.{reserved}")).is_err(),
            "reserved in any segment"
        );
    }
    assert!(
        check_result_key("return-code").is_ok(),
        "return-code is not reserved, Juju overwrites it"
    );
}

#[test]
fn flattening_and_merging() {
    let flat = flatten_results(&json!({"snapshot": {"path": "/p", "bytes": 5, "ok": true}, "list": ["a", {"b": 1}], "none": null})).unwrap();
    assert_eq!(
        flat,
        vec![
            ("list.0".to_string(), "a".to_string()),
            ("list.1.b".into(), "1".into()),
            ("snapshot.bytes".into(), "5".into()),
            ("snapshot.ok".into(), "true".into()),
            ("snapshot.path".into(), "/p".into()),
        ]
    );
    let dup = flatten_results(&json!({"a": {"b": 1}, "a.b": 2}))
        .unwrap_err()
        .to_string();
    assert!(dup.contains("duplicate key \"a.b\""), "{dup}");
    assert!(flatten_results(&json!({"Bad": 1})).is_err());
    assert!(flatten_results(&json!("scalar")).is_err());

    // Juju's merge: later wins, a map replaces a scalar and the other way round.
    let agent = FakeAgent::new(UnitState {
        params: Some(json!({})),
        ..Default::default()
    });
    let tools = HookTools::new(Box::new(agent.clone()));
    tools.action_set(&[("a".into(), "1".into())]).unwrap();
    tools
        .action_set(&[("a.b".into(), "2".into()), ("m.k".into(), "v".into())])
        .unwrap();
    tools.action_set(&[("m".into(), "flat".into())]).unwrap();
    assert_eq!(
        serde_json::Value::Object(agent.state().results),
        json!({"a": {"b": "2"}, "m": "flat"})
    );
}

/// Records every call and answers success with canned stdout.
type Calls = Arc<Mutex<Vec<(String, Vec<String>)>>>;

#[derive(Clone, Default)]
struct Recorder(Calls);

impl ToolRunner for Recorder {
    fn invoke(&self, tool: &str, args: &[String]) -> charm_backup::Result<ToolOutput> {
        self.0
            .lock()
            .unwrap()
            .push((tool.to_string(), args.to_vec()));
        let stdout = match tool {
            "action-get" | "config-get" => b"{}\n".to_vec(),
            "is-leader" => b"true\n".to_vec(),
            "relation-ids" => b"[]\n".to_vec(),
            _ => Vec::new(),
        };
        Ok(ToolOutput {
            status: 0,
            stdout,
            stderr: Vec::new(),
        })
    }
}

#[test]
fn tools_are_invoked_the_way_juju_expects() {
    let rec = Recorder::default();
    let tools = HookTools::new(Box::new(rec.clone()));
    tools.action_get().unwrap();
    tools.action_log("-starts with a dash").unwrap();
    tools.action_fail("--also").unwrap();
    tools
        .juju_log(charm_backup::juju::LogLevel::Warning, "w")
        .unwrap();
    tools
        .status_set(&charm_backup::juju::Status::Blocked("-x".into()), false)
        .unwrap();
    tools.config_get().unwrap();
    assert!(tools.is_leader().unwrap());
    tools.relation_ids("s3-parameters").unwrap();
    let calls = rec.0.lock().unwrap().clone();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(calls[0], ("action-get".into(), s(&["--format=json"])));
    assert_eq!(
        calls[1],
        ("action-log".into(), s(&["--", "-starts with a dash"]))
    );
    assert_eq!(calls[2], ("action-fail".into(), s(&["--", "--also"])));
    assert_eq!(
        calls[3],
        ("juju-log".into(), s(&["--log-level", "WARNING", "--", "w"]))
    );
    assert_eq!(calls[4], ("status-set".into(), s(&["blocked", "--", "-x"])));
    assert_eq!(calls[5], ("config-get".into(), s(&["--format=json"])));
    assert_eq!(calls[6], ("is-leader".into(), s(&["--format=json"])));
    assert_eq!(
        calls[7],
        (
            "relation-ids".into(),
            s(&["--format=json", "s3-parameters"])
        )
    );
}

#[test]
fn results_too_long_for_the_os_are_refused_and_big_sets_are_batched() {
    let rec = Recorder::default();
    let tools = HookTools::new(Box::new(rec.clone()));
    let e = tools
        .action_set(&[("big".into(), "x".repeat(MAX_ARG_BYTES))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("over the 131071-byte limit"), "{e}");
    assert!(
        rec.0.lock().unwrap().is_empty(),
        "nothing is sent when one result is too long"
    );
    let many: Vec<(String, String)> = (0..100)
        .map(|i| (format!("k{i}"), "v".repeat(2000)))
        .collect();
    tools.action_set(&many).unwrap();
    let calls = rec.0.lock().unwrap();
    assert!(
        calls.len() > 1,
        "a 200 KB result set takes several action-set calls"
    );
    assert_eq!(calls.iter().map(|c| c.1.len()).sum::<usize>(), 100);
}

struct Panics;
impl Action for Panics {
    const NAME: &'static str = "snapshot";
    type Params = serde_json::Value;
    type Results = serde_json::Value;
    fn run(&self, ctx: &mut Context, _: Self::Params) -> Result<Self::Results, BoxError> {
        ctx.set_result(json!({"partial": "kept"}))?;
        let v: Vec<u8> = Vec::new();
        let _ = v[3];
        Ok(json!({}))
    }
}

struct FailsWithChain;
impl Action for FailsWithChain {
    const NAME: &'static str = "snapshot";
    type Params = serde_json::Value;
    type Results = serde_json::Value;
    fn run(&self, _: &mut Context, _: Self::Params) -> Result<Self::Results, BoxError> {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied by the OS");
        Err(
            charm_backup::Error::io("cannot open the data", std::path::Path::new("/srv/x"), io)
                .into(),
        )
    }
}

fn harness() -> Harness {
    Harness::from_charm_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn a_panic_becomes_action_fail_with_its_message_and_partial_results_stay() {
    let failed = harness().run(action("snapshot"), &Panics).unwrap_err();
    assert!(failed.scheduled);
    assert!(
        failed
            .message
            .starts_with("internal error: the handler panicked at tests/hook_tools.rs:"),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("index out of bounds"),
        "{}",
        failed.message
    );
    assert_eq!(failed.results["partial"], "kept");
}

#[test]
fn an_error_fails_the_action_with_its_whole_chain() {
    let failed = harness()
        .run(action("snapshot"), &FailsWithChain)
        .unwrap_err();
    assert_eq!(
        failed.message,
        "cannot open the data: /srv/x: denied by the OS"
    );
}

#[test]
fn a_missing_hook_tool_is_a_clear_error() {
    // The real client, with a PATH that holds no hook tools.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dispatch"))
        .env_clear()
        .env("PATH", dir.path())
        .env("JUJU_DISPATCH_PATH", "actions/snapshot")
        .env("JUJU_ACTION_NAME", "snapshot")
        .env("JUJU_UNIT_NAME", "charm-backup/0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hook tool action-get not found on PATH"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot report the failure to Juju"),
        "{stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "without action-fail the only way to fail is the exit status"
    );
    let ctx = JujuContext::from_vars(Vec::new());
    assert!(
        ctx.event("dispatch").is_err(),
        "no event without JUJU_DISPATCH_PATH"
    );
}

// The tools that write settings and ports, each through the real client against the fake
// agent, and straight through the fake for the flags, formats and errors the client never
// sends.
#[path = "hook_tools/ports.rs"]
mod ports;
#[path = "hook_tools/relations.rs"]
mod relations;
#[path = "hook_tools/settings.rs"]
mod settings;

/// Runs one tool on the fake agent directly: exit status, stdout, stderr.
fn call(a: &FakeAgent, tool: &str, args: &[&str]) -> (i32, String, String) {
    a.call_text(tool, args)
}

/// A run error (exit 1) as Juju prints it.
fn run_error(msg: &str) -> (i32, String, String) {
    (1, String::new(), format!("ERROR {msg}\n"))
}

/// A usage error (exit 2) as Juju prints it.
fn usage_error(msg: &str) -> (i32, String, String) {
    (2, String::new(), format!("ERROR {msg}\n"))
}

/// Success with this stdout.
fn printed(out: &str) -> (i32, String, String) {
    (0, out.to_string(), String::new())
}

/// Forwards every call to a fake agent and keeps its arguments.
#[derive(Clone)]
struct Spy {
    agent: FakeAgent,
    calls: Calls,
}

impl Spy {
    fn new(agent: &FakeAgent) -> (Spy, HookTools) {
        let spy = Spy {
            agent: agent.clone(),
            calls: Calls::default(),
        };
        (spy.clone(), HookTools::new(Box::new(spy)))
    }

    /// The last call: tool and arguments.
    fn last(&self) -> (String, Vec<String>) {
        self.calls.lock().unwrap().last().cloned().unwrap()
    }
}

impl ToolRunner for Spy {
    fn invoke(&self, tool: &str, args: &[String]) -> charm_backup::Result<ToolOutput> {
        self.calls
            .lock()
            .unwrap()
            .push((tool.to_string(), args.to_vec()));
        self.agent.invoke(tool, args)
    }
}

/// Argument lists from string literals.
fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
