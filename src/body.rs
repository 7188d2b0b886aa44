//! Response bodies as one type. A file range is a [`FileBuf`]: a `Buf` whose bytes are a slice of
//! the file's mapping, which the IO layer recognises and sends by sendfile(2). A small file whose
//! bytes the open-file cache holds is sent from them, in the same write as the head. Small in-memory
//! bytes (error pages) are `Bytes`; multipart heads live in pooled buffers. Files that could not be mapped
//! take a copying fallback that preads into a buffer.
//!
//! Every body knows its exact length up front, so hyper always sends Content-Length. Dropping a
//! body marks the connection idle again (its keep-alive timer starts then).

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};

use crate::chunk::{Chunk, FileBuf};
use crate::conn::ConnShared;
use crate::copy::{BlockingRead, COPY_CHUNK};
use crate::fs::OpenFile;
use crate::http::range::ByteRange;
use crate::pool::{PooledBuf, PooledSlice};
use crate::stats::WorkerStats;
use crate::zip::stream::ZipStream;

/// A response body.
pub struct Body {
    kind: Kind,
    _done: Option<ResponseDone>,
}

enum Kind {
    Empty,
    /// The length a GET would have; a HEAD response's body is never polled.
    HeadOnly(u64),
    Bytes(Option<Bytes>),
    /// A range of a small file's in-memory body (`OpenFile::small`).
    Small(Option<Bytes>),
    File(Option<FileBuf>),
    Multipart(Box<Multipart>),
    Copy(Box<CopyBody>),
    /// A ZIP archive; `sized` when its length is known.
    Zip(Box<ZipStream>, bool),
}

/// Marks the connection idle when the response is over (the body is dropped by hyper once sent).
struct ResponseDone(Rc<ConnShared>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.set_idle();
    }
}

impl Body {
    fn new(kind: Kind, conn: &Rc<ConnShared>) -> Body {
        Body {
            kind,
            _done: Some(ResponseDone(conn.clone())),
        }
    }

    /// No body (304, 204, empty files).
    pub fn empty(conn: &Rc<ConnShared>) -> Body {
        Body::new(Kind::Empty, conn)
    }

    /// A HEAD response for a representation of `len` bytes.
    pub fn head(len: u64, conn: &Rc<ConnShared>) -> Body {
        Body::new(Kind::HeadOnly(len), conn)
    }

    /// In-memory bytes (error messages, redirects).
    pub fn bytes(b: Bytes, conn: &Rc<ConnShared>) -> Body {
        if b.is_empty() {
            return Body::empty(conn);
        }
        Body::new(Kind::Bytes(Some(b)), conn)
    }

    /// `range` of `file` (inclusive): from memory when the open-file cache holds the small
    /// file's bytes, else by sendfile when the file is mapped, else copied.
    pub fn file(file: &Arc<OpenFile>, range: ByteRange, conn: &Rc<ConnShared>) -> Body {
        if let Some(bytes) = file.small.get() {
            let part = bytes.slice(range.first as usize..=range.last as usize);
            return Body::new(Kind::Small(Some(part)), conn);
        }
        if file.map.is_none() {
            let copy = CopyBody {
                file: file.clone(),
                pos: range.first,
                end: range.last + 1,
                conn: conn.clone(),
                read: BlockingRead::default(),
            };
            return Body::new(Kind::Copy(Box::new(copy)), conn);
        }
        let buf = FileBuf::new(
            file.clone(),
            range.first as usize,
            range.last as usize + 1,
            conn.clone(),
        );
        Body::new(Kind::File(Some(buf)), conn)
    }

    /// multipart/byteranges of several ranges of a mapped `file`, `boundary` without the leading
    /// dashes. Every part head and the closing delimiter are written into one pooled buffer; the
    /// parts' data are file ranges sent by sendfile like any other.
    pub fn multipart(
        file: &Arc<OpenFile>,
        ranges: &[ByteRange],
        boundary: &str,
        conn: &Rc<ConnShared>,
    ) -> Body {
        use std::fmt::Write;
        let ct = file
            .content_type
            .to_str()
            .unwrap_or("application/octet-stream");
        let mut text = PooledBuf::with_capacity(
            ranges.len() * (boundary.len() + ct.len() + 80) + boundary.len() + 8,
        );
        let mut ends = smallvec::SmallVec::<[usize; 16]>::new();
        let mut total = 0u64;
        for r in ranges {
            let _ = write!(
                text,
                "\r\n--{boundary}\r\nContent-Type: {ct}\r\nContent-Range: bytes {}-{}/{}\r\n\r\n",
                r.first, r.last, file.len
            );
            ends.push(text.len());
            total += r.len();
        }
        let _ = write!(text, "\r\n--{boundary}--\r\n");
        total += text.len() as u64;
        let text = text.share();
        let mut heads = smallvec::SmallVec::new();
        let mut start = 0;
        for end in ends {
            heads.push(PooledSlice::new(text.clone(), start, end));
            start = end;
        }
        let tail = PooledSlice::new(text.clone(), start, text.len());
        let parts = Multipart {
            file: file.clone(),
            ranges: ranges.iter().copied().collect(),
            heads,
            tail: Some(tail),
            next: 0,
            head_sent: false,
            remaining: total,
            conn: conn.clone(),
        };
        Body::new(Kind::Multipart(Box::new(parts)), conn)
    }

    /// How this body leaves (for the access log).
    pub fn path(&self) -> crate::access_log::BodyPath {
        use crate::access_log::BodyPath;
        match &self.kind {
            Kind::Empty | Kind::HeadOnly(_) => BodyPath::None,
            Kind::Bytes(_) => BodyPath::Memory,
            Kind::Small(_) => BodyPath::Small,
            Kind::File(_) | Kind::Multipart(_) => BodyPath::Sendfile,
            Kind::Copy(_) => BodyPath::Copy,
            Kind::Zip(..) => BodyPath::Zip,
        }
    }

    /// A ZIP archive stream (exact length when `sized`, chunked otherwise).
    pub fn zip(stream: ZipStream, sized: bool, conn: &Rc<ConnShared>) -> Body {
        Body::new(Kind::Zip(Box::new(stream), sized), conn)
    }
}

impl http_body::Body for Body {
    type Data = Chunk;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunk>, io::Error>>> {
        let this = self.get_mut();
        let chunk = match &mut this.kind {
            Kind::Empty | Kind::HeadOnly(_) => None,
            Kind::Bytes(b) => b.take().map(Chunk::Bytes),
            Kind::Small(b) => b.take().map(|b| {
                if let Some(done) = &this._done {
                    WorkerStats::add(&done.0.worker.stats().small_body_bytes, b.len() as u64);
                }
                Chunk::Bytes(b)
            }),
            Kind::File(f) => f.take().map(Chunk::File),
            Kind::Multipart(m) => m.next_chunk(),
            Kind::Copy(c) => match ready!(c.poll_chunk(cx)) {
                Ok(chunk) => chunk,
                Err(e) => return Poll::Ready(Some(Err(e))),
            },
            Kind::Zip(z, _) => match std::task::ready!(z.poll_next(cx)) {
                Some(Ok(chunk)) => {
                    WorkerStats::add(&z.conn().worker.stats().zip_bytes, chunk.remaining() as u64);
                    Some(chunk)
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => None,
            },
        };
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::HeadOnly(_) => false,
            Kind::Bytes(b) | Kind::Small(b) => b.is_none(),
            Kind::File(f) => f.is_none(),
            Kind::Multipart(m) => m.remaining == 0,
            Kind::Copy(c) => c.pos >= c.end,
            Kind::Zip(z, _) => z.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let n = match &self.kind {
            Kind::Empty => 0,
            Kind::HeadOnly(n) => *n,
            Kind::Bytes(b) | Kind::Small(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Kind::File(f) => f.as_ref().map_or(0, |f| f.remaining() as u64),
            Kind::Multipart(m) => m.remaining,
            Kind::Copy(c) => c.end - c.pos,
            Kind::Zip(_, false) => return SizeHint::default(),
            Kind::Zip(z, true) => z.remaining(),
        };
        SizeHint::with_exact(n)
    }
}

struct Multipart {
    file: Arc<OpenFile>,
    ranges: smallvec::SmallVec<[ByteRange; 16]>,
    heads: smallvec::SmallVec<[PooledSlice; 16]>,
    tail: Option<PooledSlice>,
    next: usize,
    head_sent: bool,
    remaining: u64,
    conn: Rc<ConnShared>,
}

impl Multipart {
    fn next_chunk(&mut self) -> Option<Chunk> {
        let chunk = if self.next < self.ranges.len() {
            if !self.head_sent {
                self.head_sent = true;
                Chunk::Pooled(self.heads[self.next].clone())
            } else {
                let r = self.ranges[self.next];
                self.next += 1;
                self.head_sent = false;
                // Multipart bodies are only built for mapped files (the service sends an
                // unmappable file whole instead), so every part leaves by sendfile, or from
                // memory when the file is small.
                if let Some(bytes) = self.file.small.get() {
                    let part = bytes.slice(r.first as usize..=r.last as usize);
                    WorkerStats::add(
                        &self.conn.worker.stats().small_body_bytes,
                        part.len() as u64,
                    );
                    Chunk::Bytes(part)
                } else {
                    Chunk::File(FileBuf::new(
                        self.file.clone(),
                        r.first as usize,
                        r.last as usize + 1,
                        self.conn.clone(),
                    ))
                }
            }
        } else {
            Chunk::Pooled(self.tail.take()?)
        };
        self.remaining -= chunk.remaining() as u64;
        Some(chunk)
    }
}

/// The copying fallback for files the kernel would not map: reads on the blocking pool
/// (`copy::BlockingRead`), handed to hyper as they come.
struct CopyBody {
    file: Arc<OpenFile>,
    pos: u64,
    end: u64,
    conn: Rc<ConnShared>,
    read: BlockingRead,
}

impl CopyBody {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Chunk>>> {
        if self.pos >= self.end {
            return Poll::Ready(Ok(None));
        }
        let n = (self.end - self.pos).min(COPY_CHUNK as u64) as usize;
        let bytes = ready!(self.read.poll_read(cx, &self.file, self.pos, n))?;
        self.pos += bytes.len() as u64;
        WorkerStats::add(&self.conn.worker.stats().copied_bytes, bytes.len() as u64);
        Poll::Ready(Ok(Some(Chunk::Bytes(bytes))))
    }
}
