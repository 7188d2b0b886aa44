//! Kernel TLS (kTLS): attach the `tls` upper-layer protocol to a TCP socket, install the record
//! keys of each direction, and read or write the records that are not application data (alerts,
//! post-handshake messages), whose type travels in a control message.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, TlsGetRecordType};

pub use nix::sys::socket::sockopt::TlsCryptoInfo;

/// The TLS record type of application data.
pub const APPLICATION_DATA: u8 = 23;

/// `setsockopt(TCP_ULP, "tls")`. Fails (ENOENT) where the kernel has no TLS ULP; the socket is
/// unchanged then.
pub fn attach_ulp(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(socket::setsockopt(
        &sock,
        sockopt::TcpUlp::default(),
        b"tls",
    )?)
}

/// Install the keys records are written with (`TLS_TX`).
pub fn install_tx(sock: BorrowedFd<'_>, info: &TlsCryptoInfo) -> io::Result<()> {
    Ok(socket::setsockopt(&sock, sockopt::TcpTlsTx, info)?)
}

/// Install the keys records are read with (`TLS_RX`).
pub fn install_rx(sock: BorrowedFd<'_>, info: &TlsCryptoInfo) -> io::Result<()> {
    Ok(socket::setsockopt(&sock, sockopt::TcpTlsRx, info)?)
}

/// Read decrypted bytes of one record type into `buf`: the byte count and the record type
/// (`APPLICATION_DATA` unless the kernel's control message says otherwise). Non-blocking on a
/// non-blocking socket.
pub fn recv_record(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, u8)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(u8);
    let msg = socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    let mut kind = APPLICATION_DATA;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::TlsGetRecordType(t) = c {
            kind = match t {
                TlsGetRecordType::ChangeCipherSpec => 20,
                TlsGetRecordType::Alert => 21,
                TlsGetRecordType::Handshake => 22,
                TlsGetRecordType::ApplicationData => 23,
                TlsGetRecordType::Unknown(x) => x,
                _ => 0,
            };
        }
    }
    Ok((msg.bytes, kind))
}

/// Write `payload` as one record of `record_type` (an alert, say) through the kernel's record
/// layer: `sendmsg` with a `TLS_SET_RECORD_TYPE` control message.
pub fn send_record(sock: BorrowedFd<'_>, record_type: u8, payload: &[u8]) -> io::Result<usize> {
    // Room for one cmsghdr and one byte of data, 8-byte aligned as cmsghdr requires.
    let mut space = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as usize;
    // SAFETY: msg_control points at `space` (32 bytes, aligned), which holds CMSG_SPACE(1) = 24
    // bytes on 64-bit Linux, so the first header and its one data byte lie inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as usize;
        *libc::CMSG_DATA(cmsg) = record_type;
    }
    // SAFETY: msg points at a live iovec over `payload` and at the control buffer above, both
    // outliving the call; the descriptor is borrowed.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
