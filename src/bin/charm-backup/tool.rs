//! Hook-tool mode: when this binary runs as `action-get`, `action-set`, ..., it sends the call
//! to the agent over the unit's socket, as Juju's `jujuc` does, and prints the answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

/// The hook tools the local agent serves.
pub const TOOLS: [&str; 13] = [
    "action-get",
    "action-set",
    "action-fail",
    "action-log",
    "status-set",
    "juju-log",
    "config-get",
    "is-leader",
    "relation-ids",
    "relation-list",
    "relation-get",
    "resource-get",
    "secret-get",
];

/// One call, as the tool sends it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// `JUJU_CONTEXT_ID` of the caller.
    pub context_id: String,
    /// The caller's working directory.
    pub dir: String,
    /// The tool's name.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// The answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Response {
    /// Exit status.
    pub code: i32,
    /// Standard output bytes.
    pub stdout: Vec<u8>,
    /// Standard error bytes.
    pub stderr: Vec<u8>,
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ERROR {msg}");
    ExitCode::from(1)
}

/// Runs as the tool `name`.
pub fn main(name: &str) -> ExitCode {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(context_id) = get("JUJU_CONTEXT_ID") else {
        return fail("JUJU_CONTEXT_ID not set");
    };
    let Some(addr) = get("JUJU_AGENT_SOCKET_ADDRESS") else {
        return fail("JUJU_AGENT_SOCKET_ADDRESS not set");
    };
    if get("JUJU_AGENT_SOCKET_NETWORK").as_deref() != Some("unix") {
        return fail("JUJU_AGENT_SOCKET_NETWORK not set");
    }
    let dir = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let req = Request {
        context_id,
        dir,
        command: name.to_string(),
        args: std::env::args().skip(1).collect(),
    };
    let resp = (|| -> std::io::Result<Response> {
        let mut s = UnixStream::connect(&addr)?;
        let mut line = serde_json::to_vec(&req)?;
        line.push(b'\n');
        s.write_all(&line)?;
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer)?;
        Ok(serde_json::from_str(&answer)?)
    })();
    match resp {
        Ok(r) => {
            let _ = std::io::stdout().write_all(&r.stdout);
            let _ = std::io::stderr().write_all(&r.stderr);
            ExitCode::from(r.code.clamp(0, 255) as u8)
        }
        Err(e) => fail(&format!("cannot reach the unit agent at {addr}: {e}")),
    }
}
