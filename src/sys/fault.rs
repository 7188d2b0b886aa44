//! Fault injection for tests (the `fault-injection` feature only, never in a release build):
//! sendfile(2) from a file whose inode is listed in `SENDFILED_FAULT_EIO_INODES` (comma
//! separated) fails with EIO, as it would on a failing disk; mmap(2) of a file listed in
//! `SENDFILED_FAULT_NOMAP_INODES` fails with ENODEV, as on a file system that cannot map (so the
//! copying fallback runs). Unprivileged containers have no device-mapper `error` target, so this
//! is the syscall-layer stand-in.

use std::collections::HashSet;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

/// The inodes listed in the environment variable `var`.
fn inodes(var: &str) -> HashSet<u64> {
    std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Whether reads of `file` are to fail with EIO.
pub fn eio(file: BorrowedFd<'_>) -> bool {
    static SET: OnceLock<HashSet<u64>> = OnceLock::new();
    listed(
        SET.get_or_init(|| inodes("SENDFILED_FAULT_EIO_INODES")),
        file,
    )
}

/// Whether mapping `file` is to fail.
pub fn nomap(file: BorrowedFd<'_>) -> bool {
    static SET: OnceLock<HashSet<u64>> = OnceLock::new();
    listed(
        SET.get_or_init(|| inodes("SENDFILED_FAULT_NOMAP_INODES")),
        file,
    )
}

/// Whether `file`'s inode is in `set`.
fn listed(set: &HashSet<u64>, file: BorrowedFd<'_>) -> bool {
    if set.is_empty() {
        return false;
    }
    let Ok(owned) = file.try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(owned)
        .metadata()
        .is_ok_and(|m| set.contains(&m.ino()))
}
