//! The minimum-send-rate rule (`limits.min_send_rate`): how fast a client takes bytes while a
//! response waits on it, judged over windows, so that a slow drip cannot hold a connection
//! that the send timeout never closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::timer::poll_timer;
use crate::units::Rate;

/// The minimum-rate rule. A window opens when a write first waits for the client to make room in
/// the socket, and is judged when it ends: the client must have taken (written minus still
/// unacknowledged, SIOCOUTQ) `min_send_rate` bytes per second of it. Then the next window
/// starts. A client that keeps up never opens a window; a wait caused by our own bandwidth limit
/// closes it unjudged; a new request head resets it, so keep-alive idle time never counts.
#[derive(Default)]
pub(super) struct DripWatch {
    /// Bytes this connection has written.
    pub(super) written: u64,
    /// When the current window opened, and how many bytes the client had taken then.
    pub(super) window: Option<(Instant, u64)>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl DripWatch {
    fn taken(&self, tcp: &TcpStream) -> u64 {
        self.written
            .saturating_sub(crate::sys::unacked_bytes(tcp).unwrap_or(0))
    }

    /// Open a window now unless one is open.
    pub(super) fn open(&mut self, tcp: &TcpStream, now: Instant) {
        if self.window.is_none() {
            self.window = Some((now, self.taken(tcp)));
        }
    }

    /// Judge the window if it has ended by `now`: Err when the client took too little; else the
    /// next window starts.
    pub(super) fn judge(
        &mut self,
        tcp: &TcpStream,
        now: Instant,
        min_rate: Rate,
        length: std::time::Duration,
    ) -> io::Result<()> {
        let Some((start, taken_then)) = self.window else {
            return Ok(());
        };
        if now < start + length {
            return Ok(());
        }
        let taken = self.taken(tcp);
        let needed = min_rate.bytes_in(now - start);
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
    pub(super) fn poll_window_end(
        &mut self,
        cx: &mut Context<'_>,
        length: std::time::Duration,
    ) -> Poll<()> {
        let Some((start, _)) = self.window else {
            return Poll::Pending;
        };
        poll_timer(&mut self.timer, start + length, cx)
    }
}
