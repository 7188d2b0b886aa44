//! systemd integration, hand-written because it is three small protocols: sd_notify (a datagram
//! of `KEY=VALUE` lines to `$NOTIFY_SOCKET`), socket activation (`$LISTEN_FDS` descriptors from
//! 3, for `$LISTEN_PID`), and the watchdog (`$WATCHDOG_USEC`). All are no-ops outside systemd.

use std::io;
use std::net::TcpListener;
use std::time::Duration;

/// Send `state` (newline-separated `KEY=VALUE` lines) to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(path))?;
    }
    Ok(())
}

/// Tell systemd a reload starts (it wants the monotonic time with it).
pub fn notify_reloading() {
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
        crate::sys::monotonic_usec()
    ));
}

/// The listening sockets passed by socket activation, in order; empty when not activated.
/// The variables are removed so that no child process inherits them.
pub fn listen_fds() -> io::Result<Vec<TcpListener>> {
    let (Ok(pid), Ok(count)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(Vec::new());
    };
    if pid.trim() != std::process::id().to_string() {
        return Ok(Vec::new());
    }
    let count: i32 = count
        .trim()
        .parse()
        .map_err(|_| io::Error::other(format!("LISTEN_FDS={count:?} is not a number")))?;
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // Called before any worker thread exists, so no other thread reads the environment.
        std::env::remove_var(var);
    }
    (3..3 + count)
        .map(|fd| {
            crate::sys::adopt_listener(fd)
                .map_err(|e| io::Error::other(format!("socket activation: {e}")))
        })
        .collect()
}

/// How often to send WATCHDOG=1: half of `$WATCHDOG_USEC`, when it is meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
