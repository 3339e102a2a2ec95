//! Runs a charm executable the way Juju's uniter does: a clean environment holding only what
//! Juju sets, the charm directory as working directory, the tools directory first on `PATH`,
//! and stdout and stderr captured and normalised line by line.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How the process ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit code, or -1 when a signal killed it or it never started.
    pub code: i32,
    /// Juju's message for a process error (`exit status N`, `terminated`, `fork/exec ...`).
    pub error: Option<String>,
    /// Captured stdout, normalised.
    pub stdout: Vec<u8>,
    /// Captured stderr, normalised.
    pub stderr: Vec<u8>,
}

/// CRLF to LF, and a trailing newline on a non-empty last line, as Juju's line reader does.
fn normalise(raw: &[u8]) -> Vec<u8> {
    if raw.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    for line in raw.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    // split yields a final empty piece after a trailing newline: drop its newline.
    if raw.ends_with(b"\n") {
        out.pop();
    }
    out
}

/// Finds what Juju would run for `kind/name` (`actions/snapshot`): `dispatch` if present
/// (and it must then be executable), else the explicit file.
pub fn discover(charm: &Path, kind: &str, name: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let dispatch = charm.join("dispatch");
    match std::fs::metadata(&dispatch) {
        Ok(m) if m.permissions().mode() & 0o111 != 0 && m.is_file() => return Ok(dispatch),
        Ok(_) => {
            return Err(format!(
                "exec: {:?}: permission denied",
                dispatch.display().to_string()
            ));
        }
        Err(_) => {}
    }
    let explicit = charm.join(kind).join(name);
    if explicit.exists() {
        Ok(explicit)
    } else {
        Err("missing".into())
    }
}

/// Runs `exe` with exactly `env`, in `dir`.
pub fn run(exe: &Path, dir: &Path, env: &[(String, String)]) -> Finished {
    let child = Command::new(exe)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Finished {
                code: -1,
                error: Some(format!("fork/exec {}: {e}", exe.display())),
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
        }
    };
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut b);
        }
        b
    });
    let mut stdout = Vec::new();
    if let Some(o) = out.as_mut() {
        let _ = o.read_to_end(&mut stdout);
    }
    let stderr = t.join().unwrap_or_default();
    let status = child.wait();
    let (code, error) = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(0), _) => (0, None),
            (Some(c), _) => (c, Some(format!("exit status {c}"))),
            (None, Some(_)) => (-1, Some("terminated".to_string())),
            (None, None) => (-1, Some("terminated".to_string())),
        },
        Err(e) => (-1, Some(e.to_string())),
    };
    Finished {
        code,
        error,
        stdout: normalise(&stdout),
        stderr: normalise(&stderr),
    }
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn output_is_normalised_like_juju() {
        assert_eq!(normalise(b"a\r\nb"), b"a\nb\n");
        assert_eq!(normalise(b"a\n"), b"a\n");
        assert_eq!(normalise(b""), b"");
    }
}
