//! `charm-backup`: a local stand-in for the Juju unit agent. It runs the charm's actions and
//! hooks on this machine as `juju run` would on a unit: params checked against `actions.yaml`
//! and defaulted, Juju's clean environment, real hook-tool executables served over the unit's
//! socket, and the outcome printed as `juju run` / `juju show-task` print it.
//!
//! The same binary is each hook tool: run under the name `action-get` (a link in the unit's
//! tools directory) it sends the call to the agent, as Juju's `jujuc` does.

mod exec;
mod render;
mod server;
mod tool;
mod unit;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value};

use charm_backup::testing::{
    ActionSpecs, ConfigSpec, FakeAgent, FakeRelation, UnitState, parse_cli_params,
};
use unit::{Persisted, Unit};

#[derive(Parser)]
#[command(
    name = "charm-backup",
    version,
    about = "Run the charm-backup charm's actions and hooks on this machine, as a Juju unit agent would",
    after_help = "Examples:\n  charm-backup run snapshot                      # snapshot the demo data\n  charm-backup config paths=\"/etc/app /srv/app\"   # point it at your own data\n  charm-backup run snapshot target=/tmp/snaps\n  charm-backup run list-backups --format yaml\n  charm-backup hook config-changed"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Plain,
    Yaml,
    Json,
}

#[derive(Args, Clone)]
struct UnitArgs {
    /// The charm directory to run (default: the charm built with this program).
    #[arg(long, value_name = "DIR")]
    charm: Option<PathBuf>,
    /// Where the local unit keeps its state, config, tasks and demo data
    /// [default: $XDG_STATE_HOME or ~/.local/state, /charm-backup-agent].
    #[arg(long, value_name = "DIR", env = "CHARM_BACKUP_AGENT_DIR")]
    agent_dir: Option<PathBuf>,
    /// The unit's name.
    #[arg(long, default_value = "charm-backup/0")]
    unit: String,
    /// The principal unit this subordinate is attached to.
    #[arg(long, default_value = "ubuntu/0")]
    principal: String,
}

#[derive(Args, Clone)]
struct WorldArgs {
    /// Config for this run only (repeatable), over the persisted config.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Remote application data on a relation (repeatable), e.g. s3-parameters:bucket=backups.
    #[arg(long = "relation", value_name = "ENDPOINT:KEY=VALUE")]
    relation: Vec<String>,
    /// An attached file resource (repeatable), e.g. snapshot=./snap.tar.gz.
    #[arg(long = "resource", value_name = "NAME=PATH")]
    resource: Vec<String>,
    /// A secret granted to the unit (repeatable), e.g.
    /// secret:d4j5kq1uqu5c7ffmbvt0:password=s3cr3t.
    #[arg(long = "secret", value_name = "URI:KEY=VALUE")]
    secret: Vec<String>,
    /// Run as a unit that is not the leader.
    #[arg(long)]
    not_leader: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an action, like `juju run <unit> ACTION key=value ...`.
    Run {
        #[command(flatten)]
        unit: UnitArgs,
        #[command(flatten)]
        world: WorldArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "plain")]
        format: Format,
        /// Print times in UTC.
        #[arg(long)]
        utc: bool,
        /// Pass param values as strings instead of parsing them as YAML.
        #[arg(long)]
        string_args: bool,
        /// The action.
        action: String,
        /// Params as key=value (dotted keys set nested params).
        params: Vec<String>,
    },
    /// Run a hook and print the unit status it leaves.
    Hook {
        #[command(flatten)]
        unit: UnitArgs,
        #[command(flatten)]
        world: WorldArgs,
        /// The hook, e.g. install or config-changed.
        hook: String,
    },
    /// Show the config, or set it like `juju config` (persists between runs).
    Config {
        #[command(flatten)]
        unit: UnitArgs,
        /// Options to reset to their defaults.
        #[arg(long, value_name = "KEY")]
        reset: Vec<String>,
        /// Options to set, as key=value.
        settings: Vec<String>,
    },
    /// Show a task, like `juju show-task`.
    ShowTask {
        #[command(flatten)]
        unit: UnitArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "plain")]
        format: Format,
        /// The task id.
        id: u64,
    },
    /// Show the unit's workload status.
    Status {
        #[command(flatten)]
        unit: UnitArgs,
    },
}

fn main() -> ExitCode {
    let name = charm_backup::juju::program_name();
    if tool::TOOLS.contains(&name.as_str()) {
        return tool::main(&name);
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ERROR {e:#}");
            ExitCode::from(1)
        }
    }
}

fn agent_dir(args: &UnitArgs) -> PathBuf {
    if let Some(d) = &args.agent_dir {
        return d.clone();
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(x) = env("XDG_STATE_HOME") {
        return x.join("charm-backup-agent");
    }
    if let Some(h) = env("HOME") {
        return h.join(".local/state/charm-backup-agent");
    }
    std::env::temp_dir().join("charm-backup-agent")
}

/// The local unit with its charm files parsed.
struct Local {
    unit: Unit,
    actions: ActionSpecs,
    config: ConfigSpec,
    metadata: Value,
    persisted: Persisted,
}

fn open_local(args: &UnitArgs) -> anyhow::Result<Local> {
    let root = agent_dir(args);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let root = std::fs::canonicalize(&root)?;
    let unit = Unit::prepare(&root, &args.unit, args.charm.as_deref())?;
    let read = |f: &str| {
        std::fs::read_to_string(unit.charm.join(f))
            .with_context(|| format!("cannot read {f} in {}", unit.charm.display()))
    };
    let actions = ActionSpecs::parse(&read("actions.yaml")?)?;
    let config = ConfigSpec::parse(&read("config.yaml")?)?;
    let metadata: Value = serde_norway::from_str(&read("metadata.yaml")?)
        .context("metadata.yaml is not valid YAML")?;
    let mut persisted = unit.load()?;
    if persisted.last_id == 0 && persisted.config.is_empty() && args.charm.is_none() {
        // First run on the built charm: point it at demo data so actions work out of the box.
        let demo = root.join("demo/data");
        make_demo(&demo)?;
        persisted
            .config
            .insert("paths".into(), demo.display().to_string().into());
        persisted.config.insert(
            "local-store".into(),
            root.join("backups").display().to_string().into(),
        );
        unit.save(&persisted)?;
    }
    Ok(Local {
        unit,
        actions,
        config,
        metadata,
        persisted,
    })
}

fn make_demo(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("etc"))?;
    std::fs::create_dir_all(dir.join("lib/state"))?;
    std::fs::create_dir_all(dir.join("cache-empty"))?;
    std::fs::write(
        dir.join("README.txt"),
        "Demo data of the local charm-backup unit.\nPoint the unit at your own data with: charm-backup config paths=\"/your/dir\"\n",
    )?;
    std::fs::write(
        dir.join("etc/app.conf"),
        "listen = 127.0.0.1:8080\nworkers = 4\n",
    )?;
    let mut db = Vec::with_capacity(1 << 20);
    for i in 0u32..(1 << 16) {
        db.extend_from_slice(
            format!("row {i:08} value {}\n", i.wrapping_mul(2654435761)).as_bytes(),
        );
    }
    std::fs::write(dir.join("lib/state/data.db"), db)?;
    std::os::unix::fs::symlink("etc/app.conf", dir.join("current.conf"))?;
    Ok(())
}

fn kv(s: &str) -> anyhow::Result<(&str, &str)> {
    s.split_once('=')
        .ok_or_else(|| anyhow!("{s:?} must be KEY=VALUE"))
}

/// The unit state for one run: persisted config, this run's config, relations, resources.
fn world(local: &Local, w: &WorldArgs) -> anyhow::Result<UnitState> {
    let mut config = local.config.defaults();
    for (k, v) in &local.persisted.config {
        config.insert(k.clone(), v.clone());
    }
    for c in &w.config {
        let (k, v) = kv(c)?;
        config.insert(k.to_string(), local.config.coerce(k, v)?);
    }
    let mut relations: BTreeMap<String, FakeRelation> = BTreeMap::new();
    for r in &w.relation {
        let (endpoint, rest) = r
            .split_once(':')
            .ok_or_else(|| anyhow!("--relation {r:?} must be ENDPOINT:KEY=VALUE"))?;
        let (k, v) = kv(rest)?;
        let interface = local.metadata["requires"][endpoint]["interface"]
            .as_str()
            .ok_or_else(|| anyhow!("the charm has no relation endpoint {endpoint:?}"))?;
        let n = relations.len() as u32 + 1;
        let rel = relations.entry(endpoint.to_string()).or_insert_with(|| {
            let app = format!("{interface}-integrator");
            FakeRelation {
                id: n,
                endpoint: endpoint.to_string(),
                units: vec![format!("{app}/0")],
                app,
                ..Default::default()
            }
        });
        rel.app_data.insert(k.to_string(), v.to_string());
    }
    let mut resources = BTreeMap::new();
    for r in &w.resource {
        let (name, path) = kv(r)?;
        if local.metadata["resources"][name].is_null() {
            bail!("the charm declares no resource {name:?}");
        }
        let p = std::fs::canonicalize(path).with_context(|| format!("resource file {path}"))?;
        resources.insert(name.to_string(), p);
    }
    let mut secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in &w.secret {
        let (uri_key, value) = kv(s)?;
        let Some((uri, key)) = uri_key.rsplit_once(':') else {
            bail!(
                "--secret {s:?}: expected URI:KEY=VALUE, e.g. secret:d4j5kq1uqu5c7ffmbvt0:password=x"
            );
        };
        secrets
            .entry(uri.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }
    Ok(UnitState {
        unit: local.unit.name.clone(),
        config,
        leader: !w.not_leader,
        relations: relations.into_values().collect(),
        resources,
        secrets,
        status: local.persisted.status.clone(),
        ..Default::default()
    })
}

/// Juju's environment for a hook or action.
fn environment(
    local: &Local,
    principal: &str,
    context_id: &str,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let charm = local.unit.charm.display().to_string();
    let agent_path =
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let subordinate = local.metadata["subordinate"].as_bool().unwrap_or(false);
    let mut env: Vec<(String, String)> = vec![
        ("CHARM_DIR".into(), charm.clone()),
        ("JUJU_CHARM_DIR".into(), charm),
        ("JUJU_CONTEXT_ID".into(), context_id.into()),
        ("JUJU_HOOK_NAME".into(), String::new()),
        (
            "JUJU_AGENT_SOCKET_ADDRESS".into(),
            local.unit.socket().display().to_string(),
        ),
        ("JUJU_AGENT_SOCKET_NETWORK".into(), "unix".into()),
        ("JUJU_UNIT_NAME".into(), local.unit.name.clone()),
        (
            "JUJU_MODEL_UUID".into(),
            "6f2a4e1c-5b3d-4c7e-9a8f-0d1e2f3a4b5c".into(),
        ),
        ("JUJU_MODEL_NAME".into(), "local".into()),
        ("JUJU_API_ADDRESSES".into(), "127.0.0.1:17070".into()),
        ("JUJU_SLA".into(), "unsupported".into()),
        ("JUJU_MACHINE_ID".into(), "0".into()),
        (
            "JUJU_PRINCIPAL_UNIT".into(),
            if subordinate {
                principal.into()
            } else {
                String::new()
            },
        ),
        ("JUJU_AVAILABILITY_ZONE".into(), String::new()),
        ("JUJU_VERSION".into(), "3.6.1".into()),
        ("CLOUD_API_VERSION".into(), String::new()),
        ("JUJU_CHARM_HTTP_PROXY".into(), String::new()),
        ("JUJU_CHARM_HTTPS_PROXY".into(), String::new()),
        ("JUJU_CHARM_FTP_PROXY".into(), String::new()),
        ("JUJU_CHARM_NO_PROXY".into(), String::new()),
    ];
    for (k, v) in extra {
        if let Some(e) = env.iter_mut().find(|(ek, _)| ek == k) {
            e.1 = v.clone();
        } else {
            env.push((k.to_string(), v.clone()));
        }
    }
    env.extend([
        ("APT_LISTCHANGES_FRONTEND".into(), "none".into()),
        ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "tmux-256color".into()),
        (
            "PATH".into(),
            format!("{}:{agent_path}", local.unit.tools.display()),
        ),
    ]);
    env
}

fn context_id(unit: &str, name: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 & (i64::MAX as u64))
        .unwrap_or(0);
    format!("{unit}-{name}-{n}")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Run {
            unit,
            world: w,
            format,
            utc,
            string_args,
            action,
            params,
        } => run_action(&unit, &w, format, utc, string_args, &action, &params),
        Cmd::Hook {
            unit,
            world: w,
            hook,
        } => run_hook(&unit, &w, &hook),
        Cmd::Config {
            unit,
            reset,
            settings,
        } => {
            let mut local = open_local(&unit)?;
            for k in &reset {
                local.persisted.config.remove(k);
            }
            for s in &settings {
                let (k, v) = kv(s)?;
                let v = local.config.coerce(k, v)?;
                local.persisted.config.insert(k.to_string(), v);
            }
            local.unit.save(&local.persisted)?;
            let mut all = local.config.defaults();
            all.extend(local.persisted.config.clone());
            print!(
                "{}",
                charm_backup::testing::jujuc::yaml(&Value::Object(all))
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ShowTask { unit, format, id } => {
            let local = open_local(&unit)?;
            let f = local.unit.task_file(id);
            let b = std::fs::read(&f).map_err(|_| anyhow!("task {id} not found"))?;
            let task: Value = serde_json::from_slice(&b)?;
            print_task(&task, format);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { unit } => {
            let local = open_local(&unit)?;
            let (s, m) = &local.persisted.status;
            println!("{}  {s}  {m}", local.unit.name);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_task(task: &Value, format: Format) {
    match format {
        Format::Plain => print!("{}", render::plain(task)),
        Format::Yaml => print!("{}", charm_backup::testing::jujuc::yaml(task)),
        Format::Json => println!("{}", serde_json::to_string(task).unwrap_or_default()),
    }
}

fn run_action(
    args: &UnitArgs,
    w: &WorldArgs,
    format: Format,
    utc: bool,
    string_args: bool,
    action: &str,
    params: &[String],
) -> anyhow::Result<ExitCode> {
    if !charm_backup::juju::is_valid_name(action) {
        bail!("invalid unit or action name {action:?}");
    }
    let params = parse_cli_params(params, string_args)?;
    let mut local = open_local(args)?;
    let (op, task_id) = local.unit.next_ids(&mut local.persisted)?;
    let params = match local.actions.prepare(&local.unit.name, action, &params) {
        Ok(p) => p,
        Err(e) => {
            // Juju 3 does not create a task and `juju run` exits 0.
            eprintln!("Operation {op} failed to schedule any tasks:\n{e}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let tag = format!("unit-{}", local.unit.name.replace('/', "-"));
    eprintln!(
        "Running operation {op} with 1 task\n  - task {task_id} on {tag}\n\nWaiting for task {task_id}..."
    );
    let mut state = world(&local, w)?;
    state.params = Some(params);
    let agent = FakeAgent::new(state).with_log_sink(move |line| {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{} {}", render::clock(line.time, utc), line.message);
    });
    let enqueued = jiff::Timestamp::now();
    let cid = context_id(&local.unit.name, action);
    let server = server::Server::start(&local.unit.socket(), cid.clone(), agent.clone())?;
    let env = environment(
        &local,
        &args.principal,
        &cid,
        &[
            ("JUJU_ACTION_NAME", action.to_string()),
            ("JUJU_ACTION_UUID", task_id.to_string()),
            ("JUJU_ACTION_TAG", format!("action-{task_id}")),
            ("JUJU_DISPATCH_PATH", format!("actions/{action}")),
        ],
    );
    let started = jiff::Timestamp::now();
    let finished = match exec::discover(&local.unit.charm, "actions", action) {
        Ok(exe) => Some(exec::run(&exe, &local.unit.charm, &env)),
        Err(e) if e == "missing" => None,
        Err(e) => Some(exec::Finished {
            code: -1,
            error: Some(e),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }),
    };
    drop(server);
    // As Juju: what the hook tools hold back (relation data, stored state, ports) is applied
    // only when the process exits 0.
    match &finished {
        Some(f) if f.code == 0 => agent.commit(),
        _ => agent.discard(),
    }
    let completed = jiff::Timestamp::now();
    let st = agent.state();
    let mut results = st.results.clone();
    let (status, message) = match &finished {
        None => (
            "failed".to_string(),
            format!("action not implemented on unit {:?}", local.unit.name),
        ),
        Some(f) => {
            add_run_output(&mut results, f);
            match &f.error {
                Some(err) => ("failed".into(), err.clone()),
                None if st.failed => ("failed".into(), st.fail_message.clone()),
                None => ("completed".into(), String::new()),
            }
        }
    };
    let log: Vec<String> = st
        .logs
        .iter()
        .map(|l| format!("{} {}", render::go_time(l.time, utc), l.message))
        .collect();
    let task = render::task(
        task_id,
        &local.unit.name,
        &status,
        &message,
        &results,
        &log,
        [enqueued, started, completed],
        utc,
    );
    if let Some(parent) = local.unit.task_file(task_id).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        local.unit.task_file(task_id),
        serde_json::to_vec_pretty(&task)?,
    )?;
    local.persisted.status = st.status.clone();
    local.unit.save(&local.persisted)?;
    match format {
        Format::Plain => print!("{}", render::plain(&task)),
        _ => {
            let keyed = Value::Object(Map::from_iter([(local.unit.name.clone(), task.clone())]));
            print_task(&keyed, format);
        }
    }
    let code = finished.as_ref().map_or(-1, |f| f.code);
    if code >= 1 {
        eprintln!(
            "ERROR the following task failed:\n - id {:?} with return code {code}\n\nuse 'juju show-task' to inspect the failure",
            task_id.to_string()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn add_run_output(results: &mut Map<String, Value>, f: &exec::Finished) {
    results.insert("return-code".into(), Value::from(f.code));
    render::add_output(results, "stdout", &f.stdout);
    render::add_output(results, "stderr", &f.stderr);
}

fn run_hook(args: &UnitArgs, w: &WorldArgs, hook: &str) -> anyhow::Result<ExitCode> {
    let mut local = open_local(args)?;
    let state = world(&local, w)?;
    let mut extra = vec![
        ("JUJU_HOOK_NAME", hook.to_string()),
        ("JUJU_DISPATCH_PATH", format!("hooks/{hook}")),
    ];
    if let Some((endpoint, _)) = hook.split_once("-relation-")
        && let Some(rel) = state.relations.iter().find(|r| r.endpoint == endpoint)
    {
        extra.push(("JUJU_RELATION", endpoint.to_string()));
        extra.push(("JUJU_RELATION_ID", rel.key()));
        extra.push(("JUJU_REMOTE_APP", rel.app.clone()));
        if !hook.ends_with("-broken") {
            extra.push(("JUJU_REMOTE_UNIT", format!("{}/0", rel.app)));
        }
    }
    let agent = FakeAgent::new(state);
    let cid = context_id(&local.unit.name, hook);
    let server = server::Server::start(&local.unit.socket(), cid.clone(), agent.clone())?;
    let env = environment(&local, &args.principal, &cid, &extra);
    let finished = match exec::discover(&local.unit.charm, "hooks", hook) {
        Ok(exe) => exec::run(&exe, &local.unit.charm, &env),
        Err(e) if e == "missing" => {
            drop(server);
            println!("hook {hook}: not implemented by the charm (skipped, as Juju does)");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => exec::Finished {
            code: -1,
            error: Some(e),
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
    };
    drop(server);
    if finished.code == 0 {
        agent.commit();
    } else {
        agent.discard();
    }
    let st = agent.state();
    local.persisted.status = st.status.clone();
    local.unit.save(&local.persisted)?;
    std::io::stderr().write_all(&finished.stderr)?;
    for l in &st.juju_logs {
        eprintln!("juju-log: {l}");
    }
    match &finished.error {
        None => {
            println!("{}: {}  {}", local.unit.name, st.status.0, st.status.1);
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            println!("{}: error  hook failed: {hook:?} ({e})", local.unit.name);
            Ok(ExitCode::from(1))
        }
    }
}
