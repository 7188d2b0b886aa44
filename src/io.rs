//! The IO type hyper writes to: a `TcpStream` wrapper that turns writes of mapped file slices into
//! sendfile(2) and everything else into one sendmsg(2) (with MSG_MORE when file data follows), and
//! that enforces the read-side deadlines (keep-alive idle, request-head timeout).
//!
//! hyper is configured with `writev(true)`, so it never copies body `Buf`s: it hands us `IoSlice`s
//! of the head and of each queued body chunk. A slice that lies inside a mapping registered by a
//! live [`crate::body::FileBuf`] of this connection is recognised by its address and sent from the
//! file's page cache. We return exactly what the kernel accepted, so hyper's accounting stays
//! right on partial writes. See docs/architecture.md and ../shared/research/sendfile-design.md.

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

use crate::conn::{ConnShared, Phase};
use crate::framing::StreamGuard;
use crate::fs::OpenFile;
use crate::stats::WorkerStats;

/// Whether `[offset, offset + len)` of `file` is in the page cache: cachestat(2) where the kernel
/// has it, else mincore(2) on the mapping. A failed probe counts as resident (never stall on it).
fn is_resident(file: &OpenFile, offset: usize, len: usize) -> bool {
    static NO_CACHESTAT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    use std::sync::atomic::Ordering::Relaxed;
    if !NO_CACHESTAT.load(Relaxed) {
        match crate::sys::page_cache_has(&file.file, offset as u64, len) {
            Ok(yes) => return yes,
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => NO_CACHESTAT.store(true, Relaxed),
            Err(_) => return true,
        }
    }
    file.map.as_ref().is_none_or(|m| m.is_resident(offset, len))
}

/// Bring `[offset, offset + len)` of `file` into the page cache and wait until it is there:
/// readahead(2) submits the reads but may return before they finish, and a sendfile on the worker
/// would then wait for the disk after all. A one-byte pread every 128 KiB (the reads' unit) and at
/// the end blocks until those pages are read; only those bytes are copied. Blocking pool only.
fn warm_range(file: &std::fs::File, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    const STRIDE: u64 = 128 * 1024;
    let _ = crate::sys::readahead(file, offset, len);
    let end = offset + len as u64;
    let mut byte = [0u8; 1];
    let mut at = offset;
    while at < end {
        if file.read_at(&mut byte, at).unwrap_or(0) == 0 {
            return;
        }
        at += STRIDE;
    }
    let _ = file.read_at(&mut byte, end.saturating_sub(1));
}

/// Whether `file` still extends past `pos` (one fstat; only asked after a short sendfile).
fn still_has_bytes(file: &OpenFile, pos: usize) -> bool {
    file.file.metadata().is_ok_and(|m| m.len() > pos as u64)
}

/// How many sendfile chunks one cold-file readahead covers.
const READAHEAD_CHUNKS: usize = 4;

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
}

/// The minimum-rate rule. A window opens when a write first waits for the client to make room in
/// the socket, and is judged when it ends: the client must have taken (written minus still
/// unacknowledged, SIOCOUTQ) `min_send_rate` bytes per second of it. Then the next window
/// starts. A client that keeps up never opens a window; a wait caused by our own bandwidth limit
/// closes it unjudged; a new request head resets it, so keep-alive idle time never counts.
#[derive(Default)]
struct DripWatch {
    /// Bytes this connection has written.
    written: u64,
    /// When the current window opened, and how many bytes the client had taken then.
    window: Option<(Instant, u64)>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl DripWatch {
    fn taken(&self, tcp: &TcpStream) -> u64 {
        self.written
            .saturating_sub(crate::sys::unacked_bytes(tcp).unwrap_or(0))
    }

    /// Open a window now unless one is open.
    fn open(&mut self, tcp: &TcpStream, now: Instant) {
        if self.window.is_none() {
            self.window = Some((now, self.taken(tcp)));
        }
    }

    /// Judge the window if it has ended by `now`: Err when the client took too little; else the
    /// next window starts.
    fn judge(
        &mut self,
        tcp: &TcpStream,
        now: Instant,
        min_rate: u64,
        length: std::time::Duration,
    ) -> io::Result<()> {
        let Some((start, taken_then)) = self.window else {
            return Ok(());
        };
        if now < start + length {
            return Ok(());
        }
        let taken = self.taken(tcp);
        let needed = min_rate as f64 * (now - start).as_secs_f64();
        if ((taken - taken_then.min(taken)) as f64) < needed {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client reads slower than the minimum send rate",
            ));
        }
        self.window = Some((now, taken));
        Ok(())
    }

    /// Poll the end of the open window (so that a client too slow to ever wake the writer is
    /// still judged on time).
    fn poll_window_end(&mut self, cx: &mut Context<'_>, length: std::time::Duration) -> Poll<()> {
        let Some((start, _)) = self.window else {
            return Poll::Pending;
        };
        let end = start + length;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(end)));
        if timer.deadline() != end {
            timer.as_mut().reset(end);
        }
        timer.as_mut().poll(cx)
    }
}

/// `[start, end)` of the file identified by (`file`, `ino`, `dev`) was resident when checked.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ResidentWindow {
    file: usize,
    ino: u64,
    dev: u64,
    start: usize,
    end: usize,
}

impl ResidentWindow {
    fn of(file: &Arc<OpenFile>, start: usize, end: usize) -> Self {
        ResidentWindow {
            file: Arc::as_ptr(file) as usize,
            ino: file.key.ino,
            dev: file.key.dev,
            start,
            end,
        }
    }

    fn covers(&self, file: &Arc<OpenFile>, start: usize, end: usize) -> bool {
        self.file == Arc::as_ptr(file) as usize
            && self.ino == file.key.ino
            && self.dev == file.key.dev
            && start >= self.start
            && end <= self.end
    }
}

impl SendfileIo {
    /// Wrap an accepted connection. The first request must start within the header timeout.
    pub fn new(tcp: TcpStream, conn: std::rc::Rc<ConnShared>) -> Self {
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
        }
    }

    fn stats(&self) -> &WorkerStats {
        self.conn.worker.stats()
    }

    /// Poll the deadline timer; Ready(()) once `deadline` has passed.
    ///
    /// The timer is lazy: a keep-alive connection pushes its deadline later with every request,
    /// and moving a timer-wheel entry each time costs more than the request's own work. So an
    /// armed timer that fires no later than `deadline` is left alone; when it fires early, it is
    /// re-armed once for the real deadline. Only an earlier deadline forces a reset.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let timer = self
            .deadline_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        loop {
            ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= deadline {
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
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
        let (max_chunk, cold_check_min) = {
            let c = self.conn.worker.config();
            (c.socket.sendfile_max_chunk, c.socket.cold_check_min)
        };
        let chunk = len.min(max_chunk);

        // Cold pages: read them in on the blocking pool first, so sendfile does not stall every
        // other connection of this worker on a disk read. The readahead covers a few chunks so
        // that a cold stream pays one blocking-pool round trip per READAHEAD_CHUNKS chunks.
        let mut chunk = chunk;
        // Inside a window already known resident: send at most to its end, then probe again.
        let known = match self.resident {
            Some(w) if w.covers(&file, offset, offset + 1) => {
                chunk = chunk.min(w.end - offset);
                true
            }
            _ => false,
        };
        if self.prefetch.is_none() && !known && file.len >= cold_check_min {
            if is_resident(&file, offset, chunk) {
                self.resident = Some(ResidentWindow::of(&file, offset, offset + chunk));
            } else {
                WorkerStats::add(&self.stats().cold_prefetches, 1);
                let ahead = (chunk * READAHEAD_CHUNKS).min(file.len as usize - offset);
                let f = file.clone();
                self.prefetch = Some(tokio::task::spawn_blocking(move || {
                    warm_range(&f.file, offset as u64, ahead);
                }));
                self.resident = Some(ResidentWindow::of(&file, offset, offset + ahead));
            }
        }
        if let Some(handle) = &mut self.prefetch {
            let _ = ready!(Pin::new(handle).poll(cx));
            self.prefetch = None;
        }

        let sock = self.tcp.as_fd();
        let fd = file.file.as_fd();
        let res = loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let mut partial = 0;
            let attempt = self.tcp.try_io(Interest::WRITABLE, || {
                let n = crate::sys::sendfile(sock, fd, offset as u64, chunk)?;
                if n > 0 && n < chunk && still_has_bytes(&file, offset + n) {
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
                    break Ok(partial)
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    continue
                }
                other => break other,
            }
        };
        match res {
            Ok(0) => {
                WorkerStats::add(&self.stats().truncated_aborts, 1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was being sent",
                )))
            }
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
                // This file cannot be spliced (an unusual file system): let the kernel copy from
                // the mapping instead. A truncated page gives EFAULT, never SIGBUS.
                let map = file.map.as_ref().expect("registered files are mapped");
                let slice = map.token_slice(offset, offset + chunk);
                let n = ready!(self.poll_io(cx, || crate::sys::send_vectored(
                    sock,
                    &[IoSlice::new(slice)],
                    false
                )))?;
                WorkerStats::add(&self.stats().copied_bytes, n as u64);
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
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

impl AsyncRead for SendfileIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.conn.phase.get();
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
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
                let limits = this.conn.worker.config().limits.clone();
                let deadline = match phase {
                    Phase::Idle { deadline: Some(d) } | Phase::Head { deadline: Some(d) } => d,
                    Phase::Idle { deadline: None } => {
                        let d = Instant::now() + limits.keepalive_timeout;
                        this.conn.phase.set(Phase::Idle { deadline: Some(d) });
                        d
                    }
                    Phase::Head { deadline: None } => {
                        let d = Instant::now() + limits.header_timeout;
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
                if this.poll_deadline(cx, deadline).is_ready() {
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
        let (mut min_rate, window, send_timeout) = {
            let c = this.conn.worker.config();
            let l = &c.limits;
            (l.min_send_rate, l.min_send_rate_window, l.send_timeout)
        };
        let mut allowed = usize::MAX;
        if let Some(pacer) = this.conn.pace.get() {
            // A response we pace slowly must not be judged against a faster minimum.
            min_rate = min_rate.min(pacer.rate() / 2);
            let want = bufs.iter().map(|b| b.len()).sum();
            loop {
                let now = Instant::now();
                match pacer.allowance(now, want) {
                    Ok(n) => {
                        allowed = n;
                        break;
                    }
                    Err(at) => {
                        // Our own limit is the bottleneck, not the client.
                        this.drip.window = None;
                        let timer = this
                            .pace_timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                        if timer.deadline() != at {
                            timer.as_mut().reset(at);
                        }
                        ready!(timer.as_mut().poll(cx));
                    }
                }
            }
        }
        match this.poll_write_inner(cx, bufs, allowed) {
            Poll::Ready(r) => {
                this.write_deadline = None;
                if let Ok(n) = r {
                    if let Some(mut pacer) = this.conn.pace.get() {
                        pacer.sent(n);
                        this.conn.pace.set(Some(pacer));
                    }
                    this.drip.written += n as u64;
                    this.conn
                        .bytes_sent
                        .set(this.conn.bytes_sent.get() + n as u64);
                    if this.drip.window.is_some() {
                        if let Err(e) = this.drip.judge(&this.tcp, Instant::now(), min_rate, window)
                        {
                            WorkerStats::add(&this.stats().min_rate_closes, 1);
                            return Poll::Ready(Err(this.abort(e)));
                        }
                    }
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if min_rate > 0 {
                    let now = Instant::now();
                    this.drip.open(&this.tcp, now);
                    while this.drip.poll_window_end(cx, window).is_ready() {
                        if let Err(e) = this.drip.judge(&this.tcp, Instant::now(), min_rate, window)
                        {
                            WorkerStats::add(&this.stats().min_rate_closes, 1);
                            return Poll::Ready(Err(this.abort(e)));
                        }
                    }
                }
                // A client that stops reading must not hold its connection (and whatever the
                // response holds: a file, an archive slot) forever: no progress for
                // `send_timeout` closes it.
                let deadline = *this
                    .write_deadline
                    .get_or_insert_with(|| Instant::now() + send_timeout);
                let timer = this
                    .write_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    WorkerStats::add(&this.stats().send_timeouts, 1);
                    let e = io::Error::new(io::ErrorKind::TimedOut, "send timeout");
                    return Poll::Ready(Err(this.abort(e)));
                }
                Poll::Pending
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper flushes once its queue is written. If the response body is done by then (the
        // connection went idle), the exchange's last byte is in the kernel: log it now.
        if let Phase::Idle { .. } = self.conn.phase.get() {
            self.conn.finish_exchange(false);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
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
            return this.poll_send_file(cx, file, offset, bufs[first].len().min(allowed));
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
        if run.iter().map(|b| b.len()).sum::<usize>() > allowed {
            // Paced: send only the allowance (cut at a slice boundary or inside one).
            let mut cut: SmallVec<[IoSlice<'_>; 8]> = SmallVec::new();
            let mut left = allowed;
            for b in run {
                if left == 0 {
                    break;
                }
                let n = b.len().min(left);
                cut.push(IoSlice::new(&b[..n]));
                left -= n;
            }
            return this.poll_io(cx, || crate::sys::send_vectored(sock, &cut, false));
        }
        this.poll_io(cx, || crate::sys::send_vectored(sock, run, more))
    }
}
