//! Small bodies in memory: the bytes of a file at or under the small-body threshold, read once so
//! that its head and body can leave in one write (what lighttpd and h2o do below 16 and 64 KiB).
//!
//! The bytes are read by pread(2), never through the mapping, and only when every page is
//! already in the page cache, so the read costs a copy and never a disk wait on the worker (a
//! cold file is sent by sendfile, which warms it on the blocking pool, and is read on a later
//! request). After the read the file is stat'ed again: if its identity (size, mtime, ctime,
//! inode) is not the one the entry's validators were made from, the bytes are dropped, so a
//! cached body always belongs to the ETag and Last-Modified sent with it.

use std::os::unix::fs::FileExt;

use bytes::Bytes;

use super::{file_key, OpenFile};

/// The whole of `entry`'s file, if it can be read now without waiting for the disk and is still
/// the version `entry` describes.
pub fn read_whole(entry: &OpenFile) -> Option<Bytes> {
    let len = usize::try_from(entry.len).ok()?;
    if entry.is_dir || len == 0 || !entry.is_resident(0, len) {
        return None;
    }
    let mut bytes = vec![0u8; len];
    entry.file.read_exact_at(&mut bytes, 0).ok()?;
    let meta = entry.file.metadata().ok()?;
    (file_key(&meta) == entry.key).then(|| Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(path: &std::path::Path) -> OpenFile {
        let f = std::fs::File::open(path).unwrap();
        let meta = f.metadata().unwrap();
        super::super::describe(f, &meta, "a.txt", None)
    }

    #[test]
    fn reads_the_described_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"hello").unwrap();
        let entry = describe(&p);
        assert_eq!(read_whole(&entry).as_deref(), Some(&b"hello"[..]));
        // Rewritten in place after the entry was made: its bytes are not the entry's version.
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&p, b"HELLO").unwrap();
        assert_eq!(read_whole(&entry), None);
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        assert_eq!(read_whole(&describe(&dir.path().join("empty"))), None);
    }
}
