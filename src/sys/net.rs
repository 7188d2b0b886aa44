//! Socket-side syscalls: sendfile(2), sendmsg(2) with MSG_MORE, the TCP options socket2 and nix
//! lack, and the open-files rlimit. nix's safe wrappers where nix has the call.

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
    Ok(nix::sys::sendfile::sendfile64(
        sock,
        file,
        Some(&mut off),
        count,
    )?)
}

/// sendmsg(2) of `bufs` with MSG_NOSIGNAL, plus MSG_MORE when `more` is set (file data follows, so
/// the kernel should hold the head back and send it in one segment with the body's start).
pub fn send_vectored(sock: BorrowedFd<'_>, bufs: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, MsgFlags, UnixAddr};
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if more {
        // nix names no MSG_MORE; the bit is the kernel's.
        flags |= MsgFlags::from_bits_retain(libc::MSG_MORE);
    }
    let bufs = &bufs[..bufs.len().min(libc::UIO_MAXIOV as usize)];
    Ok(sendmsg::<UnixAddr>(
        sock.as_raw_fd(),
        bufs,
        &[],
        flags,
        None,
    )?)
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
    let bytes = bytes.min(i32::MAX as u32) as usize;
    Ok(nix::sys::socket::setsockopt(
        sock,
        nix::sys::socket::sockopt::SndBuf,
        &bytes,
    )?)
}

/// Raise RLIMIT_NOFILE's soft limit to its hard limit. Returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
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
    let st = nix::sys::stat::fstat(fd)?;
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
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        ts.tv_sec() as u64 * 1_000_000 + ts.tv_nsec() as u64 / 1000
    })
}
