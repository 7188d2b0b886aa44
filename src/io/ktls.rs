//! Reading a connection whose records the kernel decrypts (kTLS). Writes need nothing: the
//! kernel encrypts whatever sendfile and sendmsg hand it. Reads go through recvmsg, because a
//! record that is not application data (an alert, a post-handshake message) arrives with its
//! type in a control message. A close_notify ends the stream; a TLS 1.3 key update, whose new
//! keys rustls no longer holds once they were handed over, closes the connection cleanly
//! (close_notify, then the close) rather than read records the kernel cannot decrypt.

use std::io;
use std::os::fd::AsFd;
use std::task::{ready, Context, Poll};

use tokio::io::{Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::sys::ktls::{recv_record, send_record, APPLICATION_DATA};

const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
/// A warning-level close_notify alert.
const CLOSE_NOTIFY: [u8; 2] = [1, 0];

/// One kTLS connection's read side.
pub struct KernelTls {
    /// Plaintext rustls decrypted before the hand-over, read first.
    prefix: Vec<u8>,
    taken: usize,
    closed: bool,
}

impl KernelTls {
    pub fn new(prefix: Vec<u8>) -> KernelTls {
        KernelTls {
            prefix,
            taken: 0,
            closed: false,
        }
    }

    /// Read application data into `buf`; end of stream on close_notify or EOF.
    pub fn poll_read(
        &mut self,
        tcp: &TcpStream,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.taken < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.taken);
            buf.put_slice(&self.prefix[self.taken..self.taken + n]);
            self.taken += n;
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            // Zeroing hyper's whole unfilled buffer on every read would cost more than the read:
            // a head fits 4 KiB, and a longer one takes more calls.
            let unfilled = buf.initialize_unfilled_to(buf.remaining().min(4096));
            let got = tcp.try_io(Interest::READABLE, || recv_record(tcp.as_fd(), unfilled));
            match got {
                Ok((n, APPLICATION_DATA)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok((n, ALERT)) if n == 2 && buf.initialize_unfilled_to(2)[1] == 0 => {
                    return Poll::Ready(Ok(()));
                }
                Ok((_, kind)) => return Poll::Ready(Err(self.refuse(tcp, kind))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// A record this connection cannot go on after: say close_notify and end it.
    fn refuse(&mut self, tcp: &TcpStream, kind: u8) -> io::Error {
        self.send_close(tcp);
        let what = match kind {
            HANDSHAKE => "a post-handshake message (key update) on a kernel TLS connection",
            ALERT => "a TLS alert",
            _ => "an unexpected TLS record",
        };
        io::Error::new(io::ErrorKind::ConnectionAborted, what)
    }

    fn send_close(&mut self, tcp: &TcpStream) {
        if !self.closed {
            self.closed = true;
            let _ = send_record(tcp.as_fd(), ALERT, &CLOSE_NOTIFY);
        }
    }

    /// Before the FIN: close_notify (best effort; a full socket buffer only loses the alert).
    pub fn close(&mut self, tcp: &TcpStream) {
        self.send_close(tcp);
    }
}
