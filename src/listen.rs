//! Listening sockets, built with socket2: one SO_REUSEPORT listener per worker and address, so the
//! kernel spreads connections across workers with no shared accept queue or lock. Each option is
//! set for a reason given beside it; docs/configuration.md repeats them for operators.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::SocketTuning;

/// Why an address could not be used, as one line.
#[derive(Debug)]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.source.kind() {
            io::ErrorKind::AddrInUse => "the address is already in use".to_string(),
            io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)".to_string()
            }
            io::ErrorKind::AddrNotAvailable => "no local interface has this address".to_string(),
            _ => self.source.to_string(),
        };
        write!(f, "cannot listen on {}: {why}", self.addr)
    }
}

impl std::error::Error for ListenError {}

/// Bind `workers` listeners for every address. Returns `listeners[worker][address]` and the
/// addresses actually bound (port 0 becomes the port the kernel chose, shared by all workers).
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
    tuning: &SocketTuning,
) -> Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>), ListenError> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for &addr in addrs {
        let fail = |source| ListenError { addr, source };
        if addr.port() != 0 {
            // SO_REUSEPORT would let us join another process's group on the same port and split
            // its traffic. Binding once without it first fails if anyone else listens there.
            probe(addr).map_err(fail)?;
        }
        let first = listener(addr, tuning).map_err(fail)?;
        let real = first.local_addr().map_err(fail)?;
        per_worker[0].push(first);
        for w in per_worker.iter_mut().skip(1) {
            w.push(listener(real, tuning).map_err(|source| ListenError { addr: real, source })?);
        }
        bound.push(real);
    }
    Ok((per_worker, bound))
}

fn probe(addr: SocketAddr) -> io::Result<()> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(1)
}

/// One tuned listener.
fn listener(addr: SocketAddr, tuning: &SocketTuning) -> io::Result<TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    // Restarts must not wait for TIME_WAIT connections of the previous process.
    s.set_reuse_address(true)?;
    // One listener per worker: the kernel hashes each new connection to one of them.
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // `[::]` means IPv6 only; list `0.0.0.0` separately for IPv4.
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    // The accept queue: how many completed handshakes may wait while a worker is busy.
    s.listen(i32::try_from(tuning.backlog).unwrap_or(i32::MAX))?;
    if !tuning.defer_accept.is_zero() {
        // Wake the worker only when the request's first bytes have arrived: idle connects
        // (port scanners, pre-connecting clients) cost no task until they speak.
        crate::sys::set_defer_accept(&s, tuning.defer_accept.as_secs().max(1) as u32)?;
    }
    if tuning.fastopen > 0 {
        // Lets repeat clients send the request in the SYN (saves one round trip).
        crate::sys::set_fastopen(&s, tuning.fastopen)?;
    }
    Ok(s.into())
}
