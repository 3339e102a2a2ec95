//! What is left out of an archive, matched as GNU tar's `--exclude` does.

use std::path::Path;

use crate::error::{Error, Result};

/// Glob patterns left out of an archive, as GNU tar's `--exclude` reads them: a pattern that
/// starts with `/` matches the whole absolute path; any other matches at any depth (`*.sock`
/// any name, `cache/tmp` any path ending in those components). Names that are not UTF-8
/// match too (their odd bytes as `?` would).
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<(String, glob::Pattern)>,
}

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Excludes {
    /// Compiles the patterns.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] naming a pattern that is not a valid glob.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            let trimmed = p.trim_end_matches('/');
            let anchored = if trimmed.starts_with('/') {
                trimmed.to_string()
            } else {
                format!("/**/{trimmed}")
            };
            let compiled = glob::Pattern::new(&anchored).map_err(|e| {
                Error::invalid(format!("exclude pattern {p:?} is not a valid glob: {e}"))
            })?;
            out.push((p.to_string(), compiled));
        }
        Ok(Excludes { patterns: out })
    }

    /// The patterns as given.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns.iter().map(|(s, _)| s.clone()).collect()
    }

    /// Whether `path` (absolute) is excluded.
    pub fn matches(&self, path: &Path) -> bool {
        let text = path.to_string_lossy();
        self.patterns
            .iter()
            .any(|(_, p)| p.matches_with(&text, MATCH))
    }

    /// The patterns that match nothing under `roots`, looking at no more than `budget`
    /// entries (a pattern not found within it is not reported).
    pub fn unmatched(&self, roots: &[std::path::PathBuf], budget: usize) -> Vec<String> {
        let mut left: Vec<&(String, glob::Pattern)> = self.patterns.iter().collect();
        let mut stack: Vec<std::path::PathBuf> = roots.to_vec();
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                seen += 1;
                if seen > budget {
                    return Vec::new();
                }
                let p = e.path();
                let text = p.to_string_lossy();
                left.retain(|(_, pat)| !pat.matches_with(&text, MATCH));
                if left.is_empty() {
                    return Vec::new();
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(p);
                }
            }
        }
        left.into_iter().map(|(raw, _)| raw.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_as_gnu_tar_does() {
        use std::os::unix::ffi::OsStrExt;
        let x = Excludes::new(&["*.sock", "cache/tmp", "/srv/app/logs/"]).unwrap();
        assert!(x.matches(Path::new("/srv/app/run/db.sock")));
        assert!(x.matches(Path::new("/srv/app/a/cache/tmp")));
        assert!(x.matches(Path::new("/srv/app/cache/tmp")));
        assert!(!x.matches(Path::new("/srv/app/cache/tmpfile")));
        assert!(x.matches(Path::new("/srv/app/logs")));
        assert!(!x.matches(Path::new("/srv/other/logs")));
        let odd = std::ffi::OsStr::from_bytes(b"/srv/app/caf\xe9.sock");
        assert!(x.matches(Path::new(odd)), "non-UTF-8 names match");

        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/cache/tmp")).unwrap();
        let x = Excludes::new(&["cache/tmp", "nothing-here", "*.missing"]).unwrap();
        assert_eq!(
            x.unmatched(&[tmp.path().to_path_buf()], 1000),
            ["nothing-here", "*.missing"]
        );
    }
}
