//! Where an archive's bytes come from, and the decoding pipeline that reads them: a local
//! file (read with positioned reads, so a second thread may hash it meanwhile) or any stream,
//! such as an object in a backup store, read once from its start.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use crate::archive::Compression;
use crate::archive::seal::{self, AGE_MAGIC, Identities};
use crate::error::{Error, ErrorKind, IoContext, Result};

/// An archive to read: each [`ArchiveSource::open`] yields its bytes from the start.
pub trait ArchiveSource: Send + Sync {
    /// What it is, for people (a path or URL).
    fn name(&self) -> String;
    /// Its bytes, from the start.
    ///
    /// # Errors
    /// When it cannot be opened.
    fn open(&self) -> Result<Box<dyn Read + Send>>;
    /// The open local file holding it, when it is one (then the caller may hash it on a
    /// thread of its own while the extraction reads it).
    fn file(&self) -> Option<&File> {
        None
    }
    /// The identities to decrypt it with, when it is encrypted.
    fn identities(&self) -> Option<&Identities> {
        None
    }
}

/// A source read with identities, to decrypt it.
pub struct WithIdentities<'a> {
    /// The source.
    pub inner: Box<dyn ArchiveSource + 'a>,
    /// Its keys.
    pub identities: Identities,
}

impl<'a> WithIdentities<'a> {
    /// `inner`, read with `identities` when there are any.
    pub fn wrap(
        inner: Box<dyn ArchiveSource + 'a>,
        identities: Option<Identities>,
    ) -> Box<dyn ArchiveSource + 'a> {
        match identities {
            Some(identities) => Box::new(WithIdentities { inner, identities }),
            None => inner,
        }
    }
}

impl ArchiveSource for WithIdentities<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        self.inner.open()
    }
    fn file(&self) -> Option<&File> {
        self.inner.file()
    }
    fn identities(&self) -> Option<&Identities> {
        Some(&self.identities)
    }
}

/// An archive in a local file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    file: File,
}

impl FileSource {
    /// Opens the archive at `path`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it does not exist, or when it cannot be read.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).at("cannot open the archive", path)?;
        Ok(FileSource {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ArchiveSource for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(FromStart::new(&self.file)?))
    }
    fn file(&self) -> Option<&File> {
        Some(&self.file)
    }
}

fn integrity(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Integrity, msg)
}

/// Compression told from an archive's first bytes.
fn detect(head: &[u8]) -> Result<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Compression::Zstd)
    } else if head.is_empty() {
        Err(integrity("the archive is empty"))
    } else {
        Err(integrity("the file is not a gzip or zstd archive"))
    }
}

/// Decompressed bytes of an archive. A background thread reads the file, hashes it and
/// inflates it, so decompression runs on one core while the caller parses and writes on
/// another; at most [`QUEUED`] chunks of 1 MiB are in flight.
pub(crate) struct Decoded {
    rx: std::sync::mpsc::Receiver<io::Result<Chunk>>,
    /// Read chunks go back to the decoding thread, which refills them: no allocation (nor
    /// zeroing of fresh pages) per chunk.
    spare: std::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    len: usize,
    pos: usize,
    worker: Option<std::thread::JoinHandle<io::Result<(String, u64)>>>,
}

/// Chunks queued between the decoding thread and the reader.
const QUEUED: usize = 4;

/// A buffer and how much of it holds data.
type Chunk = (Vec<u8>, usize);

impl Read for Decoded {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            match self.rx.recv() {
                Ok(Ok((chunk, len))) => {
                    let used = std::mem::replace(&mut self.buf, chunk);
                    if !used.is_empty() {
                        let _ = self.spare.send(used);
                    }
                    self.len = len;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Sends everything `d` yields, in 1 MiB chunks, reusing the buffers the reader gives back.
fn pump(
    d: &mut impl Read,
    tx: &std::sync::mpsc::SyncSender<io::Result<Chunk>>,
    spare: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> io::Result<()> {
    loop {
        let mut chunk = spare.try_recv().unwrap_or_else(|_| vec![0u8; 1 << 20]);
        let n = crate::archive::fill(d, &mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        if tx.send(Ok((chunk, n))).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the reader stopped",
            ));
        }
    }
}

/// Reads a file from its start with positioned reads, so several readers of one open file
/// (a duplicated descriptor shares its offset) never disturb each other.
pub(crate) struct FromStart {
    file: File,
    pos: u64,
}

impl FromStart {
    /// A reader of `file` from offset 0.
    pub(crate) fn new(file: &File) -> Result<Self> {
        let file = file
            .try_clone()
            .map_err(|e| integrity("cannot read the archive").with_source(e))?;
        Ok(FromStart { file, pos: 0 })
    }
}

impl Read for FromStart {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A reader that hashes what passes into a digest shared with whoever holds its other end.
struct SharedHashing<R> {
    inner: R,
    digest: Arc<Mutex<(sha2::Sha256, u64)>>,
}

impl<R: Read> Read for SharedHashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        if let Ok(mut d) = self.digest.lock() {
            d.0.update(&buf[..n]);
            d.1 += n as u64;
        }
        Ok(n)
    }
}

/// Opens `source` from its start for reading entries: one pass that hashes the raw (stored)
/// bytes, whose digest [`finish_digest`] returns, decrypts them when they are an age file,
/// and inflates them. An encrypted archive without a matching identity fails here, having read
/// only its header.
pub(crate) fn open_stream(source: &dyn ArchiveSource) -> Result<(Decoded, Compression)> {
    let digest = Arc::new(Mutex::new((<sha2::Sha256 as sha2::Digest>::new(), 0u64)));
    let mut raw = BufReader::with_capacity(
        1 << 20,
        SharedHashing {
            inner: source.open()?,
            digest: digest.clone(),
        },
    );
    let sealed = raw.fill_buf().map_err(stream_err)?.starts_with(AGE_MAGIC);
    let mut plain: Box<dyn BufRead + Send> = if sealed {
        Box::new(BufReader::with_capacity(
            1 << 20,
            seal::open(raw, source.identities())?,
        ))
    } else {
        Box::new(raw)
    };
    let compression = detect(plain.fill_buf().map_err(stream_err)?)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUED);
    let (spare, spares) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || -> io::Result<(String, u64)> {
        let run = || -> io::Result<(String, u64)> {
            let mut rest = match compression {
                Compression::Gzip => {
                    let mut d = flate2::bufread::MultiGzDecoder::new(plain);
                    pump(&mut d, &tx, &spares)?;
                    d.into_inner()
                }
                #[cfg(feature = "zstd")]
                Compression::Zstd => {
                    let mut d = zstd::stream::read::Decoder::with_buffer(plain)?;
                    pump(&mut d, &tx, &spares)?;
                    d.finish()
                }
                #[cfg(not(feature = "zstd"))]
                Compression::Zstd => {
                    let _ = plain;
                    return Err(io::Error::other(
                        "the archive is zstd-compressed and this program was built without the \
                         zstd feature that reads it",
                    ));
                }
            };
            // Whatever follows is read too (age checks its last chunk at the end), so the
            // digest covers the whole stored file.
            io::copy(&mut rest, &mut io::sink())?;
            drop(rest);
            let d = digest
                .lock()
                .map_err(|_| io::Error::other("the digest was lost"))?;
            Ok((
                crate::archive::hex(&sha2::Digest::finalize(d.0.clone())),
                d.1,
            ))
        };
        let r = run();
        if let Err(e) = &r {
            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        r
    });
    Ok((
        Decoded {
            rx,
            spare,
            buf: Vec::new(),
            len: 0,
            pos: 0,
            worker: Some(worker),
        },
        compression,
    ))
}

/// Turns a read error inside the stream into an integrity error that says what to do.
pub(crate) fn stream_err(e: io::Error) -> Error {
    let what = match e.kind() {
        io::ErrorKind::UnexpectedEof => "the archive is truncated",
        _ => "the archive is damaged",
    };
    integrity(format!(
        "{what}: get a complete copy (compare its sha256) and try again"
    ))
    .with_source(e)
}

/// Finishes the digest: drains the decoder (so gzip's CRC is checked) and the file.
pub(crate) fn finish_digest(mut decoded: Decoded) -> Result<(String, u64)> {
    io::copy(&mut decoded, &mut io::sink()).map_err(stream_err)?;
    let worker = decoded.worker.take();
    drop(decoded);
    match worker.map(|w| w.join()) {
        Some(Ok(r)) => r.map_err(stream_err),
        _ => Err(Error::new(
            ErrorKind::Other,
            "internal error: the archive reader thread failed",
        )),
    }
}
