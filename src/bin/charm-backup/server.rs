//! The agent side of the hook-tool socket: one call at a time, checked against the running
//! context, answered by the fake unit agent.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;
use charm_backup::testing::FakeAgent;

use crate::tool::{Request, Response};

/// A running socket server.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `path` for calls made with `context_id`.
    pub fn start(path: &Path, context_id: String, agent: FakeAgent) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(path);
        remove_stale_sockets(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut line = String::new();
                if BufReader::new(&conn).read_line(&mut line).is_err() {
                    continue;
                }
                let resp = match serde_json::from_str::<Request>(&line) {
                    Ok(req) if req.context_id != context_id => Response {
                        code: 1,
                        stderr: format!(
                            "ERROR bad request: expected context id {:?}, got {:?}\n",
                            context_id, req.context_id
                        )
                        .into_bytes(),
                        ..Default::default()
                    },
                    Ok(req) if !Path::new(&req.dir).is_absolute() => Response {
                        code: 1,
                        stderr: b"ERROR bad request: Dir is not absolute\n".to_vec(),
                        ..Default::default()
                    },
                    Ok(req) => {
                        let out = agent.call(&req.command, &req.args);
                        Response {
                            code: out.status,
                            stdout: out.stdout,
                            stderr: out.stderr,
                        }
                    }
                    Err(e) => Response {
                        code: 1,
                        stderr: format!("ERROR bad request: {e}\n").into_bytes(),
                        ..Default::default()
                    },
                };
                if let Ok(mut v) = serde_json::to_vec(&resp) {
                    v.push(b'\n');
                    let _ = conn.write_all(&v);
                }
            }
        });
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

/// Removes the sockets of runs that were killed (`agent-<pid>.socket` whose process is gone).
fn remove_stale_sockets(ours: &Path) {
    let Some(dir) = ours.parent() else { return };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("agent-"))
            .and_then(|n| n.strip_suffix(".socket"))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
