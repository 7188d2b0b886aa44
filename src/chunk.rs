//! The pieces a response body is made of, as hyper queues them: in-memory bytes, pooled buffers,
//! and [`FileBuf`], a range of a mapped file that the IO layer recognises by its address and sends
//! by sendfile(2).

use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes};

use crate::conn::ConnShared;
use crate::fs::OpenFile;
use crate::pool::PooledSlice;
use crate::sys::MappedRange;

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

/// A range of a mapped file, registered with the connection while it lives so that the IO layer
/// can recognise its slice. Its bytes are a [`MappedRange`]'s: a token that only hyper's write
/// queue sees, and that the IO layer sends by sendfile (see `sys::MappedRange`).
pub struct FileBuf {
    range: MappedRange<OpenFile>,
    conn: Rc<ConnShared>,
}

impl FileBuf {
    /// Bytes `[pos, end)` of a mapped `file`, registered with the connection `conn`.
    pub fn new(file: Arc<OpenFile>, pos: usize, end: usize, conn: Rc<ConnShared>) -> FileBuf {
        conn.registry.borrow_mut().register(&file);
        FileBuf {
            range: MappedRange::new(file, pos, end),
            conn,
        }
    }
}

impl Drop for FileBuf {
    fn drop(&mut self) {
        self.conn
            .registry
            .borrow_mut()
            .unregister(self.range.owner());
    }
}

impl Buf for FileBuf {
    fn remaining(&self) -> usize {
        self.range.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.range.chunk()
    }

    fn advance(&mut self, n: usize) {
        self.range.advance(n);
    }
}
