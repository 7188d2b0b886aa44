//! Page-cache residency for sendfile: bringing a cold range in on the blocking pool, and the
//! window of a file already known resident (`OpenFile::is_resident`), so that a large body is
//! probed once per window rather than once per call.

use std::sync::Arc;

use crate::fs::OpenFile;

/// Bring `[offset, offset + len)` of `file` into the page cache and wait until it is there:
/// readahead(2) submits the reads but may return before they finish, and a sendfile on the worker
/// would then wait for the disk after all. A one-byte pread every 128 KiB (the reads' unit) and at
/// the end blocks until those pages are read; only those bytes are copied. Blocking pool only.
pub(super) fn warm_range(file: &std::fs::File, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    const STRIDE: u64 = 128 * 1024;
    let _ = crate::sys::readahead(file, offset, len);
    let end = offset + len as u64;
    let mut byte = [0u8; 1];
    let mut at = offset;
    while at < end {
        if file.read_at(&mut byte, at).unwrap_or(0) == 0 {
            return;
        }
        at += STRIDE;
    }
    let _ = file.read_at(&mut byte, end.saturating_sub(1));
}

/// Whether `file` still extends past `pos` (one fstat; only asked after a short sendfile).
pub(super) fn still_has_bytes(file: &OpenFile, pos: usize) -> bool {
    file.file.metadata().is_ok_and(|m| m.len() > pos as u64)
}

/// How many sendfile chunks one cold-file readahead covers.
pub(super) const READAHEAD_CHUNKS: usize = 4;

/// `[start, end)` of the file identified by (`file`, `ino`, `dev`) was resident when checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct ResidentWindow {
    file: usize,
    ino: u64,
    dev: u64,
    start: usize,
    pub(super) end: usize,
}

impl ResidentWindow {
    pub(super) fn of(file: &Arc<OpenFile>, start: usize, end: usize) -> Self {
        ResidentWindow {
            file: Arc::as_ptr(file) as usize,
            ino: file.key.ino,
            dev: file.key.dev,
            start,
            end,
        }
    }

    pub(super) fn covers(&self, file: &Arc<OpenFile>, start: usize, end: usize) -> bool {
        self.file == Arc::as_ptr(file) as usize
            && self.ino == file.key.ino
            && self.dev == file.key.dev
            && start >= self.start
            && end <= self.end
    }
}
