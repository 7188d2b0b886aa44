//! The socket as the handshake sees it when the session may go to the kernel: reads stop at TLS
//! record boundaries, so that when the handshake ends rustls holds no part of a record sent after
//! it (the kernel could not decrypt a record cut in two). A record's 5-byte header is read first,
//! then its body; everything else passes through.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const HEADER: usize = 5;

/// A TCP stream read one record part at a time.
pub struct RecordReader {
    tcp: TcpStream,
    header: [u8; HEADER],
    /// Header bytes read of the record being read.
    have: usize,
    /// Body bytes of the current record still to read (0: a header comes next).
    left: usize,
}

impl RecordReader {
    pub fn new(tcp: TcpStream) -> RecordReader {
        RecordReader {
            tcp,
            header: [0; HEADER],
            have: 0,
            left: 0,
        }
    }

    pub fn into_inner(self) -> TcpStream {
        self.tcp
    }

    /// Account for `got` bytes just read.
    fn advance(&mut self, read: &[u8]) {
        if self.left > 0 {
            self.left -= read.len();
            return;
        }
        self.header[self.have..self.have + read.len()].copy_from_slice(read);
        self.have += read.len();
        if self.have == HEADER {
            self.left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            self.have = 0;
        }
    }
}

impl AsyncRead for RecordReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let limit = if this.left > 0 {
            this.left
        } else {
            HEADER - this.have
        };
        let n = limit.min(buf.remaining());
        let mut part = ReadBuf::new(&mut buf.initialize_unfilled()[..n]);
        ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut part))?;
        let got = part.filled().len();
        buf.advance(got);
        let filled = buf.filled();
        this.advance(&filled[filled.len() - got..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for RecordReader {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
