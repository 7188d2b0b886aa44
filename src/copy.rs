//! The copying fallback, for files the kernel would not map (an unusual file system): their
//! bytes are read with pread(2) on the blocking pool, one read in flight per body, so that a
//! slow disk never stalls the worker. What it reads is counted as copied bytes.

use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::fs::OpenFile;

/// Largest read at once.
pub const COPY_CHUNK: usize = 64 * 1024;

/// One pread at a time on the blocking pool.
#[derive(Default)]
pub struct BlockingRead {
    /// The read in flight and the offset it reads from.
    job: Option<(u64, JoinHandle<io::Result<Vec<u8>>>)>,
}

impl BlockingRead {
    /// Exactly `len` bytes of `file` from `at` (an error if the file ends first: it shrank).
    /// Asking again for the same offset while the read runs waits for it.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        file: &Arc<OpenFile>,
        at: u64,
        len: usize,
    ) -> Poll<io::Result<Bytes>> {
        if !matches!(&self.job, Some((offset, _)) if *offset == at) {
            let f = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; len];
                f.file.read_exact_at(&mut buf, at).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        io::Error::new(e.kind(), "file shrank while it was being sent")
                    } else {
                        e
                    }
                })?;
                Ok(buf)
            });
            self.job = Some((at, read));
        }
        let Some((_, job)) = self.job.as_mut() else {
            return Poll::Ready(Err(io::Error::other("no read in flight")));
        };
        let done = ready!(Pin::new(job).poll(cx));
        self.job = None;
        Poll::Ready(match done {
            Ok(read) => read.map(Bytes::from),
            Err(e) => Err(io::Error::other(e)),
        })
    }
}
