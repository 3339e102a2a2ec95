//! The names PostgreSQL gives the files it archives, and where each is kept in the store.

use std::fmt;

use crate::error::{Error, Result};

/// WAL segment size this module assumes when numbering segments: 16 MiB, the default
/// `initdb --wal-segsize` and Debian's.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// Segments per 4 GiB "log id" (the middle eight hex digits of a segment name).
const SEGMENTS_PER_ID: u64 = 0x1_0000_0000 / SEGMENT_BYTES;

/// A file `archive_command` hands over or `restore_command` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFile {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: a WAL segment of timeline `T`, number `X * 0x100 + Y`.
    Segment {
        /// Its timeline.
        timeline: u32,
        /// Its number since the start of WAL.
        segno: u64,
    },
    /// `<segment>.partial`: the last, incomplete segment of a timeline a promotion ended.
    Partial {
        /// Its timeline.
        timeline: u32,
        /// Its number.
        segno: u64,
    },
    /// `TTTTTTTT.history`: which timelines a timeline branched from, and where.
    History {
        /// The timeline it describes.
        timeline: u32,
    },
    /// `<segment>.XXXXXXXX.backup`: a base backup's label.
    BackupLabel {
        /// Its timeline.
        timeline: u32,
        /// The segment the backup started in.
        segno: u64,
        /// The offset of its start in that segment.
        offset: u32,
    },
}

fn hex_u32(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

fn parse_segment(s: &str) -> Option<(u32, u64)> {
    if s.len() != 24 {
        return None;
    }
    let timeline = hex_u32(&s[..8])?;
    let id = u64::from(hex_u32(&s[8..16])?);
    let seg = u64::from(hex_u32(&s[16..])?);
    (seg < SEGMENTS_PER_ID && timeline > 0).then_some((timeline, id * SEGMENTS_PER_ID + seg))
}

impl WalFile {
    /// Parses a file name (no directory).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for a name PostgreSQL does not archive.
    pub fn parse(name: &str) -> Result<WalFile> {
        let bad = || {
            Error::invalid(format!(
                "{name:?} is not a WAL file name (a segment such as 000000010000000000000003, \
                 a .partial segment, a TTTTTTTT.history or a .backup label)"
            ))
        };
        if let Some((timeline, segno)) = parse_segment(name) {
            return Ok(WalFile::Segment { timeline, segno });
        }
        if let Some(seg) = name.strip_suffix(".partial") {
            let (timeline, segno) = parse_segment(seg).ok_or_else(bad)?;
            return Ok(WalFile::Partial { timeline, segno });
        }
        if let Some(t) = name.strip_suffix(".history") {
            let timeline = hex_u32(t).filter(|t| *t > 0).ok_or_else(bad)?;
            return Ok(WalFile::History { timeline });
        }
        if let Some(rest) = name.strip_suffix(".backup")
            && rest.len() == 33
            && rest.as_bytes()[24] == b'.'
        {
            let (timeline, segno) = parse_segment(&rest[..24]).ok_or_else(bad)?;
            let offset = hex_u32(&rest[25..]).ok_or_else(bad)?;
            return Ok(WalFile::BackupLabel {
                timeline,
                segno,
                offset,
            });
        }
        Err(bad())
    }

    /// The timeline it belongs to.
    pub fn timeline(&self) -> u32 {
        match *self {
            WalFile::Segment { timeline, .. }
            | WalFile::Partial { timeline, .. }
            | WalFile::History { timeline }
            | WalFile::BackupLabel { timeline, .. } => timeline,
        }
    }

    /// The segment `segno` of `timeline`.
    pub fn segment(timeline: u32, segno: u64) -> WalFile {
        WalFile::Segment { timeline, segno }
    }

    /// The segment holding `lsn` on `timeline`.
    pub fn segment_of(timeline: u32, lsn: u64) -> WalFile {
        WalFile::segment(timeline, lsn / SEGMENT_BYTES)
    }
}

fn segment_name(f: &mut fmt::Formatter<'_>, timeline: u32, segno: u64) -> fmt::Result {
    write!(
        f,
        "{timeline:08X}{:08X}{:08X}",
        segno / SEGMENTS_PER_ID,
        segno % SEGMENTS_PER_ID
    )
}

impl fmt::Display for WalFile {
    /// The name PostgreSQL gives it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WalFile::Segment { timeline, segno } => segment_name(f, timeline, segno),
            WalFile::Partial { timeline, segno } => {
                segment_name(f, timeline, segno)?;
                f.write_str(".partial")
            }
            WalFile::History { timeline } => write!(f, "{timeline:08X}.history"),
            WalFile::BackupLabel {
                timeline,
                segno,
                offset,
            } => {
                segment_name(f, timeline, segno)?;
                write!(f, ".{offset:08X}.backup")
            }
        }
    }
}

/// Parses an LSN as PostgreSQL prints it (`0/3000028`).
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] when it is not one.
pub fn parse_lsn(s: &str) -> Result<u64> {
    let (hi, lo) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| Error::invalid(format!("{s:?} is not an LSN (such as 0/3000028)")))?;
    let part = |p: &str| {
        u32::from_str_radix(p, 16)
            .map_err(|_| Error::invalid(format!("{s:?} is not an LSN (such as 0/3000028)")))
    };
    Ok((u64::from(part(hi)?) << 32) | u64::from(part(lo)?))
}

/// Prints an LSN as PostgreSQL does.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for n in [
            "000000010000000000000003",
            "0000000200000001000000FF",
            "000000010000000000000003.partial",
            "00000002.history",
            "000000010000000000000002.00000028.backup",
        ] {
            assert_eq!(WalFile::parse(n).unwrap().to_string(), n);
        }
        assert_eq!(
            WalFile::parse("0000000200000001000000FF").unwrap(),
            WalFile::segment(2, 0x1ff)
        );
        for bad in [
            "",
            "RECOVERYXLOG",
            "00000001000000000000000G",
            "000000010000000000000100",
            "00000000.history",
            "../00000001.history",
            "000000010000000000000003 ",
        ] {
            assert!(WalFile::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_lsn("1/3000028").unwrap(), 0x1_0300_0028);
        assert_eq!(format_lsn(0x1_0300_0028), "1/3000028");
        assert_eq!(
            WalFile::segment_of(1, parse_lsn("0/3000028").unwrap()).to_string(),
            "000000010000000000000003"
        );
    }
}
