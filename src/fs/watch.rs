//! Whether an open file may have been written since its digest was confirmed, told by inotify
//! instead of an fstat per response.
//!
//! Each worker has one inotify instance on its own reactor. A file whose digest is known gets a
//! watch for `IN_MODIFY` on its inode (every write, truncate, fallocate, copy or clone into it,
//! by any process and through any path or mount). Draining the queue is a syscall only when the
//! reactor has seen it readable, so a response for an unchanged file costs one atomic load.
//!
//! What that promises: the worker's epoll reports the queue no later than a socket readable after
//! the write, so a request whose bytes arrived after a write completed sees it (as the fstat did).
//! Writes through a shared writable mapping raise no event: a tree served while another process
//! writes it through `mmap` must run with `digests.mode = "off"`. File systems whose changes
//! inotify may not see (network, FUSE, overlay) are not watched: their files keep the fstat.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use nix::sys::inotify::{AddWatchFlags, WatchDescriptor};
use nix::sys::statfs;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::sys::ChangeQueue;

/// One worker's watches: the registered queue and which files each watch stands for.
pub struct Watches {
    queue: AsyncFd<Arc<ChangeQueue>>,
    table: Arc<Table>,
}

/// Per watch descriptor, one flag per [`Watch`] on it (two open files of one inode share the
/// descriptor: the kernel hands out one per inode and instance).
struct Table {
    queue: Arc<ChangeQueue>,
    flags: Mutex<HashMap<WatchDescriptor, Vec<Arc<AtomicBool>>>>,
}

/// One open file's watch; dropping it removes the kernel's watch once no other file shares it.
pub struct Watch {
    wd: WatchDescriptor,
    changed: Arc<AtomicBool>,
    table: Arc<Table>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("wd", &self.wd)
            .field("changed", &self.changed())
            .finish()
    }
}

impl Watch {
    /// Whether the file was (or may have been) written since the watch was added. Only
    /// meaningful after [`Watches::settle`] on the same worker.
    pub fn changed(&self) -> bool {
        self.changed.load(Relaxed)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut flags = self.table.flags.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = flags.get_mut(&self.wd) else {
            return;
        };
        list.retain(|f| !Arc::ptr_eq(f, &self.changed));
        if list.is_empty() {
            flags.remove(&self.wd);
            // Under the lock, so that a concurrent add of the same inode cannot get this
            // descriptor back and then lose it. EINVAL (the kernel removed it) is fine.
            let _ = self.table.queue.inotify().rm_watch(self.wd);
        }
    }
}

/// The file systems whose every local write inotify reports.
fn watchable(file: &File) -> bool {
    let Ok(fs) = statfs::fstatfs(file) else {
        return false;
    };
    [
        statfs::EXT4_SUPER_MAGIC,
        statfs::XFS_SUPER_MAGIC,
        statfs::BTRFS_SUPER_MAGIC,
        statfs::TMPFS_MAGIC,
        statfs::F2FS_SUPER_MAGIC,
    ]
    .contains(&fs.filesystem_type())
}

impl Watches {
    /// A queue on the current runtime's reactor; `None` (and one log line) where inotify is
    /// unavailable, in which case every file keeps the fstat.
    pub fn new() -> Option<Watches> {
        match crate::sys::change_queue() {
            Ok(queue) => {
                let table = Arc::new(Table {
                    queue: queue.get_ref().clone(),
                    flags: Mutex::default(),
                });
                Some(Watches { queue, table })
            }
            Err(e) => {
                tracing::warn!(error = %e, "no inotify: every digest is confirmed by an fstat per response");
                None
            }
        }
    }

    /// Watch `file` for writes; `None` if its file system is not watchable or the kernel refuses
    /// (the per-user watch limit, `fs.inotify.max_user_watches`). Confirm the file's identity
    /// after this returns: a write before it raises no event.
    pub fn watch(&self, file: &File) -> Option<Watch> {
        if !watchable(file) {
            return None;
        }
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut flags = self.table.flags.lock().unwrap_or_else(|p| p.into_inner());
        let wd = self
            .table
            .queue
            .inotify()
            .add_watch(path.as_str(), AddWatchFlags::IN_MODIFY)
            .ok()?;
        let changed = Arc::new(AtomicBool::new(false));
        flags.entry(wd).or_default().push(changed.clone());
        Some(Watch {
            wd,
            changed,
            table: self.table.clone(),
        })
    }

    /// Read whatever events the reactor has seen arrive and mark their files changed. No
    /// syscall when there are none. A lost event (queue overflow) marks every file.
    pub fn settle(&self) {
        loop {
            let read = self.queue.try_io(Interest::READABLE, |q| {
                q.inotify().read_events().map_err(std::io::Error::from)
            });
            match read {
                Ok(events) => self.mark(&events),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.mark_all();
                    return;
                }
            }
        }
    }

    fn mark(&self, events: &[nix::sys::inotify::InotifyEvent]) {
        let flags = self.table.flags.lock().unwrap_or_else(|p| p.into_inner());
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                drop(flags);
                self.mark_all();
                return;
            }
            // IN_MODIFY, or IN_IGNORED (the kernel dropped the watch: nothing reports changes
            // any more, so the file goes back to the fstat).
            for flag in flags.get(&event.wd).into_iter().flatten() {
                flag.store(true, Relaxed);
            }
        }
    }

    fn mark_all(&self) {
        let flags = self.table.flags.lock().unwrap_or_else(|p| p.into_inner());
        for flag in flags.values().flatten() {
            flag.store(true, Relaxed);
        }
    }
}
