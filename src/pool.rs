//! Per-thread slab pools of byte buffers for everything the request path writes itself: multipart
//! part heads and boundaries, the copying fallback's read buffers (and, later, ZIP headers).
//!
//! Workers are threads that never share connections, so each keeps its own free lists with no
//! lock; a buffer goes back to the free list of the thread that drops it. Two size classes cover
//! the users: small (4 KiB) for headers, large (64 KiB) for file reads. Each free list is capped,
//! so a burst does not pin memory forever.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Buf;

/// Size of a small buffer (headers, boundaries).
pub const SMALL: usize = 4 * 1024;
/// Size of a large buffer (file reads on the copying path).
pub const LARGE: usize = 64 * 1024;
/// Buffers kept per class and thread.
const KEEP: usize = 256;

#[derive(Default)]
struct FreeLists {
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
}

thread_local! {
    static FREE: RefCell<FreeLists> = RefCell::new(FreeLists::default());
}

/// A buffer borrowed from this thread's pool; returned to it on drop.
#[derive(Debug)]
pub struct PooledBuf {
    buf: Vec<u8>,
}

impl PooledBuf {
    /// An empty buffer with room for at least `min` bytes (from the pool when one fits).
    pub fn with_capacity(min: usize) -> PooledBuf {
        let class = if min <= SMALL {
            Some(SMALL)
        } else if min <= LARGE {
            Some(LARGE)
        } else {
            None
        };
        let reused = class.and_then(|c| {
            FREE.with(|f| {
                let mut f = f.borrow_mut();
                if c == SMALL {
                    f.small.pop()
                } else {
                    f.large.pop()
                }
            })
        });
        let buf = reused.unwrap_or_else(|| Vec::with_capacity(class.unwrap_or(min)));
        PooledBuf { buf }
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    #[cfg(test)]
    /// Append bytes.
    pub fn extend_from_slice(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Writable access (for reads into the buffer).
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Share it read-only, to hand out slices as body chunks.
    pub fn share(self) -> Rc<PooledBuf> {
        Rc::new(self)
    }
}

impl std::fmt::Write for PooledBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        let cap = buf.capacity();
        if cap != SMALL && cap != LARGE {
            return;
        }
        buf.clear();
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            let list = if cap == SMALL {
                &mut f.small
            } else {
                &mut f.large
            };
            if list.len() < KEEP {
                list.push(buf);
            }
        });
    }
}

/// A `[start, end)` slice of a shared pooled buffer, usable as a body chunk.
#[derive(Debug, Clone)]
pub struct PooledSlice {
    buf: Rc<PooledBuf>,
    start: usize,
    end: usize,
}

impl PooledSlice {
    /// The slice `[start, end)` of `buf`.
    pub fn new(buf: Rc<PooledBuf>, start: usize, end: usize) -> PooledSlice {
        assert!(start <= end && end <= buf.len());
        PooledSlice { buf, start, end }
    }
}

impl Buf for PooledSlice {
    fn remaining(&self) -> usize {
        self.end - self.start
    }

    fn chunk(&self) -> &[u8] {
        &self.buf.as_slice()[self.start..self.end]
    }

    fn advance(&mut self, n: usize) {
        assert!(n <= self.end - self.start);
        self.start += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_per_thread() {
        let first = PooledBuf::with_capacity(100);
        let addr = first.as_slice().as_ptr();
        drop(first);
        let again = PooledBuf::with_capacity(2000);
        assert_eq!(
            again.as_slice().as_ptr(),
            addr,
            "the small buffer came back"
        );
        let big = PooledBuf::with_capacity(LARGE + 1);
        assert!(big.buf.capacity() > LARGE);
        drop(big); // odd sizes are not pooled
    }

    #[test]
    fn slices_read_their_range() {
        let mut b = PooledBuf::with_capacity(10);
        b.extend_from_slice(b"hello world");
        let shared = b.share();
        let mut s = PooledSlice::new(shared, 6, 11);
        assert_eq!(s.chunk(), b"world");
        s.advance(2);
        assert_eq!(s.chunk(), b"rld");
    }
}
