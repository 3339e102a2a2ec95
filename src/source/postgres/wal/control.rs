//! Which cluster a WAL file belongs to: its system identifier, read from a segment's first page
//! header or from the data directory's `global/pg_control` (no server or tool needed).

use std::io::Read;
use std::path::Path;

use super::names::SEGMENT_BYTES;
use crate::error::{Error, ErrorKind, Result};

/// `XLP_LONG_HEADER`: the first page of a segment carries the long header.
const XLP_LONG_HEADER: u16 = 0x0002;

/// The system identifier in the long header of a segment's first page.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when `data` does not start with a long page header, or its
/// segment size is not the 16 MiB this archive numbers segments by.
pub fn system_id_of_segment(data: &[u8]) -> Result<u64> {
    let bad = |why: &str| Error::invalid(format!("not a WAL segment: {why}"));
    if data.len() < 40 {
        return Err(bad("shorter than a page header"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    if u16_at(2) & XLP_LONG_HEADER == 0 {
        return Err(bad("its first page has no long header"));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&data[24..32]);
    let seg_size = u64::from(u32_at(32));
    if seg_size != SEGMENT_BYTES {
        return Err(Error::invalid(format!(
            "the cluster's WAL segments are {seg_size} bytes; WAL archiving supports the default \
             16 MiB (initdb --wal-segsize=16)"
        )));
    }
    Ok(u64::from_le_bytes(id))
}

/// The system identifier of the cluster in `data_dir` (the first field of `global/pg_control`).
///
/// # Errors
/// When the file cannot be read.
pub fn system_id_of_data_dir(data_dir: &Path) -> Result<u64> {
    let path = data_dir.join("global/pg_control");
    let mut id = [0u8; 8];
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(|e| {
            Error::io("cannot read the cluster's control file", &path, e).with_context(
                "run from a PostgreSQL data directory (PostgreSQL runs archive_command and \
                 restore_command there), or give --system-id",
            )
        })?;
    let id = u64::from_le_bytes(id);
    if id == 0 {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!("{} holds no system identifier", path.display()),
        ));
    }
    Ok(id)
}
