//! Progress reporting supplied by the caller, so the library never prints.

/// Receives progress and non-fatal problems from long operations.
///
/// Contract: every method has a do-nothing default; implementations must be cheap (they are
/// called once per file) and must not fail the work.
pub trait Progress {
    /// `bytes` of input have been processed so far (of `total`, when known).
    fn bytes_done(&self, bytes: u64, total: Option<u64>) {
        let _ = (bytes, total);
    }
    /// A step of the work begins (e.g. `verifying the archive`).
    fn step(&self, message: &str) {
        let _ = message;
    }
    /// A non-fatal problem the user should know of (e.g. a file changed while it was read).
    fn warn(&self, message: &str) {
        let _ = message;
    }
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
