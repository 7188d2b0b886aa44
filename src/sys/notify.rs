//! An inotify instance registered with the current worker's tokio reactor, so that whether it has
//! events waiting is one atomic load (the reactor learns it from the same epoll as the sockets).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;

use nix::sys::inotify::{InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A non-blocking, close-on-exec inotify instance. Its descriptor is fixed for its whole life
/// (nothing here can replace or close it before drop), which is what tokio's registration needs.
#[derive(Debug)]
pub struct ChangeQueue {
    inotify: Inotify,
}

impl ChangeQueue {
    /// The instance itself, for adding and removing watches and reading events.
    pub fn inotify(&self) -> &Inotify {
        &self.inotify
    }
}

impl AsRawFd for ChangeQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}

/// A new inotify instance, and its registration with the reactor of the runtime this runs on
/// (panics outside one, as tokio's registrations do).
pub fn change_queue() -> io::Result<AsyncFd<Arc<ChangeQueue>>> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    let queue = Arc::new(ChangeQueue { inotify });
    // SAFETY: the descriptor is the `OwnedFd` inside `queue`'s `Inotify`, which the `AsyncFd`
    // keeps alive through its `Arc` for as long as the registration lasts; no method closes or
    // replaces it, so `as_raw_fd` names the same open descriptor for the registration's life.
    let registered = unsafe { AsyncFd::register_with_interest(queue, Interest::READABLE) };
    registered.map_err(|e| e.into_parts().1)
}
