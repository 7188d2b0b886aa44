//! Socket-side syscalls: sendfile(2), sendmsg(2) with MSG_MORE, the TCP options socket2 lacks,
//! and the open-files rlimit.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Send up to `count` bytes of `file` starting at `offset` to `sock`. Returns the bytes the kernel
/// accepted; `Ok(0)` means the file ended before `offset` (it shrank).
pub fn sendfile(
    sock: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    #[cfg(feature = "fault-injection")]
    if super::fault::eio(file) {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    let mut off = offset as libc::off64_t;
    // SAFETY: both descriptors are borrowed and so stay open for the call; `off` is a valid,
    // exclusively borrowed off64_t that the kernel updates.
    let rc = unsafe { libc::sendfile64(sock.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// sendmsg(2) of `bufs` with MSG_NOSIGNAL, plus MSG_MORE when `more` is set (file data follows, so
/// the kernel should hold the head back and send it in one segment with the body's start).
pub fn send_vectored(sock: BorrowedFd<'_>, bufs: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
    let mut flags = libc::MSG_NOSIGNAL;
    if more {
        flags |= libc::MSG_MORE;
    }
    // SAFETY: an all-zero msghdr is a valid empty message (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with `struct iovec` on Unix; the kernel only reads it.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: `msg` points at `bufs`, which are live borrowed slices for the duration of the call;
    // the socket descriptor is borrowed and open.
    let rc = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

fn setsockopt_int(
    sock: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size; the descriptor is borrowed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TCP_DEFER_ACCEPT: wake accept() only once the client has sent data (or after `secs`), so
/// connections that never send a request cost no task. 0 turns it off.
pub fn set_defer_accept(sock: &impl AsFd, secs: u32) -> io::Result<()> {
    setsockopt_int(
        sock.as_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        secs.min(i32::MAX as u32) as i32,
    )
}

/// TCP_FASTOPEN on a listener with a pending-request queue of `queue` (0 leaves it off).
pub fn set_fastopen(sock: &impl AsFd, queue: u32) -> io::Result<()> {
    setsockopt_int(
        sock.as_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_FASTOPEN,
        queue.min(i32::MAX as u32) as i32,
    )
}

/// SO_SNDBUF. Setting it turns off the kernel's send-buffer autotuning for the socket, so it is
/// only applied when configured.
pub fn set_send_buffer(sock: &impl AsFd, bytes: u32) -> io::Result<()> {
    setsockopt_int(
        sock.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        bytes.min(i32::MAX as u32) as i32,
    )
}

/// Raise RLIMIT_NOFILE's soft limit to its hard limit. Returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, exclusively borrowed rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: passes a valid rlimit by reference; the kernel only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// SIOCOUTQ: bytes in the socket's send queue not yet acknowledged by the peer, so that
/// "written minus unsent" is what the client has actually taken.
pub fn unacked_bytes(sock: &impl AsFd) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one c_int through the pointer, which points at a live local; the
    // descriptor is borrowed for the call.
    let rc = unsafe { libc::ioctl(sock.as_fd().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as u64)
}

/// Take ownership of an inherited descriptor (socket activation) if it is a listening TCP
/// socket; anything else is refused and left open.
pub fn adopt_listener(fd: std::os::fd::RawFd) -> io::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    // SAFETY: fstat writes one `stat` into a live local; a bad descriptor gives EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `st` is valid for writes of its size.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::other(format!("descriptor {fd} is not a socket")));
    }
    // SAFETY: the descriptor is open (fstat succeeded) and was passed to this process to own
    // (LISTEN_FDS); nothing else in the process uses it, so the OwnedFd is its only owner.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let sock = socket2::Socket::from(owned);
    if !sock.is_listener()? || sock.r#type()? != socket2::Type::STREAM {
        // Give the descriptor back rather than closing what we were not meant to own.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(sock);
        return Err(io::Error::other(format!(
            "descriptor {fd} is not a listening stream socket"
        )));
    }
    sock.set_cloexec(true)?;
    Ok(sock.into())
}

/// CLOCK_MONOTONIC in microseconds (what sd_notify's MONOTONIC_USEC wants).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}
