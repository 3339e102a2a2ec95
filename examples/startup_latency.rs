//! Measures the time from exec of a charm's `dispatch` binary to its first hook-tool call.
//!
//! `cargo run --release --example startup_latency -- [DISPATCH] [RUNS]` (default
//! `dist/charm/dispatch`, 51 runs). Each run starts `DISPATCH` for the `list-backups` action
//! with Juju's environment and a tools directory whose `action-get` is this program, which notes
//! the time it starts and answers `{}`; the time from just before `spawn` to that start is one
//! sample (an upper bound: it includes starting the tool itself). Prints min, median and max.

use std::process::{Command, ExitCode, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let name = charm_backup::juju::program_name();
    if name == "action-get" {
        let t = nanos();
        if let Ok(f) = std::env::var("LATENCY_FILE") {
            let _ = std::fs::write(f, t.to_string());
        }
        println!("{{\"format\":\"json\"}}");
        return ExitCode::SUCCESS;
    }
    if name != "startup_latency" && !name.starts_with("startup_latency") {
        // Any other tool: succeed quietly.
        if name == "config-get" {
            println!("{{\"local-store\":\"/nonexistent-latency-store\"}}");
        }
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dispatch = args
        .first()
        .cloned()
        .unwrap_or_else(|| "dist/charm/dispatch".into());
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(51);
    let dispatch = match std::fs::canonicalize(&dispatch) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{dispatch}: {e} (run `cargo xtask pack` first, or pass the dispatch path)");
            return ExitCode::FAILURE;
        }
    };
    let tmp = std::env::temp_dir().join(format!("startup-latency-{}", std::process::id()));
    let tools = tmp.join("tools");
    let _ = std::fs::create_dir_all(&tools);
    let me = std::env::current_exe().unwrap_or_default();
    for t in [
        "action-get",
        "action-set",
        "action-fail",
        "action-log",
        "config-get",
        "juju-log",
    ] {
        let _ = std::os::unix::fs::symlink(&me, tools.join(t));
    }
    let file = tmp.join("t");
    let mut samples = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(&file);
        let t0 = nanos();
        let status = Command::new(&dispatch)
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", tools.display()))
            .env("JUJU_DISPATCH_PATH", "actions/list-backups")
            .env("JUJU_ACTION_NAME", "list-backups")
            .env("JUJU_UNIT_NAME", "charm-backup/0")
            .env("JUJU_CHARM_DIR", tmp.display().to_string())
            .env("LATENCY_FILE", &file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if status.is_err() {
            eprintln!("cannot run {}", dispatch.display());
            return ExitCode::FAILURE;
        }
        if let Some(t1) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.parse::<u128>().ok())
        {
            samples.push((t1.saturating_sub(t0)) as f64 / 1e6);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if samples.is_empty() {
        eprintln!("the dispatch binary never called action-get");
        return ExitCode::FAILURE;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "exec of {} to its first hook-tool call (action-get running): min {:.2} ms, median {:.2} ms, max {:.2} ms over {} runs",
        dispatch.display(),
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
        samples.len()
    );
    ExitCode::SUCCESS
}
