//! The IO type hyper writes to: a `TcpStream` wrapper that turns writes of mapped file slices into
//! sendfile(2) and everything else into one sendmsg(2) (with MSG_MORE when file data follows), and
//! that enforces the read-side deadlines (keep-alive idle, request-head timeout).
//!
//! hyper is configured with `writev(true)`, so it never copies body `Buf`s: it hands us `IoSlice`s
//! of the head and of each queued body chunk. A slice that lies inside a mapping registered by a
//! live [`crate::chunk::FileBuf`] of this connection is recognised by its address and sent from the
//! file's page cache. We return exactly what the kernel accepted, so hyper's accounting stays
//! right on partial writes. See docs/architecture.md.

use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

mod drip;
mod ktls;
mod residency;
mod timer;
mod tls;

use drip::DripWatch;
use ktls::KernelTls;
use residency::{still_has_bytes, warm_range, ResidentWindow, READAHEAD_CHUNKS};
use timer::{poll_lazy_deadline, poll_timer};
use tls::TlsSession;

/// How the bytes of a connection are carried.
pub enum Security {
    /// Plain HTTP.
    Plain,
    /// HTTPS encrypted by rustls in this process.
    Rustls(Box<rustls::ServerConnection>),
    /// HTTPS encrypted by the kernel; the plaintext rustls decrypted before the hand-over.
    Kernel(Vec<u8>),
}

use crate::conn::{ConnShared, Phase};
use crate::framing::StreamGuard;
use crate::fs::OpenFile;
use crate::stats::WorkerStats;
use crate::units::Rate;

/// The IO object handed to hyper (through `TokioIo`).
pub struct SendfileIo {
    tcp: TcpStream,
    conn: std::rc::Rc<ConnShared>,
    deadline_timer: Option<Pin<Box<Sleep>>>,
    /// When the pending write must have made progress by (send timeout), and its timer.
    write_deadline: Option<Instant>,
    write_timer: Option<Pin<Box<Sleep>>>,
    /// A cold-file readahead running on the blocking pool.
    prefetch: Option<JoinHandle<()>>,
    /// A byte window of one file known to be in the page cache, so that the partial sendfiles
    /// of a big body (one socket buffer each) probe every page once, not once per call.
    resident: Option<ResidentWindow>,
    /// Wakes a write held back by the bandwidth limit.
    pace_timer: Option<Pin<Box<Sleep>>>,
    /// Measures how fast the client takes bytes while we wait on it (the minimum-rate rule).
    drip: DripWatch,
    /// Follows the request stream across reads and spoils ambiguous heads.
    guard: StreamGuard,
    /// Bytes written since this connection last let the worker's other tasks run.
    burst: usize,
    /// That step aside in progress: tokio's yield, which wakes us only after the runtime has
    /// polled its IO driver, so that the connections waiting on it get their turn.
    stepping_aside: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The TLS session of an HTTPS connection (userspace TLS); `None` for plain HTTP.
    tls: Option<Box<TlsSession>>,
    /// The read side of a kernel TLS connection (its writes are plain ones).
    kernel_tls: Option<Box<KernelTls>>,
}

impl SendfileIo {
    /// Wrap an accepted connection (with its TLS session, for HTTPS). The first request must
    /// start within the header timeout.
    pub fn new(tcp: TcpStream, conn: std::rc::Rc<ConnShared>, security: Security) -> Self {
        let (tls, kernel_tls) = match security {
            Security::Plain => (None, None),
            Security::Rustls(session) => (Some(Box::new(TlsSession::new(*session))), None),
            Security::Kernel(prefix) => (None, Some(Box::new(KernelTls::new(prefix)))),
        };
        let deadline = Instant::now() + conn.worker.config().limits.header_timeout;
        conn.phase.set(Phase::Idle {
            deadline: Some(deadline),
        });
        SendfileIo {
            tcp,
            conn,
            deadline_timer: None,
            write_deadline: None,
            write_timer: None,
            prefetch: None,
            resident: None,
            pace_timer: None,
            drip: DripWatch::default(),
            guard: StreamGuard::default(),
            burst: 0,
            stepping_aside: None,
            tls,
            kernel_tls,
        }
    }

    fn stats(&self) -> &WorkerStats {
        self.conn.worker.stats()
    }

    /// Run a non-blocking socket write under tokio's readiness model: wait for writability, try,
    /// and on EAGAIN let tokio clear readiness and wait again. EINTR is retried.
    fn poll_io<F>(&self, cx: &mut Context<'_>, mut op: F) -> Poll<io::Result<usize>>
    where
        F: FnMut() -> io::Result<usize>,
    {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_io(Interest::WRITABLE, &mut op) {
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    continue
                }
                other => return Poll::Ready(other),
            }
        }
    }

    /// Send part of a mapped slice: `len` bytes of `file` from `offset`.
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: Arc<OpenFile>,
        offset: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let chunk = ready!(self.poll_warm(cx, &file, offset, len));
        match ready!(self.poll_sendfile_once(cx, &file, offset, chunk)) {
            Ok(0) => Poll::Ready(Err(self.shrank())),
            Ok(n) => {
                let s = self.stats();
                WorkerStats::add(&s.sendfile_bytes, n as u64);
                WorkerStats::add(&s.sendfile_calls, 1);
                Poll::Ready(Ok(n))
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
            {
                self.poll_copy_from_mapping(cx, &file, offset, chunk)
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// The file ended before the bytes its response announced: count it and abort.
    fn shrank(&self) -> io::Error {
        WorkerStats::add(&self.stats().truncated_aborts, 1);
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while it was being sent",
        )
    }

    /// How much of `len` bytes of `file` at `offset` to send now, once they are in the page
    /// cache. Cold pages are read in on the blocking pool first, so that sendfile does not
    /// stall every other connection of this worker on a disk read; the readahead covers a few
    /// chunks, so a cold stream pays one blocking-pool round trip per READAHEAD_CHUNKS chunks.
    fn poll_warm(
        &mut self,
        cx: &mut Context<'_>,
        file: &Arc<OpenFile>,
        offset: usize,
        len: usize,
    ) -> Poll<usize> {
        let (max_chunk, cold_check_min) = {
            let c = self.conn.worker.config();
            (c.socket.sendfile_max_chunk, c.socket.cold_check_min)
        };
        let mut chunk = len.min(max_chunk);
        // Inside a window already known resident: send at most to its end, then probe again.
        let known = match self.resident {
            Some(w) if w.covers(file, offset, offset + 1) => {
                chunk = chunk.min(w.end - offset);
                true
            }
            _ => false,
        };
        if self.prefetch.is_none() && !known && file.len >= cold_check_min {
            if file.is_resident(offset, chunk) {
                self.resident = Some(ResidentWindow::of(file, offset, offset + chunk));
            } else {
                WorkerStats::add(&self.stats().cold_prefetches, 1);
                let ahead = (chunk * READAHEAD_CHUNKS).min(file.len as usize - offset);
                let f = file.clone();
                self.prefetch = Some(tokio::task::spawn_blocking(move || {
                    warm_range(&f.file, offset as u64, ahead);
                }));
                self.resident = Some(ResidentWindow::of(file, offset, offset + ahead));
            }
        }
        if let Some(handle) = &mut self.prefetch {
            let _ = ready!(Pin::new(handle).poll(cx));
            self.prefetch = None;
        }
        Poll::Ready(chunk)
    }

    /// One sendfile(2) of `chunk` bytes under tokio's readiness model.
    fn poll_sendfile_once(
        &mut self,
        cx: &mut Context<'_>,
        file: &Arc<OpenFile>,
        offset: usize,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        let sock = self.tcp.as_fd();
        let fd = file.file.as_fd();
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let mut partial = 0;
            let attempt = self.tcp.try_io(Interest::WRITABLE, || {
                let n = crate::sys::sendfile(sock, fd, offset as u64, chunk)?;
                if n > 0 && n < chunk && still_has_bytes(file, offset + n) {
                    // A short write means the socket buffer is full (nginx reads it the same
                    // way). Report the bytes, but have tokio clear write readiness, so the next
                    // attempt waits for epoll to say there is room again instead of trickling
                    // out one short sendfile per freed segment. A short write at end of file (it
                    // shrank) is returned as is: the next call gets 0 and aborts the response.
                    partial = n;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match attempt {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && partial > 0 => {
                    return Poll::Ready(Ok(partial))
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                other => return Poll::Ready(other),
            }
        }
    }

    /// A file that cannot be spliced (an unusual file system): the kernel copies from the
    /// mapping instead. A truncated page gives EFAULT, never SIGBUS.
    fn poll_copy_from_mapping(
        &mut self,
        cx: &mut Context<'_>,
        file: &Arc<OpenFile>,
        offset: usize,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        let Some(map) = file.map.as_ref() else {
            return Poll::Ready(Err(io::Error::other("a registered file is not mapped")));
        };
        let sock = self.tcp.as_fd();
        let n = ready!(self.poll_io(cx, || crate::sys::send_mapped(
            sock,
            map,
            offset,
            offset + chunk
        )))?;
        WorkerStats::add(&self.stats().copied_bytes, n as u64);
        Poll::Ready(Ok(n))
    }
}

impl SendfileIo {
    /// Give up on a client that does not read: the close will reset the connection (SO_LINGER
    /// 0), so that the megabytes still queued in its socket buffer are dropped at once instead
    /// of trickling out to it after we let go (nginx's reset_timedout_connection).
    fn abort(&self, e: io::Error) -> io::Error {
        let _ = socket2::SockRef::from(&self.tcp).set_linger(Some(std::time::Duration::ZERO));
        e
    }
}

impl SendfileIo {
    /// How many bytes the bandwidth limit lets this write send (all of them when unpaced);
    /// pending on the pace timer while it allows none.
    fn poll_pace(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<usize> {
        let Some(pacer) = self.conn.pace.get() else {
            return Poll::Ready(usize::MAX);
        };
        let want = bufs.iter().map(|b| b.len()).sum();
        loop {
            match pacer.allowance(Instant::now(), want) {
                Ok(n) => return Poll::Ready(n),
                Err(at) => {
                    // Our own limit is the bottleneck, not the client.
                    self.drip.window = None;
                    ready!(poll_timer(&mut self.pace_timer, at, cx));
                }
            }
        }
    }

    /// Account for `n` bytes written, and judge the minimum-rate window if one is open.
    fn wrote(
        &mut self,
        n: usize,
        min_rate: Option<Rate>,
        window: std::time::Duration,
    ) -> io::Result<usize> {
        self.write_deadline = None;
        if let Some(mut pacer) = self.conn.pace.get() {
            pacer.sent(n);
            self.conn.pace.set(Some(pacer));
        }
        self.drip.written += n as u64;
        self.conn
            .bytes_sent
            .set(self.conn.bytes_sent.get() + n as u64);
        if let (Some(min_rate), Some(_)) = (min_rate, self.drip.window) {
            if let Err(e) = self.drip.judge(&self.tcp, Instant::now(), min_rate, window) {
                WorkerStats::add(&self.stats().min_rate_closes, 1);
                return Err(self.abort(e));
            }
        }
        Ok(n)
    }

    /// The write waits on the client: judge the minimum rate at each window's end, and give up
    /// after `send_timeout` without progress. A client that stops reading must not hold its
    /// connection (and whatever the response holds: a file, an archive slot) forever.
    fn poll_waiting(
        &mut self,
        cx: &mut Context<'_>,
        min_rate: Option<Rate>,
        window: std::time::Duration,
        send_timeout: std::time::Duration,
    ) -> Poll<io::Result<usize>> {
        if let Some(min_rate) = min_rate {
            self.drip.open(&self.tcp, Instant::now());
            while self.drip.poll_window_end(cx, window).is_ready() {
                if let Err(e) = self.drip.judge(&self.tcp, Instant::now(), min_rate, window) {
                    WorkerStats::add(&self.stats().min_rate_closes, 1);
                    return Poll::Ready(Err(self.abort(e)));
                }
            }
        }
        let deadline = *self
            .write_deadline
            .get_or_insert_with(|| Instant::now() + send_timeout);
        if poll_timer(&mut self.write_timer, deadline, cx).is_ready() {
            WorkerStats::add(&self.stats().send_timeouts, 1);
            let e = io::Error::new(io::ErrorKind::TimedOut, "send timeout");
            return Poll::Ready(Err(self.abort(e)));
        }
        Poll::Pending
    }
}

impl AsyncRead for SendfileIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.conn.phase.get();
        let before = buf.filled().len();
        let read = match (&mut this.tls, &mut this.kernel_tls) {
            (Some(tls), _) => tls.poll_read(&this.tcp, cx, buf),
            (None, Some(kernel)) => kernel.poll_read(&this.tcp, cx, buf),
            (None, None) => Pin::new(&mut this.tcp).poll_read(cx, buf),
        };
        match read {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    if let Phase::Idle { .. } = phase {
                        this.conn.phase.set(Phase::Head { deadline: None });
                        this.drip.window = None;
                    }
                    this.guard.scan(&mut buf.filled_mut()[before..]);
                    this.conn.framing.set(this.guard.framing());
                    this.conn.spoiled.set(this.guard.spoiled());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = match phase {
                    Phase::Idle { deadline: Some(d) } | Phase::Head { deadline: Some(d) } => d,
                    Phase::Idle { deadline: None } => this.conn.arm_keepalive(Instant::now()),
                    Phase::Head { deadline: None } => {
                        let timeout = this.conn.worker.config().limits.header_timeout;
                        let d = Instant::now() + timeout;
                        this.conn.phase.set(Phase::Head { deadline: Some(d) });
                        d
                    }
                    Phase::Busy => {
                        let mut slot = this.conn.read_waker.borrow_mut();
                        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            *slot = Some(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                };
                if poll_lazy_deadline(&mut this.deadline_timer, deadline, cx).is_ready() {
                    let what = if matches!(phase, Phase::Head { .. }) {
                        "request head timeout"
                    } else {
                        "idle timeout"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for SendfileIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let (mut min_rate, window, send_timeout, max_chunk) = {
            let c = this.conn.worker.config();
            let l = &c.limits;
            let chunk = c.socket.sendfile_max_chunk;
            (
                l.min_send_rate,
                l.min_send_rate_window,
                l.send_timeout,
                chunk,
            )
        };
        if this.burst >= max_chunk {
            // A client that reads as fast as we send never makes a write wait, so hyper would
            // write its whole body in one poll (tokio's budget allows 128 sendfiles: 256 MiB)
            // while every other connection of the worker waits. Step aside after each chunk's
            // worth, as nginx does after sendfile_max_chunk. (A plain self-wake would not do: the
            // LocalSet polls 61 ready tasks before the IO driver again.)
            let step = this
                .stepping_aside
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            ready!(step.as_mut().poll(cx));
            this.stepping_aside = None;
            this.burst = 0;
            WorkerStats::add(&this.stats().write_yields, 1);
        }
        if let Some(pacer) = this.conn.pace.get() {
            // A response we pace slowly must not be judged against a faster minimum.
            min_rate = min_rate.and_then(|m| Rate::new(m.get().min(pacer.rate().get() / 2)));
        }
        let allowed = ready!(this.poll_pace(cx, bufs));
        match this.poll_write_inner(cx, bufs, allowed) {
            Poll::Ready(Ok(n)) => {
                this.burst += n;
                Poll::Ready(this.wrote(n, min_rate, window))
            }
            Poll::Ready(Err(e)) => {
                this.write_deadline = None;
                Poll::Ready(Err(e))
            }
            Poll::Pending => {
                this.burst = 0;
                this.poll_waiting(cx, min_rate, window, send_timeout)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flush_tls(cx))?;
        // hyper flushes once its queue is written. If the response body is done by then (the
        // connection went idle), the exchange's last byte is in the kernel: log it now.
        if let Phase::Idle { .. } = this.conn.phase.get() {
            this.conn.finish_exchange(false);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(tls) = &mut this.tls {
            // close_notify leaves under the send timeout like any record: a client that stopped
            // reading cannot hold the close.
            tls.queue_close();
            ready!(this.poll_flush_tls(cx))?;
        }
        if let Some(kernel) = &mut this.kernel_tls {
            kernel.close(&this.tcp);
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

impl SendfileIo {
    /// One write: sendfile for a mapped slice, else one sendmsg of the ordinary slices before
    /// the next mapped one.
    fn poll_write_inner(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        allowed: usize,
    ) -> Poll<io::Result<usize>> {
        let this = self;
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        let mapped = this
            .conn
            .registry
            .borrow()
            .lookup(&bufs[first])
            .map(|(f, off)| (f.clone(), off));
        if let Some((file, offset)) = mapped {
            let len = bufs[first].len().min(allowed);
            if this.tls.is_some() {
                return this.poll_send_file_tls(cx, file, offset, len);
            }
            return this.poll_send_file(cx, file, offset, len);
        }
        // A run of ordinary slices (head, chunk sizes, multipart boundaries): one sendmsg. If a
        // mapped slice follows, MSG_MORE keeps the kernel from sending the head on its own.
        let registry = this.conn.registry.borrow();
        let mut end = first + 1;
        while end < bufs.len() && (bufs[end].is_empty() || registry.lookup(&bufs[end]).is_none()) {
            end += 1;
        }
        drop(registry);
        let more = end < bufs.len();
        let sock = this.tcp.as_fd();
        let run = &bufs[first..end];
        if let Some(tls) = &mut this.tls {
            let cut = cut_to(run, allowed);
            return tls.poll_write(&this.tcp, cx, &cut, more);
        }
        if run.iter().map(|b| b.len()).sum::<usize>() > allowed {
            // Paced: send only the allowance.
            let cut = cut_to(run, allowed);
            return this.poll_io(cx, || crate::sys::send_vectored(sock, &cut, false));
        }
        this.poll_io(cx, || crate::sys::send_vectored(sock, run, more))
    }
}

/// The first `allowed` bytes of `run`, cut at a slice boundary or inside one.
fn cut_to<'a>(run: &'a [IoSlice<'a>], allowed: usize) -> SmallVec<[IoSlice<'a>; 8]> {
    let mut cut = SmallVec::new();
    let mut left = allowed;
    for b in run {
        if left == 0 {
            break;
        }
        let n = b.len().min(left);
        cut.push(IoSlice::new(&b[..n]));
        left -= n;
    }
    cut
}
