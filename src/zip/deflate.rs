//! Deflate on the blocking pool: a file compressed in chunks streamed to the archive, or a small
//! one compressed whole ahead of the stream, each checked against the manifest's identity before
//! and after; data that does not compress is written as stored deflate blocks instead.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::crc;
use super::format::{self, BLOCK};
use crate::config::SymlinkRule;
use crate::fs::{self, FileKey};

/// Compressed output is handed to the stream in chunks of about this size.
const DEFLATE_CHUNK: usize = 64 * 1024;

/// A small file compressed whole on the blocking pool: (compressed bytes, CRC).
pub(super) type WholeJob = JoinHandle<io::Result<(Bytes, u32)>>;

pub(super) enum DeflateMsg {
    Data(Bytes),
    Done { crc: u32, csize: u64 },
}

/// Compress one file on the blocking pool; its output comes through a two-slot channel, so the
/// compressor waits whenever the client does.
pub(super) fn spawn_deflate(
    root: Arc<File>,
    rule: SymlinkRule,
    path: String,
    key: FileKey,
    level: u32,
) -> mpsc::Receiver<io::Result<DeflateMsg>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let result = deflate_file(&root, rule, &path, key, level, &tx);
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

fn deflate_file(
    root: &File,
    rule: SymlinkRule,
    path: &str,
    key: FileKey,
    level: u32,
    tx: &mpsc::Sender<io::Result<DeflateMsg>>,
) -> io::Result<()> {
    let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "client went away");
    let (crc, csize) = deflate_checked(root, rule, path, key, level, &mut |chunk| {
        tx.blocking_send(Ok(DeflateMsg::Data(Bytes::from(chunk))))
            .map_err(|_| gone())
    })?;
    tx.blocking_send(Ok(DeflateMsg::Done { crc, csize }))
        .map_err(|_| gone())
}

/// Compress a small file whole (for the look-ahead): (compressed bytes, CRC).
pub(super) fn deflate_whole(
    root: &File,
    rule: SymlinkRule,
    path: &str,
    key: FileKey,
    level: u32,
) -> io::Result<(Bytes, u32)> {
    let mut all = Vec::new();
    let (crc, _) = deflate_checked(root, rule, path, key, level, &mut |chunk| {
        if all.is_empty() {
            all = chunk;
        } else {
            all.extend_from_slice(&chunk);
        }
        Ok(())
    })?;
    Ok((Bytes::from(all), crc))
}

/// Open `path`, check it is still the manifest's file, deflate it into `sink` in chunks of about
/// DEFLATE_CHUNK, and check it again at the end. Returns (CRC, compressed size).
fn deflate_checked(
    root: &File,
    rule: SymlinkRule,
    path: &str,
    key: FileKey,
    level: u32,
    sink: &mut dyn FnMut(Vec<u8>) -> io::Result<()>,
) -> io::Result<(u32, u64)> {
    let (file, meta) = fs::open(root, path, rule).map_err(|_| crc::changed(path))?;
    if fs::file_key(&meta) != key {
        return Err(crc::changed(path));
    }
    let mut enc = Encoder {
        comp: take_compressor(level),
        out: Vec::with_capacity(DEFLATE_CHUNK + 1024),
        csize: 0,
        stored: false,
        sink,
    };
    let mut hasher = crc32fast::Hasher::new();
    let mut input = vec![0u8; DEFLATE_CHUNK];
    let mut pos = 0u64;
    loop {
        let want = (key.size - pos).min(DEFLATE_CHUNK as u64) as usize;
        let n = if want > 0 {
            file.read_at(&mut input[..want], pos)?
        } else {
            0
        };
        if want > 0 && n == 0 {
            return Err(crc::changed(path));
        }
        hasher.update(&input[..n]);
        let first = pos == 0;
        pos += n as u64;
        let finish = pos >= key.size;
        enc.chunk(&input[..n], first, finish)?;
        if finish {
            break;
        }
    }
    enc.hand_off()?;
    give_back_compressor(level, enc.comp);
    if fs::file_key(&file.metadata()?) != key {
        return Err(crc::changed(path));
    }
    Ok((hasher.finalize(), enc.csize))
}

/// One entry's compressed output: deflated, or (when the first chunk does not shrink) stored
/// deflate blocks, handed to `sink` in chunks of about DEFLATE_CHUNK.
struct Encoder<'a> {
    comp: flate2::Compress,
    out: Vec<u8>,
    csize: u64,
    /// The data does not compress: write stored blocks (still method 8, same descriptor).
    stored: bool,
    sink: &'a mut dyn FnMut(Vec<u8>) -> io::Result<()>,
}

impl Encoder<'_> {
    /// Encode the next `input` (the file's first chunk if `first`, its last if `finish`).
    fn chunk(&mut self, input: &[u8], first: bool, finish: bool) -> io::Result<()> {
        use flate2::FlushCompress;
        if first && !input.is_empty() {
            // Already-compressed data (whatever its name) gains nothing and costs ~100x the CPU
            // of storing. The first chunk is compressed and flushed on its own; if it does not
            // shrink below 90%, that output is dropped and the entry is stored instead.
            let flush = if finish {
                FlushCompress::Finish
            } else {
                FlushCompress::Sync
            };
            self.compress(input, flush, false)?;
            if self.out.len() as f64 <= 0.9 * input.len() as f64 {
                return Ok(());
            }
            self.stored = true;
            self.out.clear();
        }
        if self.stored {
            return self.store(input, finish);
        }
        let flush = if finish {
            FlushCompress::Finish
        } else {
            FlushCompress::None
        };
        self.compress(input, flush, true)
    }

    /// Run the compressor over `input` until it is consumed (and, for Finish, the stream has
    /// ended; for Sync, the flush is complete). When the output fills, hand it off, or (for the
    /// probing first chunk, whose output may still be dropped) grow it.
    fn compress(
        &mut self,
        mut input: &[u8],
        flush: flate2::FlushCompress,
        hand_off: bool,
    ) -> io::Result<()> {
        use flate2::{FlushCompress, Status};
        loop {
            if self.out.capacity() - self.out.len() < 1024 {
                if hand_off {
                    self.hand_off()?;
                } else {
                    self.out.reserve(DEFLATE_CHUNK);
                }
            }
            let before = self.comp.total_in();
            let status = self
                .comp
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            input = &input[(self.comp.total_in() - before) as usize..];
            let room = self.out.capacity() > self.out.len();
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                FlushCompress::None => input.is_empty(),
                _ => input.is_empty() && room,
            };
            if done || status == Status::StreamEnd {
                return Ok(());
            }
        }
    }

    /// Write `input` as stored deflate blocks (the last one final if `finish`).
    fn store(&mut self, mut input: &[u8], finish: bool) -> io::Result<()> {
        loop {
            let take = input.len().min(BLOCK as usize);
            if self.out.capacity() - self.out.len() < take + 5 {
                self.hand_off()?;
            }
            format::write_block_header(&mut self.out, take as u16, finish && take == input.len());
            self.out.extend_from_slice(&input[..take]);
            input = &input[take..];
            if input.is_empty() {
                return Ok(());
            }
        }
    }

    /// Hand the output so far to the sink.
    fn hand_off(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.csize += self.out.len() as u64;
        let full = std::mem::replace(&mut self.out, Vec::with_capacity(DEFLATE_CHUNK + 1024));
        (self.sink)(full)
    }
}

thread_local! {
    /// One compressor per blocking thread, reset between files: zlib's state is a few hundred
    /// KiB, too much to allocate and clear per small file.
    static COMPRESSOR: std::cell::RefCell<Option<(u32, flate2::Compress)>> = const { std::cell::RefCell::new(None) };
}

fn take_compressor(level: u32) -> flate2::Compress {
    let cached = COMPRESSOR.with(|c| c.borrow_mut().take());
    match cached {
        Some((l, mut comp)) if l == level => {
            comp.reset();
            comp
        }
        _ => flate2::Compress::new(flate2::Compression::new(level), false),
    }
}

fn give_back_compressor(level: u32, comp: flate2::Compress) {
    COMPRESSOR.with(|c| *c.borrow_mut() = Some((level, comp)));
}
