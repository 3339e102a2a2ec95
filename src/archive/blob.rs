//! Single files sealed on their own (PostgreSQL WAL segments): gzip-compressed, then encrypted
//! to age recipients when there are any, in one pass; and opened again. What `gzip -d` (or
//! `age -d | gzip -d`) reads.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::archive::compress::Encoder;
use crate::archive::seal::{self, Sealed};
use crate::archive::{AGE_MAGIC, Compression, GzipEffort, Identities, Recipients};
use crate::error::{Error, ErrorKind, Result};

/// Compresses `data` with gzip on `threads` cores (0: all), encrypts it to `recipients` when
/// given, and writes it to `out`, which is returned once the stream is complete.
///
/// # Errors
/// When `out` fails, or encryption is asked of a build without it.
pub fn seal_blob<W: Write + Send + 'static>(
    data: &[u8],
    out: W,
    recipients: Option<&Recipients>,
    threads: usize,
) -> io::Result<W> {
    let mut e = Encoder::new(
        Sealed::new(out, recipients)?,
        Compression::Gzip,
        GzipEffort::Fast,
        threads,
    )?;
    e.write_all(data)?;
    e.finish()?.finish()
}

/// The plaintext of a blob [`seal_blob`] wrote (or the `gzip`/`age` CLIs did): decrypted
/// with `identities` when it is an age file, inflated.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when it is encrypted and no identity matches;
/// [`ErrorKind::Integrity`] when it is neither gzip nor age.
pub fn open_blob<R: Read + Send + 'static>(
    input: R,
    identities: Option<&Identities>,
) -> Result<Box<dyn Read + Send>> {
    let mut raw = BufReader::with_capacity(1 << 16, input);
    let head = raw
        .fill_buf()
        .map_err(|e| Error::new(ErrorKind::Connect, "cannot read the object").with_source(e))?;
    let mut plain: Box<dyn BufRead + Send> = if head.starts_with(AGE_MAGIC) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            seal::open(raw, identities)?,
        ))
    } else {
        Box::new(raw)
    };
    let head = plain.fill_buf().map_err(|e| {
        Error::new(ErrorKind::Integrity, "cannot decrypt the object").with_source(e)
    })?;
    if !head.starts_with(&[0x1f, 0x8b]) {
        return Err(Error::new(
            ErrorKind::Integrity,
            "the object is not gzip-compressed (nor an age file holding gzip)",
        ));
    }
    Ok(Box::new(flate2::bufread::MultiGzDecoder::new(plain)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_blob_opens_to_its_bytes_and_gzip_reads_it() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = seal_blob(&data, Vec::new(), None, 2).unwrap();
        assert!(sealed.len() < data.len() / 10);
        let mut back = Vec::new();
        open_blob(io::Cursor::new(sealed.clone()), None)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let mut gz = Vec::new();
        flate2::read::MultiGzDecoder::new(&sealed[..])
            .read_to_end(&mut gz)
            .unwrap();
        assert_eq!(gz, data);
        let e = open_blob(io::Cursor::new(b"plain text".to_vec()), None)
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Integrity);
    }
}
