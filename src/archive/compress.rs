//! The compressors: gzip on one thread or in parallel blocks (one valid gzip stream, as pigz
//! writes it), or zstd with its own workers.

use std::io::{self, Write};

use crate::error::{Error, Result};

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// gzip (see [`GzipEffort`]): what `tar xzf` reads everywhere.
    #[default]
    Gzip,
    /// zstd, level 3: faster and smaller; `tar --zstd -xf` reads it.
    Zstd,
}

impl Compression {
    /// The file extension, without a leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
        }
    }

    /// The name used in config and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" | "gz" => Ok(Compression::Gzip),
            #[cfg(feature = "zstd")]
            "zstd" | "zst" => Ok(Compression::Zstd),
            #[cfg(not(feature = "zstd"))]
            "zstd" | "zst" => Err(Error::invalid(
                "zstd compression needs charm-backup built with the zstd feature: use gzip",
            )),
            other => Err(Error::invalid(format!(
                "unknown compression {other:?}: use gzip or zstd"
            ))),
        }
    }
}

/// The cores worth using for compression.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPUs this process may run on, whatever share of them a CPU quota allows: more
/// compression threads than that only add blocks held in memory.
pub(crate) fn cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_or_else(
        |_| cores(),
        |set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
                .max(1)
        },
    )
}

/// The compressor: gzip on one thread, gzip in independent blocks (1 or 4 MiB, by
/// [`GzipEffort`]) on several (still one valid gzip stream, as pigz writes it), or zstd with its
/// own worker threads.
pub(crate) enum Encoder<W: Write + Send + 'static> {
    Gzip(flate2::write::GzEncoder<W>),
    ParGzip(gzp::par::compress::ParCompress<'static, gzp::deflate::Gzip, W>),
    #[cfg(feature = "zstd")]
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

fn gzp_err(e: gzp::GzpError) -> io::Error {
    match e {
        gzp::GzpError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// How hard gzip works. zlib-rs follows zlib-ng, whose levels differ from zlib's (GNU gzip,
/// pigz, pgBackRest): its level 6 is a faster "medium" strategy than the lazy matching zlib
/// runs at 6, and on database pages it is 7.5% larger; on mixed files the gap is under 1%.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GzipEffort {
    /// zlib-rs level 6: within 1% of `gzip -6`'s size on mixed files, about 2x its speed per
    /// core.
    #[default]
    Fast,
    /// zlib-rs level 7 (the lazy matching zlib runs at level 6, with about its settings) in
    /// 4 MiB parallel blocks: the size of `gzip -6` on any data, database pages included, at
    /// about 1.4x its speed per core.
    Dense,
}

impl GzipEffort {
    fn level(self) -> flate2::Compression {
        flate2::Compression::new(match self {
            GzipEffort::Fast => 6,
            GzipEffort::Dense => 7,
        })
    }

    /// Input per parallel gzip block. Each block ends with a flush and starts new Huffman
    /// tables, which costs most on data that compresses well (database pages): 1 MiB keeps
    /// mixed files within 1% of `gzip -6`; 4 MiB takes database pages to its size. Two blocks
    /// in flight per core bound memory either way.
    fn block(self) -> usize {
        match self {
            GzipEffort::Fast => 1 << 20,
            GzipEffort::Dense => 4 << 20,
        }
    }
}

impl<W: Write + Send + 'static> Encoder<W> {
    pub(crate) fn new(
        inner: W,
        c: Compression,
        effort: GzipEffort,
        threads: usize,
    ) -> io::Result<Self> {
        let threads = if threads == 0 {
            cores()
        } else {
            threads.min(cpus())
        };
        Ok(match c {
            Compression::Gzip if threads > 1 => Encoder::ParGzip(
                gzp::par::compress::ParCompressBuilder::<gzp::deflate::Gzip>::new()
                    .num_threads(threads)
                    .map_err(gzp_err)?
                    .buffer_size(effort.block())
                    .map_err(gzp_err)?
                    .compression_level(effort.level())
                    .from_writer(inner),
            ),
            Compression::Gzip => {
                Encoder::Gzip(flate2::write::GzEncoder::new(inner, effort.level()))
            }
            #[cfg(feature = "zstd")]
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(inner, 3)?;
                if threads > 1 {
                    e.multithread(threads as u32)?;
                }
                Encoder::Zstd(e)
            }
            #[cfg(not(feature = "zstd"))]
            Compression::Zstd => {
                let _ = (inner, threads);
                return Err(std::io::Error::other(
                    "zstd compression needs charm-backup built with the zstd feature",
                ));
            }
        })
    }
    pub(crate) fn finish(self) -> io::Result<W> {
        use gzp::ZWriter;
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::ParGzip(mut e) => e.finish().map_err(gzp_err),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::ParGzip(e) => e.write(buf),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::ParGzip(e) => e.flush(),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.flush(),
        }
    }
}
