//! Running a source's command: arguments and environment only (never secrets in argv), stdout
//! and stderr read concurrently, a non-zero exit turned into an error carrying stderr.

use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};

/// Why a program could not be started: not installed, or something else.
fn start_err(program: &str, what: &str, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::new(
            ErrorKind::NotFound,
            format!("{program} is not installed; it is needed to {what}"),
        ),
        _ => Error::new(ErrorKind::SourceFailed, format!("cannot run {program}")).with_source(e),
    }
}

/// Runs `cmd` to completion and returns its stdout.
///
/// # Errors
/// [`ErrorKind::NotFound`] when the program is not installed; [`ErrorKind::SourceFailed`] with
/// its stderr when it exits non-zero.
pub fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| start_err(&program, what, e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::new(
            ErrorKind::SourceFailed,
            format!(
                "{program} failed to {what} ({}): {}",
                out.status,
                stderr.trim()
            ),
        ));
    }
    Ok(out.stdout)
}

/// A command running with its stdin or stdout piped to us (a dump streaming out, or a restore
/// tool being fed) and its stderr collected on a thread, so neither side can block the other.
#[derive(Debug)]
pub struct Piped {
    child: std::process::Child,
    program: String,
    what: String,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// The command's stdout, when it was spawned with [`Piped::reading`].
    pub stdout: Option<std::process::ChildStdout>,
    /// The command's stdin, when it was spawned with [`Piped::writing`].
    pub stdin: Option<std::process::ChildStdin>,
}

/// Most stderr kept from a piped command (its tail is what explains a failure).
const STDERR_KEEP: usize = 64 * 1024;

impl Piped {
    /// Starts `cmd` with its stdout piped to us.
    ///
    /// # Errors
    /// As [`run`], when the program cannot be started.
    pub fn reading(cmd: &mut Command, what: &str) -> Result<Self> {
        Self::spawn(cmd.stdin(Stdio::null()).stdout(Stdio::piped()), what)
    }

    /// Starts `cmd` with its stdin piped from us (its stdout is discarded).
    ///
    /// # Errors
    /// As [`run`], when the program cannot be started.
    pub fn writing(cmd: &mut Command, what: &str) -> Result<Self> {
        Self::spawn(cmd.stdin(Stdio::piped()).stdout(Stdio::null()), what)
    }

    fn spawn(cmd: &mut Command, what: &str) -> Result<Self> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| start_err(&program, what, e))?;
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_KEEP {
                        kept.drain(..kept.len() - STDERR_KEEP);
                    }
                }
                String::from_utf8_lossy(&kept).into_owned()
            })
        });
        Ok(Piped {
            stdout: child.stdout.take(),
            stdin: child.stdin.take(),
            child,
            program: program.rsplit('/').next().unwrap_or(&program).to_string(),
            what: what.to_string(),
            stderr,
        })
    }

    /// Closes our ends of the pipes, waits for the command and returns its stderr.
    ///
    /// # Errors
    /// [`ErrorKind::SourceFailed`] with its stderr when it exits non-zero or is killed.
    pub fn finish(mut self) -> Result<String> {
        self.stdin = None;
        self.stdout = None;
        let status = self.child.wait().map_err(|e| {
            Error::new(
                ErrorKind::SourceFailed,
                format!("cannot wait for {}", self.program),
            )
            .with_source(e)
        })?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            return Err(Error::new(
                ErrorKind::SourceFailed,
                format!(
                    "{} failed to {} ({status}): {}",
                    self.program,
                    self.what,
                    stderr.trim()
                ),
            ));
        }
        Ok(stderr)
    }

    /// Stops the command (it is no longer wanted: the work failed elsewhere).
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        self.stdin = None;
        self.stdout = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}
