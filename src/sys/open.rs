//! Opening a path beneath the served root without check-then-open races: openat2(2) with
//! RESOLVE_BENEATH (Linux >= 5.6), and a fallback for older kernels that verifies, after opening,
//! where the descriptor really points.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::config::SymlinkRule;

static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// Open `rel` (relative, already normalised: no `..`, no leading `/`) beneath the directory `root`
/// read-only. Errors: NotFound, PermissionDenied, or `ELOOP`/`EXDEV` when a symlink breaks the rule.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &CStr, rule: SymlinkRule) -> io::Result<File> {
    let flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    let resolve = match rule {
        SymlinkRule::Deny => {
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS
        }
        SymlinkRule::InsideRoot => libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        SymlinkRule::Follow => libc::RESOLVE_NO_MAGICLINKS,
    };
    if !OPENAT2_MISSING.load(Ordering::Relaxed) {
        match openat2(root, rel, flags, resolve) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                OPENAT2_MISSING.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    open_fallback(root, rel, rule)
}

fn openat2(root: BorrowedFd<'_>, rel: &CStr, flags: u64, resolve: u64) -> io::Result<File> {
    /// `struct open_how` from <linux/openat2.h> (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags,
        mode: 0,
        resolve,
    };
    // SAFETY: `rel` is a NUL-terminated string and `how` a valid open_how whose exact size is
    // passed; both outlive the call. The returned descriptor is new and owned by nobody else.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

fn openat(dir: BorrowedFd<'_>, rel: &CStr, flags: libc::c_int) -> io::Result<File> {
    // SAFETY: `rel` is NUL-terminated and lives for the call; `dir` is an open descriptor.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), rel.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Kernels without openat2: open with O_NOFOLLOW semantics per rule, then check through
/// /proc/self/fd where the opened descriptor lives. The check is on the descriptor we will serve,
/// so a concurrent rename cannot slip another file in after it.
fn open_fallback(root: BorrowedFd<'_>, rel: &CStr, rule: SymlinkRule) -> io::Result<File> {
    let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    let file = openat(root, rel, flags)?;
    if rule == SymlinkRule::Follow {
        return Ok(file);
    }
    let root_path = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if !real.starts_with(&root_path) {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    if rule == SymlinkRule::Deny {
        // The real path must be exactly the requested one: any symlink changes it.
        use std::os::unix::ffi::OsStrExt;
        let want = root_path.join(std::ffi::OsStr::from_bytes(rel.to_bytes()));
        if real != want {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
    }
    Ok(file)
}
