//! One operation at a time per unit: an advisory lock on a file in the state directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::archive::create_private_dir;
use crate::error::{Error, ErrorKind, IoContext, Result};

/// Held while an operation runs; released on drop (or when the process dies).
#[derive(Debug)]
pub struct OperationLock {
    file: File,
}

impl Drop for OperationLock {
    fn drop(&mut self) {
        // Unlocked explicitly: a child forked meanwhile by another thread holds a copy of the
        // descriptor until it execs, and closing ours alone would leave the lock held by it.
        let _ = self.file.unlock();
    }
}

impl OperationLock {
    /// Takes the lock in `state_dir` for `what`, waiting up to `wait` while another operation
    /// holds it (saying so once through `progress`).
    ///
    /// # Errors
    /// As [`OperationLock::acquire`], when the lock is still held after `wait`.
    pub fn acquire_waiting(
        state_dir: &Path,
        what: &str,
        wait: std::time::Duration,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Self> {
        let deadline = std::time::Instant::now() + wait;
        let mut said = false;
        loop {
            match Self::acquire(state_dir, what) {
                Err(e) if e.kind() == ErrorKind::Busy && std::time::Instant::now() < deadline => {
                    if !said {
                        let holder = e.to_string();
                        let holder = holder.split(" is running").next().unwrap_or_default();
                        progress.step(&format!(
                            "{holder} is running on this unit: waiting up to {}s for it",
                            wait.as_secs()
                        ));
                        said = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                r => return r,
            }
        }
    }

    /// Takes the lock in `state_dir` for `what` (e.g. `restore`), without waiting.
    ///
    /// # Errors
    /// [`ErrorKind::Busy`] naming the operation that holds it; otherwise when the lock file
    /// cannot be created.
    pub fn acquire(state_dir: &Path, what: &str) -> Result<Self> {
        create_private_dir(state_dir)?;
        let path = state_dir.join("operation.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at("cannot open the lock file", &path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another operation"
                } else {
                    holder
                };
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "{holder} is running on this unit: wait for it to finish, then run {what} again"
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("cannot lock", &path, e)),
        }
        let stamp = format!(
            "{what} (started {}, pid {})",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            std::process::id()
        );
        file.set_len(0).at("cannot write the lock file", &path)?;
        file.rewind().at("cannot write the lock file", &path)?;
        file.write_all(stamp.as_bytes())
            .at("cannot write the lock file", &path)?;
        Ok(OperationLock { file })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_dropped_lock_is_free_though_a_child_holds_a_copy_of_its_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let lock = OperationLock::acquire(dir.path(), "restore").unwrap();
        // What a fork by another thread leaves until the child execs: a copy of the
        // descriptor in another process (here kept, as dup() clears close-on-exec).
        let copy = nix::unistd::dup(&lock.file).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        drop(copy);
        drop(lock);
        let again = OperationLock::acquire(dir.path(), "create-backup");
        let _ = child.kill();
        let _ = child.wait();
        assert!(again.is_ok(), "{:?}", again.err());
    }
}
