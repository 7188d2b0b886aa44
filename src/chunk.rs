//! The pieces a response body is made of, as hyper queues them: in-memory bytes, pooled buffers,
//! and [`FileBuf`], a range of a mapped file that the IO layer recognises by its address and sends
//! by sendfile(2).

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::conn::ConnShared;
use crate::fs::OpenFile;
use crate::pool::PooledSlice;

/// One frame of a body.
pub enum Chunk {
    Bytes(Bytes),
    Pooled(PooledSlice),
    File(FileBuf),
}

impl Buf for Chunk {
    fn remaining(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.remaining(),
            Chunk::Pooled(p) => p.remaining(),
            Chunk::File(f) => f.remaining(),
        }
    }

    fn chunk(&self) -> &[u8] {
        match self {
            Chunk::Bytes(b) => b.chunk(),
            Chunk::Pooled(p) => p.chunk(),
            Chunk::File(f) => f.chunk(),
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Bytes(b) => b.advance(n),
            Chunk::Pooled(p) => p.advance(n),
            Chunk::File(f) => f.advance(n),
        }
    }
}

/// A range of a mapped file. Its `chunk()` is a token slice of the mapping: the IO layer sends the
/// bytes by sendfile and nothing in userspace reads them. While it lives, its mapping is
/// registered with the connection so the IO layer can recognise the slice.
pub struct FileBuf {
    file: Arc<OpenFile>,
    pos: usize,
    end: usize,
    conn: Rc<ConnShared>,
}

impl FileBuf {
    /// Bytes `[pos, end)` of a mapped `file`, registered with the connection `conn`.
    pub fn new(file: Arc<OpenFile>, pos: usize, end: usize, conn: Rc<ConnShared>) -> FileBuf {
        debug_assert!(file.map.as_ref().is_some_and(|m| end <= m.len()));
        conn.registry.borrow_mut().register(&file);
        FileBuf {
            file,
            pos,
            end,
            conn,
        }
    }
}

impl Drop for FileBuf {
    fn drop(&mut self) {
        self.conn.registry.borrow_mut().unregister(&self.file);
    }
}

impl Buf for FileBuf {
    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn chunk(&self) -> &[u8] {
        match &self.file.map {
            Some(map) => map.token_slice(self.pos, self.end),
            None => &[],
        }
    }

    fn advance(&mut self, n: usize) {
        assert!(
            n <= self.end - self.pos,
            "advance past the end of a file range"
        );
        self.pos += n;
    }
}
