//! The archive engine: writes verified `.tar.gz`/`.tar.zst` archives in one streaming pass and
//! reads them back with every entry checked before anything is written. Knows nothing of Juju.
//!
//! ```
//! use charm_backup::archive::{ArchiveOptions, ArchiveWriter, Excludes, Manifest, SourceInfo, VerifyOptions, verify};
//! use charm_backup::progress::NoProgress;
//!
//! let dir = tempfile::tempdir()?;
//! let data = dir.path().join("data");
//! std::fs::create_dir(&data)?;
//! std::fs::write(data.join("a.txt"), "hello")?;
//!
//! let manifest = Manifest {
//!     format_version: charm_backup::archive::FORMAT_VERSION,
//!     sources: vec![SourceInfo { kind: "paths".into(), paths: vec![data.display().to_string()], ..Default::default() }],
//!     ..Default::default()
//! };
//! let out = std::fs::File::create(dir.path().join("a.tar.gz"))?;
//! let mut w = ArchiveWriter::create(out, &manifest, &ArchiveOptions::default())?;
//! w.append_tree(&data, &Excludes::default(), &NoProgress)?;
//! let (_, stats) = w.finish()?;
//!
//! let info = verify(&dir.path().join("a.tar.gz"), &VerifyOptions::default(), &NoProgress)?;
//! assert_eq!(info.sha256, stats.sha256);
//! assert_eq!(info.manifest, manifest);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod attrs;
mod blob;
mod compress;
mod excludes;
mod extract;
mod hash;
mod manifest;
mod output;
mod reader;
mod seal;
mod source;
mod writer;

pub use blob::{open_blob, seal_blob};
pub use compress::{Compression, GzipEffort};
pub use excludes::Excludes;
pub use extract::{ExtractOptions, ExtractStats, SideSink, extract, is_root};
pub use hash::{HashingReader, HashingWriter, hex};
pub use manifest::{FORMAT_VERSION, MANIFEST_NAME, Manifest, SourceInfo, host_name};
pub use output::{AtomicFile, create_private_dir, remove_partials};
pub use reader::{
    ArchiveInfo, ChecksumCheck, Limits, VerifyOptions, check_sha256, read_manifest_only, sha256_of,
    verify, verify_source,
};
pub use seal::{AGE_MAGIC, AGE_SUFFIX, Identities, Recipients};
pub use source::{ArchiveSource, FileSource, WithIdentities};
pub use writer::{ArchiveOptions, ArchiveStats, ArchiveWriter, STREAM_PART};

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
pub(crate) fn fill(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
