//! CRC-32 of archive entries: computed from the files by reading them into a buffer (never
//! through a mapping), remembered in a process-wide cache keyed by (dev, ino, size, mtime, ctime),
//! and prefetched in entry order on the blocking pool so the stream rarely waits for one.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use super::format::Kind;
use super::manifest::Manifest;
use crate::config::SymlinkRule;
use crate::fs::{self, FileKey};

/// Entries kept in the CRC cache before it starts over (about 48 bytes each).
const CACHE_MAX: usize = 1 << 20;
/// Read size while computing a CRC.
const READ_BUF: usize = 256 * 1024;

fn cache() -> &'static Mutex<HashMap<FileKey, u32>> {
    static CACHE: OnceLock<Mutex<HashMap<FileKey, u32>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The cached CRC of the file with this identity, if any.
pub fn cached(key: &FileKey) -> Option<u32> {
    cache().lock().ok()?.get(key).copied()
}

/// Remember a computed CRC.
pub fn remember(key: FileKey, crc: u32) {
    if let Ok(mut c) = cache().lock() {
        if c.len() >= CACHE_MAX {
            c.clear();
        }
        c.insert(key, crc);
    }
}

/// A file changed between the manifest and the read: never emit a CRC for it.
pub fn changed(path: &str) -> io::Error {
    io::Error::other(format!("{path} changed while it was being archived"))
}

/// CRC of exactly `size` bytes of `file`; an early end of file is an error.
pub fn compute(file: &File, size: u64, buf: &mut [u8]) -> io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut pos = 0u64;
    while pos < size {
        let want = (size - pos).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
        }
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h.finalize())
}

/// Start computing the CRCs of every entry, in order, on the blocking pool. The receiver gets one
/// result per entry (0 for directories and deflated entries, whose CRC the compressor computes).
/// Dropping the receiver stops the work.
pub fn prefetch(
    manifest: Arc<Manifest>,
    root: Arc<File>,
    rule: SymlinkRule,
) -> mpsc::UnboundedReceiver<io::Result<u32>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || {
        let mut buf: Vec<u8> = Vec::new();
        for e in &manifest.entries {
            let result = if matches!(e.kind, Kind::Dir | Kind::Deflate) || e.size == 0 {
                Ok(0)
            } else if let Some(crc) = cached(&e.key) {
                Ok(crc)
            } else {
                if buf.is_empty() {
                    buf = vec![0u8; READ_BUF];
                }
                entry_crc(&root, manifest.disk_path(e), &e.key, rule, &mut buf)
            };
            let failed = result.is_err();
            if tx.send(result).is_err() || failed {
                return;
            }
        }
    });
    rx
}

fn entry_crc(
    root: &File,
    path: &str,
    key: &FileKey,
    rule: SymlinkRule,
    buf: &mut [u8],
) -> io::Result<u32> {
    let (file, meta) = fs::open(root, path, rule).map_err(|_| changed(path))?;
    if fs::file_key(&meta) != *key {
        return Err(changed(path));
    }
    let crc = compute(&file, key.size, buf)?;
    if fs::file_key(&file.metadata()?) != *key {
        return Err(changed(path));
    }
    remember(*key, crc);
    Ok(crc)
}
