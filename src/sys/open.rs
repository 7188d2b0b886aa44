//! Opening a path beneath the served root without check-then-open races: openat2(2) with
//! RESOLVE_BENEATH (Linux >= 5.6), and a fallback for older kernels that verifies, after opening,
//! where the descriptor really points.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

pub use crate::config::SymlinkRule;

static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// Open `rel` (relative, already normalised: no `..`, no leading `/`) beneath the directory `root`
/// read-only. Errors: NotFound, PermissionDenied, or `ELOOP`/`EXDEV` when a symlink breaks the rule.
pub fn open_beneath(root: BorrowedFd<'_>, rel: &CStr, rule: SymlinkRule) -> io::Result<File> {
    let resolve = match rule {
        SymlinkRule::Deny => {
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
        }
        SymlinkRule::InsideRoot => {
            ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
        }
        SymlinkRule::Follow => ResolveFlag::RESOLVE_NO_MAGICLINKS,
    };
    if !OPENAT2_MISSING.load(Ordering::Relaxed) {
        let how = OpenHow::new().flags(READ_FLAGS).resolve(resolve);
        match fcntl::openat2(root.as_raw_fd(), rel, how) {
            Err(Errno::ENOSYS) => OPENAT2_MISSING.store(true, Ordering::Relaxed),
            other => return owned(other),
        }
    }
    open_fallback(root, rel, rule)
}

/// Read-only, never the controlling terminal, never blocking on a FIFO's open.
const READ_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_NONBLOCK);

/// A descriptor nix just opened, as the `File` that owns it.
fn owned(fd: nix::Result<RawFd>) -> io::Result<File> {
    let fd = fd?;
    // SAFETY: `fd` was just returned by a successful open; nothing else holds or closes it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn openat(dir: BorrowedFd<'_>, rel: &CStr, flags: OFlag) -> io::Result<File> {
    owned(fcntl::openat(
        Some(dir.as_raw_fd()),
        rel,
        flags,
        Mode::empty(),
    ))
}

/// Kernels without openat2: open with O_NOFOLLOW semantics per rule, then check through
/// /proc/self/fd where the opened descriptor lives. The check is on the descriptor we will serve,
/// so a concurrent rename cannot slip another file in after it.
fn open_fallback(root: BorrowedFd<'_>, rel: &CStr, rule: SymlinkRule) -> io::Result<File> {
    let file = openat(root, rel, READ_FLAGS)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::fd::AsFd;

    /// open_beneath (openat2 here) and the fallback for kernels without it give the same answer
    /// for every rule, on a real tree: a plain file, a symlink inside the root, one leading out.
    #[test]
    fn the_fallback_agrees_with_open_beneath_on_every_rule() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/file"), b"x").unwrap();
        std::fs::write(base.path().join("outside"), b"y").unwrap();
        std::os::unix::fs::symlink("d/file", root.join("inside-link")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("outside-link")).unwrap();
        let dir = File::open(&root).unwrap();
        let outcome = |r: io::Result<File>| r.map(|_| ()).map_err(|e| e.raw_os_error());
        let cases = [
            ("d/file", SymlinkRule::Deny, Ok(())),
            ("inside-link", SymlinkRule::Deny, Err(Some(libc::ELOOP))),
            ("inside-link", SymlinkRule::InsideRoot, Ok(())),
            (
                "outside-link",
                SymlinkRule::InsideRoot,
                Err(Some(libc::EXDEV)),
            ),
            ("outside-link", SymlinkRule::Follow, Ok(())),
            ("missing", SymlinkRule::Deny, Err(Some(libc::ENOENT))),
        ];
        for (rel, rule, want) in cases {
            let c = CString::new(rel).unwrap();
            let via_fallback = outcome(open_fallback(dir.as_fd(), &c, rule));
            assert_eq!(via_fallback, want, "fallback: {rel} under {rule:?}");
            let via_open_beneath = outcome(open_beneath(dir.as_fd(), &c, rule));
            assert_eq!(via_open_beneath, want, "open_beneath: {rel} under {rule:?}");
        }
        if OPENAT2_MISSING.load(Ordering::Relaxed) {
            eprintln!("openat2 is missing on this kernel: open_beneath took the fallback too");
        }
    }
}
