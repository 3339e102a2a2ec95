//! Running a source's command: arguments and environment only (never secrets in argv), stdout
//! and stderr read concurrently, a non-zero exit turned into an error carrying stderr.

use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};

/// Runs `cmd` to completion and returns its stdout.
///
/// # Errors
/// [`ErrorKind::NotFound`] when the program is not installed; [`ErrorKind::SourceFailed`] with
/// its stderr when it exits non-zero.
pub fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out =
        cmd.stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::new(
                    ErrorKind::NotFound,
                    format!("{program} is not installed; it is needed to {what}"),
                ),
                _ => Error::new(ErrorKind::SourceFailed, format!("cannot run {program}"))
                    .with_source(e),
            })?;
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
