//! The archive as a response body: a state machine over the archive's pieces (local header,
//! file data or stored blocks, descriptor, central directory records, end records) that can start
//! at any byte, for Range requests.
//!
//! Headers are written into pooled buffers; stored file data leaves as `FileBuf`s, that is by
//! sendfile(2), exactly like a plain file GET. Deflated entries are compressed on the blocking
//! pool and arrive through a two-slot channel, so a slow client stalls the compressor instead of
//! growing a buffer. Before and after its data is sent, every file is compared with the identity
//! the manifest recorded: a file that changed aborts the response (never a wrong CRC, never
//! padding).

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::mpsc;

use super::crc;
use super::deflate::{deflate_whole, spawn_deflate, DeflateMsg, WholeJob};
use super::format::{self, Kind, BLOCK};
use super::manifest::Manifest;
pub use super::permit::ArchivePermit;
use crate::chunk::{Chunk, FileBuf};
use crate::config::SymlinkRule;
use crate::conn::ConnShared;
use crate::copy::{BlockingRead, COPY_CHUNK};
use crate::fs::{self, OpenFile};
use crate::pool::{PooledBuf, PooledSlice};

/// Central directory records are batched into buffers of about this size.
const CENTRAL_BATCH: usize = 32 * 1024;
/// Deflated entries up to this size are compressed whole, ahead of the stream, in parallel.
const LOOKAHEAD_MAX: u64 = 1 << 20;
/// How many such entries may be compressing (or waiting, compressed) at once per archive.
const LOOKAHEAD_JOBS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Local(usize),
    /// A Stored entry's bytes.
    Data(usize),
    /// Block `k` of a StoredBlocks entry: its 5-byte header, then its bytes.
    BlockHead(usize, u64),
    Block(usize, u64),
    /// A Deflate entry's compressed bytes.
    Deflated(usize),
    /// Compare the file just sent with the manifest, then go on to `next`.
    Verify(usize),
    Descriptor(usize),
    Central(usize),
    End,
    Done,
}

/// The body of a ZIP response.
pub struct ZipStream {
    m: Arc<Manifest>,
    conn: Rc<ConnShared>,
    root: Arc<File>,
    rule: SymlinkRule,
    crcs: Vec<u32>,
    crc_rx: mpsc::UnboundedReceiver<io::Result<u32>>,
    piece: Piece,
    /// Bytes at the start of the current piece that lie before the requested range.
    skip: u64,
    /// The read in flight for a file that could not be mapped.
    copy: BlockingRead,
    /// Bytes still to send (the range's length; the whole archive when unsized).
    remaining: u64,
    /// Archive bytes produced so far (offsets of an unsized archive are learned this way).
    written: u64,
    /// Unsized archives: real offsets, compressed sizes and CRCs of deflated entries.
    offsets: Vec<u64>,
    deflated: Vec<(u32, u64)>,
    cd_start: u64,
    file: Option<Arc<OpenFile>>,
    deflate: Option<mpsc::Receiver<io::Result<DeflateMsg>>>,
    /// Small deflated entries compressed ahead, in entry order: (index, job).
    ahead: VecDeque<(usize, WholeJob)>,
    /// The next entry the look-ahead has not considered yet.
    ahead_next: usize,
    _permit: ArchivePermit,
}

impl ZipStream {
    /// A stream of bytes `[start, start + len)` of the archive (`len = u64::MAX`: all of an
    /// unsized archive).
    pub fn new(
        m: Arc<Manifest>,
        conn: Rc<ConnShared>,
        root: Arc<File>,
        rule: SymlinkRule,
        start: u64,
        len: u64,
        permit: ArchivePermit,
    ) -> ZipStream {
        let crc_rx = crc::prefetch(m.clone(), root.clone(), rule);
        let n = m.entries.len();
        let sized = m.sized;
        let mut s = ZipStream {
            m,
            conn,
            root,
            rule,
            crcs: Vec::with_capacity(n),
            crc_rx,
            piece: Piece::Local(0),
            skip: 0,
            copy: BlockingRead::default(),
            remaining: len,
            written: start,
            offsets: if sized { Vec::new() } else { vec![0; n] },
            deflated: if sized { Vec::new() } else { vec![(0, 0); n] },
            cd_start: 0,
            file: None,
            deflate: None,
            ahead: VecDeque::new(),
            ahead_next: 0,
            _permit: permit,
        };
        if sized && start > 0 {
            s.seek(start);
        }
        s
    }

    /// The connection the archive is sent on.
    pub fn conn(&self) -> &Rc<ConnShared> {
        &self.conn
    }

    /// Bytes left to send.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Position the stream at archive byte `at` (sized archives).
    fn seek(&mut self, at: u64) {
        let m = &self.m;
        if at >= m.cd_offset {
            let mut pos = m.cd_offset;
            for i in 0..m.entries.len() {
                let e = &m.entries[i];
                let len = format::central_len(m.name(e).len(), e.size, e.csize, e.offset);
                if at < pos + len {
                    (self.piece, self.skip) = (Piece::Central(i), at - pos);
                    return;
                }
                pos += len;
            }
            (self.piece, self.skip) = (Piece::End, at - pos);
            return;
        }
        let i = m.entry_at(at);
        let e = &m.entries[i];
        let rel = at - e.offset;
        let local = format::local_header_len(m.name(e).len(), e.zip64);
        (self.piece, self.skip) = if rel < local {
            (Piece::Local(i), rel)
        } else if rel - local < e.csize {
            let rel = rel - local;
            match e.kind {
                Kind::StoredBlocks => {
                    let (k, within) = (rel / (BLOCK + 5), rel % (BLOCK + 5));
                    if within < 5 {
                        (Piece::BlockHead(i, k), within)
                    } else {
                        (Piece::Block(i, k), within - 5)
                    }
                }
                _ => (Piece::Data(i), rel),
            }
        } else {
            (Piece::Descriptor(i), rel - local - e.csize)
        };
    }

    /// The next chunk of the archive.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Chunk>>> {
        loop {
            if self.remaining == 0 {
                self.piece = Piece::Done;
            }
            let step = match self.piece {
                Piece::Done => return Poll::Ready(None),
                Piece::Local(i) => ready!(self.local(cx, i)),
                Piece::Data(i) => ready!(self.data(cx, i)),
                Piece::BlockHead(i, k) => Ok(self.block_head(i, k)),
                Piece::Block(i, k) => ready!(self.block(cx, i, k)),
                Piece::Deflated(i) => ready!(self.deflated(cx, i)),
                Piece::Verify(i) => self.verify(i).map(|()| None),
                Piece::Descriptor(i) => ready!(self.descriptor(cx, i)),
                Piece::Central(i) => ready!(self.central(cx, i)),
                Piece::End => Ok(self.end()),
            };
            match step {
                Ok(Some(chunk)) => return Poll::Ready(Some(Ok(chunk))),
                Ok(None) => continue,
                Err(e) => {
                    self.piece = Piece::Done;
                    tracing::warn!(error = %e, "archive aborted");
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn poll_crc(&mut self, cx: &mut Context<'_>, i: usize) -> Poll<io::Result<u32>> {
        if self.m.entries[i].kind == Kind::Deflate {
            return Poll::Ready(Ok(self.deflated[i].0));
        }
        while self.crcs.len() <= i {
            match ready!(self.crc_rx.poll_recv(cx)) {
                Some(Ok(c)) => self.crcs.push(c),
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Err(io::Error::other("CRC computation stopped"))),
            }
        }
        Poll::Ready(Ok(self.crcs[i]))
    }

    /// Hand out `[skip, len)` of a generated piece, clipped to the range.
    fn emit(&mut self, buf: PooledBuf) -> Option<Chunk> {
        let len = buf.len() as u64;
        let start = self.skip.min(len);
        self.skip -= start;
        let end = len.min(start.saturating_add(self.remaining));
        self.written += len - start;
        if start >= end {
            return None;
        }
        self.remaining -= end - start;
        Some(Chunk::Pooled(PooledSlice::new(
            buf.share(),
            start as usize,
            end as usize,
        )))
    }

    /// Hand out bytes `[from + skip, to)` of the current file, clipped to the range.
    /// `this` is the piece being emitted, re-entered when a copied range needs more chunks.
    fn emit_file(
        &mut self,
        cx: &mut Context<'_>,
        this: Piece,
        from: u64,
        to: u64,
    ) -> Poll<io::Result<Option<Chunk>>> {
        let start = from + self.skip;
        self.skip = 0;
        let end = to.min(start.saturating_add(self.remaining));
        if start >= end {
            self.written += to - start;
            return Poll::Ready(Ok(None));
        }
        let Some(file) = self.file.clone() else {
            return Poll::Ready(Err(io::Error::other("no open file")));
        };
        if file.map.is_none() {
            // Not mappable (an unusual file system): copy, read on the blocking pool one chunk
            // per call, coming back to this piece for the rest (and to the same read while it
            // runs).
            let n = (end - start).min(COPY_CHUNK as u64);
            let read = self.copy.poll_read(cx, &file, start, n as usize);
            let Poll::Ready(bytes) = read else {
                // Come back to the same bytes of the same piece.
                self.skip = start - from;
                self.piece = this;
                return Poll::Pending;
            };
            let bytes = bytes?;
            crate::stats::WorkerStats::add(&self.conn.worker.stats().copied_bytes, n);
            self.remaining -= n;
            if start + n < end {
                self.written += n;
                self.skip = start + n - from;
                self.piece = this;
            } else {
                self.written += to - start;
            }
            return Poll::Ready(Ok(Some(Chunk::Bytes(bytes))));
        }
        self.written += to - start;
        self.remaining -= end - start;
        Poll::Ready(Ok(Some(Chunk::File(FileBuf::new(
            file,
            start as usize,
            end as usize,
            self.conn.clone(),
        )))))
    }

    fn after_local(&self, i: usize) -> Piece {
        let e = &self.m.entries[i];
        match e.kind {
            Kind::Dir => Piece::Local(i + 1),
            Kind::Stored if e.size == 0 => Piece::Local(i + 1),
            Kind::Stored => Piece::Data(i),
            Kind::StoredBlocks => Piece::BlockHead(i, 0),
            Kind::Deflate => Piece::Deflated(i),
        }
    }

    fn local(&mut self, cx: &mut Context<'_>, i: usize) -> Poll<io::Result<Option<Chunk>>> {
        let m = self.m.clone();
        if i == m.entries.len() {
            self.piece = Piece::Central(0);
            return Poll::Ready(Ok(None));
        }
        let e = &m.entries[i];
        let crc = if e.kind == Kind::Stored && e.size > 0 {
            ready!(self.poll_crc(cx, i))?
        } else {
            0
        };
        let mut h = m.header(i, crc);
        if !m.sized {
            self.offsets[i] = self.written;
            h.offset = self.written;
        }
        let mut buf =
            PooledBuf::with_capacity(format::local_header_len(h.name.len(), h.zip64) as usize);
        format::write_local_header(buf.vec_mut(), &h);
        if matches!(e.kind, Kind::Stored | Kind::StoredBlocks) && e.size > 0 {
            self.file = Some(self.open(i)?);
        }
        self.piece = self.after_local(i);
        Poll::Ready(Ok(self.emit(buf)))
    }

    /// Open entry `i` through the worker's open-file cache and check it is the file the
    /// manifest describes.
    fn open(&self, i: usize) -> io::Result<Arc<OpenFile>> {
        let e = &self.m.entries[i];
        let path = self.m.disk_path(e);
        match self.conn.worker.open(path) {
            Ok(f) if f.key == e.key => Ok(f),
            _ => Err(crc::changed(path)),
        }
    }

    fn data(&mut self, cx: &mut Context<'_>, i: usize) -> Poll<io::Result<Option<Chunk>>> {
        if self.file.is_none() {
            match self.open(i) {
                Ok(f) => self.file = Some(f),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.piece = Piece::Verify(i);
        self.emit_file(cx, Piece::Data(i), 0, self.m.entries[i].size)
    }

    fn block_head(&mut self, i: usize, k: u64) -> Option<Chunk> {
        let size = self.m.entries[i].size;
        let len = (size - (k * BLOCK).min(size)).min(BLOCK);
        let last = (k + 1) * BLOCK >= size;
        let mut buf = PooledBuf::with_capacity(5);
        format::write_block_header(buf.vec_mut(), len as u16, last);
        self.piece = if len > 0 {
            Piece::Block(i, k)
        } else {
            Piece::Verify(i)
        };
        self.emit(buf)
    }

    fn block(&mut self, cx: &mut Context<'_>, i: usize, k: u64) -> Poll<io::Result<Option<Chunk>>> {
        if self.file.is_none() {
            match self.open(i) {
                Ok(f) => self.file = Some(f),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let size = self.m.entries[i].size;
        let (from, to) = (k * BLOCK, ((k + 1) * BLOCK).min(size));
        self.piece = if to < size {
            Piece::BlockHead(i, k + 1)
        } else {
            Piece::Verify(i)
        };
        self.emit_file(cx, Piece::Block(i, k), from, to)
    }

    fn verify(&mut self, i: usize) -> io::Result<()> {
        let e = &self.m.entries[i];
        if let Some(file) = self.file.take() {
            if fs::file_key(&file.file.metadata()?) != e.key {
                return Err(crc::changed(self.m.disk_path(e)));
            }
        }
        self.piece = if e.kind.has_descriptor() {
            Piece::Descriptor(i)
        } else {
            Piece::Local(i + 1)
        };
        Ok(())
    }

    /// Keep up to LOOKAHEAD_JOBS small deflate entries from `i` on compressing on the blocking
    /// pool. Each job holds at most one compressed small file, so the look-ahead is bounded by
    /// LOOKAHEAD_JOBS x LOOKAHEAD_MAX bytes.
    fn top_up_lookahead(&mut self, i: usize) {
        let m = self.m.clone();
        self.ahead_next = self.ahead_next.max(i);
        while self.ahead.len() < LOOKAHEAD_JOBS && self.ahead_next < m.entries.len() {
            let j = self.ahead_next;
            self.ahead_next += 1;
            let e = &m.entries[j];
            if e.kind == Kind::Deflate && e.size <= LOOKAHEAD_MAX {
                let (root, rule, path, key, level) = (
                    self.root.clone(),
                    self.rule,
                    m.disk_path(e).to_string(),
                    e.key,
                    m.level,
                );
                let job = tokio::task::spawn_blocking(move || {
                    deflate_whole(&root, rule, &path, key, level)
                });
                self.ahead.push_back((j, job));
            }
        }
    }

    fn deflated(&mut self, cx: &mut Context<'_>, i: usize) -> Poll<io::Result<Option<Chunk>>> {
        let m = self.m.clone();
        let e = &m.entries[i];
        if e.size <= LOOKAHEAD_MAX {
            self.top_up_lookahead(i);
            let Some((j, job)) = self.ahead.front_mut() else {
                return Poll::Ready(Err(io::Error::other("look-ahead lost an entry")));
            };
            debug_assert_eq!(*j, i);
            let result = ready!(Pin::new(job).poll(cx));
            self.ahead.pop_front();
            let (bytes, crc) = result.map_err(io::Error::other)??;
            self.deflated[i] = (crc, bytes.len() as u64);
            self.piece = Piece::Descriptor(i);
            self.top_up_lookahead(i + 1);
            let n = bytes.len() as u64;
            self.written += n;
            self.remaining = self.remaining.saturating_sub(n);
            return Poll::Ready(Ok((n > 0).then_some(Chunk::Bytes(bytes))));
        }
        let rx = self.deflate.get_or_insert_with(|| {
            spawn_deflate(
                self.root.clone(),
                self.rule,
                m.disk_path(e).to_string(),
                e.key,
                m.level,
            )
        });
        match ready!(rx.poll_recv(cx)) {
            Some(Ok(DeflateMsg::Data(bytes))) => {
                let n = bytes.len() as u64;
                self.written += n;
                self.remaining = self.remaining.saturating_sub(n);
                Poll::Ready(Ok(Some(Chunk::Bytes(bytes))))
            }
            Some(Ok(DeflateMsg::Done { crc, csize })) => {
                self.deflated[i] = (crc, csize);
                self.deflate = None;
                self.piece = Piece::Descriptor(i);
                Poll::Ready(Ok(None))
            }
            Some(Err(e)) => Poll::Ready(Err(e)),
            None => Poll::Ready(Err(io::Error::other("compression stopped"))),
        }
    }

    fn descriptor(&mut self, cx: &mut Context<'_>, i: usize) -> Poll<io::Result<Option<Chunk>>> {
        let crc = ready!(self.poll_crc(cx, i))?;
        let e = &self.m.entries[i];
        let csize = if e.kind == Kind::Deflate {
            self.deflated[i].1
        } else {
            e.csize
        };
        let mut buf = PooledBuf::with_capacity(24);
        format::write_descriptor(buf.vec_mut(), crc, csize, e.size, e.zip64);
        self.piece = Piece::Local(i + 1);
        Poll::Ready(Ok(self.emit(buf)))
    }

    fn central(&mut self, cx: &mut Context<'_>, first: usize) -> Poll<io::Result<Option<Chunk>>> {
        let m = self.m.clone();
        if first == 0 && self.skip == 0 {
            self.cd_start = self.written;
        }
        // Make sure the CRCs of the whole batch are known before writing any of it.
        let mut last = first;
        let mut size = 0usize;
        while last < m.entries.len() && size < CENTRAL_BATCH {
            ready!(self.poll_crc(cx, last))?;
            size +=
                format::central_len(m.name(&m.entries[last]).len(), u64::MAX, u64::MAX, u64::MAX)
                    as usize;
            last += 1;
        }
        let mut buf = PooledBuf::with_capacity(size);
        for i in first..last {
            let crc = ready!(self.poll_crc(cx, i))?;
            let mut h = m.header(i, crc);
            if !m.sized {
                h.offset = self.offsets[i];
                if h.kind == Kind::Deflate {
                    h.csize = self.deflated[i].1;
                }
            }
            format::write_central(buf.vec_mut(), &h);
        }
        self.piece = if last < m.entries.len() {
            Piece::Central(last)
        } else {
            Piece::End
        };
        Poll::Ready(Ok(self.emit(buf)))
    }

    fn end(&mut self) -> Option<Chunk> {
        let n = self.m.entries.len() as u64;
        let (cd_offset, cd_size) = if self.m.sized {
            (self.m.cd_offset, self.m.cd_size)
        } else {
            (self.cd_start, self.written - self.cd_start)
        };
        let mut buf = PooledBuf::with_capacity(format::end_len(n, cd_size, cd_offset) as usize);
        format::write_end(buf.vec_mut(), n, cd_size, cd_offset);
        self.piece = Piece::Done;
        self.emit(buf)
    }
}
