//! The only module allowed to use `unsafe`: thin, documented wrappers around the Linux syscalls the
//! server needs and that std, tokio and socket2 do not expose (sendfile, sendmsg with MSG_MORE, mmap,
//! mincore, readahead, openat2, the inotify reactor registration, a few socket options and
//! rlimits).
//!
//! Every wrapper takes borrowed file descriptors (`BorrowedFd`/`AsFd`), checks the return value and
//! turns `-1` into `io::Error::last_os_error()`. Nothing here knows about HTTP.
#![allow(unsafe_code)]

mod alloc;
#[cfg(feature = "fault-injection")]
mod fault;
pub mod ktls;
mod mmap;
mod net;
mod notify;
mod open;

pub use alloc::CountingAllocator;
pub use mmap::{send_mapped, MappedRange, Mapping, MappingOwner};
pub use net::{
    adopt_listener, monotonic_usec, raise_nofile_limit, send_vectored, sendfile, set_defer_accept,
    set_fastopen, set_send_buffer, unacked_bytes,
};
pub use notify::{change_queue, ChangeQueue};
pub use open::{open_beneath, SymlinkRule};

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

/// Ask the kernel to start reading `[offset, offset + len)` of `file` into the page cache. It
/// submits the reads and may return before they complete (see `io::warm_range`, which waits).
/// Runs on a blocking-pool thread, never on an IO worker.
pub fn readahead(file: &impl AsFd, offset: u64, len: usize) -> io::Result<()> {
    // SAFETY: readahead only reads the descriptor, which `file` keeps open for the call; it has no
    // pointer arguments.
    let rc = unsafe { libc::readahead(file.as_fd().as_raw_fd(), offset as libc::off64_t, len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether every page of `[offset, offset + len)` of `file` is in the page cache, by cachestat(2)
/// (Linux >= 6.5), which walks the page cache by folio and needs no mapping. `Err` with ENOSYS on
/// older kernels (callers fall back to mincore on the mapping).
pub fn page_cache_has(file: &impl AsFd, offset: u64, len: usize) -> io::Result<bool> {
    /// `struct cachestat_range` from <linux/mman.h>.
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    /// `struct cachestat` from <linux/mman.h>.
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451; // the same number on every architecture
    if len == 0 {
        return Ok(true);
    }
    let range = Range {
        off: offset,
        len: len as u64,
    };
    let mut stat = Stat::default();
    // SAFETY: both pointers refer to live, correctly laid out structs for the duration of the
    // call; the kernel reads `range` and writes `stat`. The descriptor is borrowed and open.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_fd().as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let first_page = offset / 4096;
    let last_page = (offset + len as u64 - 1) / 4096;
    Ok(stat.nr_cache > last_page - first_page)
}

/// Drop the clean page-cache pages of `file` (POSIX_FADV_DONTNEED). Used by the cold-file test and
/// benchmark to make a file cold on purpose.
pub fn evict_page_cache(file: &impl AsFd) -> io::Result<()> {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    posix_fadvise(
        file.as_fd().as_raw_fd(),
        0,
        0,
        PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )?;
    Ok(())
}

/// Whether this process may read the file `name` in the directory `dir` (faccessat with
/// AT_EACCESS: the effective ids, capabilities and ACLs, as an open would judge them).
pub fn readable_at(dir: &impl AsFd, name: &[u8]) -> bool {
    use nix::fcntl::AtFlags;
    use nix::unistd::{faccessat, AccessFlags};
    let name = std::ffi::OsStr::from_bytes(name);
    faccessat(
        Some(dir.as_fd().as_raw_fd()),
        name,
        AccessFlags::R_OK,
        AtFlags::AT_EACCESS,
    )
    .is_ok()
}

/// The soft limit on open descriptors (RLIMIT_NOFILE) now in force.
pub fn nofile_limit() -> io::Result<u64> {
    let (soft, _hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    Ok(soft)
}
