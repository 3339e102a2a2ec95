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

/// Bytes as people read them: `68K`, `1.2M`, `3.4G` (powers of 1024, like `du -h`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}")
    } else if v < 10.0 {
        format!("{:.1}{}", (v * 10.0).ceil() / 10.0, UNITS[u])
    } else {
        format!("{}{}", v.ceil() as u64, UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_du() {
        assert_eq!(human_size(512), "512");
        assert_eq!(human_size(68 * 1024), "68K");
        assert_eq!(human_size(1536 * 1024), "1.5M");
    }
}
