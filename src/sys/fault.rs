//! Fault injection for tests (the `fault-injection` feature only, never in a release build):
//! sendfile(2) from a file whose inode is listed in `SENDFILED_FAULT_EIO_INODES` (comma
//! separated) fails with EIO, as it would on a failing disk. Unprivileged containers have no
//! device-mapper `error` target, so this is the syscall-layer stand-in.

use std::collections::HashSet;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

fn inodes() -> &'static HashSet<u64> {
    static SET: OnceLock<HashSet<u64>> = OnceLock::new();
    SET.get_or_init(|| {
        std::env::var("SENDFILED_FAULT_EIO_INODES")
            .unwrap_or_default()
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    })
}

/// Whether reads of `file` are to fail with EIO.
pub fn eio(file: BorrowedFd<'_>) -> bool {
    let set = inodes();
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
