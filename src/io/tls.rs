//! Userspace TLS under [`super::SendfileIo`]: records are read and decrypted by rustls, plaintext
//! is encrypted by rustls and its records written with one writev. File bodies never come from
//! the mapping here: `SendfileIo::poll_send_file_tls` reads them by pread into a pooled buffer.
//! At most a held head plus one chunk of records wait in rustls's buffer, whatever the client's
//! speed.

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::ServerConnection;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

use super::SendfileIo;
use crate::fs::OpenFile;
use crate::stats::WorkerStats;

/// Largest plaintext piece of a file body read and encrypted at once.
pub const BODY_CHUNK: usize = crate::pool::LARGE;

/// Most record bytes rustls may hold for sending: a held head (or small body) and one chunk.
const SEND_BUFFER: usize = 2 * BODY_CHUNK + 4096;

/// One connection's TLS session after the handshake.
pub struct TlsSession {
    conn: ServerConnection,
    /// Records of a head are queued and held back so that they leave with the body's first
    /// chunk (what MSG_MORE does for a plain connection).
    holding: bool,
    /// close_notify has been queued.
    closing: bool,
}

/// The socket as rustls's reader and writer: non-blocking calls that clear tokio's readiness on
/// EAGAIN, so that the next poll waits for epoll.
struct Sock<'a>(&'a TcpStream);

impl Read for Sock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl TlsSession {
    /// A session whose handshake is complete.
    pub fn new(mut conn: ServerConnection) -> TlsSession {
        conn.set_buffer_limit(Some(SEND_BUFFER));
        TlsSession {
            conn,
            holding: false,
            closing: false,
        }
    }

    /// Write queued records until none are left; pending while the socket is full.
    pub fn poll_flush(&mut self, tcp: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.holding = false;
        while self.conn.wants_write() {
            ready!(tcp.poll_write_ready(cx))?;
            match self.conn.write_tls(&mut Sock(tcp)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Start sending what was just queued; the rest leaves at the next write or flush.
    fn push(&mut self, tcp: &TcpStream, cx: &mut Context<'_>) -> io::Result<()> {
        match self.poll_flush(tcp, cx) {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Encrypt ordinary slices (heads, small bodies, chunk framing). `hold`: file data follows,
    /// so keep the records for it. Pending while older records still wait for the socket.
    pub fn poll_write(
        &mut self,
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        hold: bool,
    ) -> Poll<io::Result<usize>> {
        if !self.holding {
            ready!(self.poll_flush(tcp, cx))?;
        }
        let mut n = self.conn.writer().write_vectored(bufs)?;
        if n == 0 {
            // A held head filled the buffer: send it, then queue these.
            ready!(self.poll_flush(tcp, cx))?;
            n = self.conn.writer().write_vectored(bufs)?;
        }
        if hold && n == bufs.iter().map(|b| b.len()).sum::<usize>() {
            self.holding = true;
        } else {
            self.push(tcp, cx)?;
        }
        Poll::Ready(Ok(n))
    }

    /// Wait until a file chunk may be queued (nothing but a held head ahead of it).
    pub fn poll_room(&mut self, tcp: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.holding {
            return Poll::Ready(Ok(()));
        }
        self.poll_flush(tcp, cx)
    }

    /// Encrypt file bytes read for the body and start sending them with any held head.
    pub fn write_body(
        &mut self,
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        plain: &[u8],
    ) -> io::Result<usize> {
        let n = self.conn.writer().write(plain)?;
        self.push(tcp, cx)?;
        Ok(n)
    }

    /// Read plaintext into `buf`: decrypt what rustls holds, else read records from the socket.
    /// A peer that closes without close_notify ends the stream like any EOF (HTTP framing tells
    /// a cut request from a whole one).
    pub fn poll_read(
        &mut self,
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            // Copied out of rustls's buffer rather than read into `buf`, which would first zero
            // hyper's whole unfilled read buffer on every call.
            let mut reader = self.conn.reader();
            let taken = reader.fill_buf().map(|chunk| {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                n
            });
            match taken {
                Ok(n) => {
                    reader.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
            ready!(tcp.poll_read_ready(cx))?;
            match self.conn.read_tls(&mut Sock(tcp)) {
                Ok(_) => self.process(tcp, cx)?,
                Err(e) if retry(&e) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Decrypt the records read. Answers rustls queues (a KeyUpdate of our own, an alert) start
    /// leaving at once.
    fn process(&mut self, tcp: &TcpStream, cx: &mut Context<'_>) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(_) => {
                if self.conn.wants_write() && !self.holding {
                    self.push(tcp, cx)?;
                }
                Ok(())
            }
            Err(e) => {
                let _ = self.conn.write_tls(&mut Sock(tcp));
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Queue close_notify (once); the caller flushes it like any record.
    pub fn queue_close(&mut self) {
        if !self.closing {
            self.conn.send_close_notify();
            self.closing = true;
        }
    }
}

impl SendfileIo {
    /// HTTPS: send records still queued before hyper's flush completes, under the same send
    /// timeout and minimum rate as a write.
    pub(super) fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(tls) = &mut self.tls else {
            return Poll::Ready(Ok(()));
        };
        match tls.poll_flush(&self.tcp, cx) {
            Poll::Ready(r) => {
                self.write_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let (min_rate, window, send_timeout) = {
                    let l = &self.conn.worker.config().limits;
                    (l.min_send_rate, l.min_send_rate_window, l.send_timeout)
                };
                match ready!(self.poll_waiting(cx, min_rate, window, send_timeout)) {
                    Err(e) => Poll::Ready(Err(e)),
                    Ok(_) => Poll::Pending,
                }
            }
        }
    }

    /// HTTPS: part of a mapped slice, read by pread into a pooled buffer (never from the
    /// mapping: a file cut short gives an aborted response, not SIGBUS) and encrypted.
    pub(super) fn poll_send_file_tls(
        &mut self,
        cx: &mut Context<'_>,
        file: Arc<OpenFile>,
        offset: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        if let Some(tls) = &mut self.tls {
            ready!(tls.poll_room(&self.tcp, cx))?;
        }
        let chunk = ready!(self.poll_warm(cx, &file, offset, len.min(BODY_CHUNK)));
        let mut buf = crate::pool::PooledBuf::with_capacity(chunk);
        let n = read_at(&file, offset, chunk, buf.vec_mut())?;
        if n == 0 {
            return Poll::Ready(Err(self.shrank()));
        }
        let Some(tls) = &mut self.tls else {
            return Poll::Ready(Err(io::Error::other("not a TLS connection")));
        };
        let sent = tls.write_body(&self.tcp, cx, &buf.as_slice()[..n])?;
        WorkerStats::add(&self.stats().tls_body_bytes, sent as u64);
        Poll::Ready(Ok(sent))
    }
}

/// Read up to `len` bytes of `file` at `offset` into `buf` (replacing its contents); fewer only
/// at the end of the file.
fn read_at(file: &OpenFile, offset: usize, len: usize, buf: &mut Vec<u8>) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    buf.clear();
    buf.resize(len, 0);
    let mut got = 0;
    while got < len {
        match file.file.read_at(&mut buf[got..], (offset + got) as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(got)
}
