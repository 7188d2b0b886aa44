//! The file system as the server sees it: request paths made safe ([`path`]), files opened beneath
//! the root under the symlink rule, and the per-worker open-file cache ([`cache`]) that keeps the
//! fd, the mapping and the ready-made validator headers of hot files.

pub(crate) mod cache;
pub mod path;
pub(crate) mod small;
pub(crate) mod watch;

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, UNIX_EPOCH};

use http::HeaderValue;

use crate::sys::{open_beneath, Mapping, SymlinkRule};

/// What identifies a file's current content without reading it. Two nodes holding the same file
/// with the same mtime and size give the same ETag, so the tag leaves out dev/ino/ctime; the cache
/// still compares those to notice a replaced file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

/// An open regular file or directory with everything a response needs precomputed.
#[derive(Debug)]
pub struct OpenFile {
    pub file: File,
    /// The read-only mapping whose addresses stand for the file's bytes; `None` for directories,
    /// empty files, and files the kernel would not map (served by the copying fallback).
    pub map: Option<Mapping>,
    pub is_dir: bool,
    pub len: u64,
    pub key: FileKey,
    /// Strong ETag `"<mtime ns hex>-<size hex>"`, quotes included.
    pub etag: HeaderValue,
    pub last_modified: HeaderValue,
    pub last_modified_secs: u64,
    pub content_type: HeaderValue,
    pub cache_control: Option<HeaderValue>,
    /// Which precompressed variants exist beside this file, and when that was checked:
    /// `(milliseconds since the process's first probe << 8) | bitmask`, 0 = never checked.
    pub variant_probe: std::sync::atomic::AtomicU64,
    /// For a precompressed variant: its coding (the Content-Encoding to send).
    pub encoding: Option<crate::http::encoding::Coding>,
    /// The whole body of a small file, read once by pread (see [`small`]), so that head and body
    /// leave in one write; set at most once, by the worker's open-file cache.
    pub small: std::sync::OnceLock<bytes::Bytes>,
    /// The digests of these bytes and the content ETag they give, once known; set at most once.
    pub digests: std::sync::OnceLock<crate::digest::Known>,
    /// The inotify watch that tells whether the file was written since its digest was
    /// confirmed; `None` inside once tried where the file cannot be watched.
    pub watch: std::sync::OnceLock<Option<watch::Watch>>,
    /// The headers every 200 and 206 of these bytes carries, prepared by the service on the
    /// first settled one; set at most once.
    pub head: std::sync::OnceLock<PreparedHead>,
}

#[derive(Debug)]
/// A file's representation headers, ready to be cloned into each response, and the ETag and
/// Repr-Digest among them.
pub struct PreparedHead {
    pub etag: Option<HeaderValue>,
    pub repr_digest: Option<HeaderValue>,
    pub headers: http::HeaderMap,
}

impl OpenFile {
    /// Whether `[offset, offset + len)` is in the page cache: cachestat(2) where the kernel has
    /// it, else mincore(2) on the mapping. A failed probe counts as resident (never stall on it).
    pub fn is_resident(&self, offset: usize, len: usize) -> bool {
        static NO_CACHESTAT: std::sync::atomic::AtomicBool =
            std::sync::atomic::AtomicBool::new(false);
        use std::sync::atomic::Ordering::Relaxed;
        if !NO_CACHESTAT.load(Relaxed) {
            match crate::sys::page_cache_has(&self.file, offset as u64, len) {
                Ok(yes) => return yes,
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    NO_CACHESTAT.store(true, Relaxed)
                }
                Err(_) => return true,
            }
        }
        self.map.as_ref().is_none_or(|m| m.is_resident(offset, len))
    }
}

impl crate::sys::MappingOwner for OpenFile {
    fn mapping(&self) -> Option<&Mapping> {
        self.map.as_ref()
    }
}

/// Why a path could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Missing, or refused by the symlink rule (reported as 404 so that nothing leaks).
    NotFound,
    /// The file exists but the server may not read it.
    Forbidden,
    /// Not a regular file or directory (socket, FIFO, device).
    NotRegular,
    /// Anything else: logged, 500.
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV | libc::ENAMETOOLONG) => {
                OpenError::NotFound
            }
            Some(libc::EACCES | libc::EPERM) => OpenError::Forbidden,
            // Opening a UNIX socket: not a file, like a FIFO or a device.
            Some(libc::ENXIO) => OpenError::NotRegular,
            _ => OpenError::Io(e),
        }
    }
}

/// Read the identity of an open file.
pub fn file_key(meta: &std::fs::Metadata) -> FileKey {
    FileKey {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    }
}

/// Whether a precompressed variant (`variant`) is at least as new as its file (`file`), to the
/// whole second: brotli, gzip and zstd keep the source's mtime with `-k`, but only to the
/// second, so a variant made from the current file looks up to a second older in nanoseconds.
pub fn as_new_as(variant: &FileKey, file: &FileKey) -> bool {
    variant.mtime_ns.div_euclid(1_000_000_000) >= file.mtime_ns.div_euclid(1_000_000_000)
}

/// Open `rel` beneath `root` and describe it. `rel` is a normalised relative path ("" = root).
pub fn open(
    root: &File,
    rel: &str,
    rule: SymlinkRule,
) -> Result<(File, std::fs::Metadata), OpenError> {
    let rel = if rel.is_empty() { "." } else { rel };
    if rel.as_bytes().contains(&0) {
        return Err(OpenError::NotFound);
    }
    // A NUL-terminated copy on the stack for the usual path length; the heap only beyond it.
    let mut stack = [0u8; 512];
    let file = if rel.len() < stack.len() {
        stack[..rel.len()].copy_from_slice(rel.as_bytes());
        let c = CStr::from_bytes_with_nul(&stack[..=rel.len()]).map_err(|_| OpenError::NotFound)?;
        open_beneath(root.as_fd(), c, rule)?
    } else {
        let c = CString::new(rel).map_err(|_| OpenError::NotFound)?;
        open_beneath(root.as_fd(), &c, rule)?
    };
    let meta = file.metadata()?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(OpenError::NotRegular);
    }
    Ok((file, meta))
}

/// Build the cached description of an opened file. `name` (the path as requested) picks the
/// Content-Type; `cache_control` is the value of the first matching rule, if any.
pub fn describe(
    file: File,
    meta: &std::fs::Metadata,
    name: &str,
    cache_control: Option<HeaderValue>,
) -> OpenFile {
    let key = file_key(meta);
    let is_dir = meta.is_dir();
    let len = if is_dir { 0 } else { meta.len() };
    let map = if is_dir || len == 0 {
        None
    } else {
        usize::try_from(len)
            .ok()
            .and_then(|l| Mapping::map_readonly(&file, l).ok())
    };
    let etag = format!("\"{:x}-{:x}\"", key.mtime_ns.max(0), len);
    let mtime = UNIX_EPOCH + Duration::from_secs(u64::try_from(meta.mtime()).unwrap_or(0));
    OpenFile {
        file,
        map,
        is_dir,
        len,
        key,
        etag: HeaderValue::from_str(&etag).expect("hex etag is a valid header value"),
        last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(mtime))
            .expect("http date is a valid header value"),
        last_modified_secs: u64::try_from(meta.mtime()).unwrap_or(0),
        content_type: content_type_for(name),
        cache_control,
        variant_probe: std::sync::atomic::AtomicU64::new(0),
        encoding: None,
        small: std::sync::OnceLock::new(),
        digests: std::sync::OnceLock::new(),
        watch: std::sync::OnceLock::new(),
        head: std::sync::OnceLock::new(),
    }
}

/// Describe a precompressed variant of `base` (`x.js.gz` for `x.js`): its own bytes, length and
/// dates, `base`'s Content-Type and Cache-Control, and an ETag of its own that can never equal
/// the identity file's.
pub fn describe_variant(
    file: File,
    meta: &std::fs::Metadata,
    base: &OpenFile,
    coding: crate::http::encoding::Coding,
) -> OpenFile {
    let mut v = describe(file, meta, "", base.cache_control.clone());
    v.content_type = base.content_type.clone();
    let etag = format!(
        "\"{:x}-{:x}-{}\"",
        v.key.mtime_ns.max(0),
        v.len,
        coding.token()
    );
    v.etag = HeaderValue::from_str(&etag).expect("hex etag is a valid header value");
    v.encoding = Some(coding);
    v
}

/// Content-Type from the file name: text types get `; charset=utf-8`; unknown types are
/// `application/octet-stream`.
pub fn content_type_for(name: &str) -> HeaderValue {
    let Some(mime) = mime_guess::from_path(name).first() else {
        return HeaderValue::from_static("application/octet-stream");
    };
    let essence = mime.essence_str();
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    let value = if texty && mime.get_param("charset").is_none() {
        format!("{essence}; charset=utf-8")
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("a.html"), "text/html; charset=utf-8");
        assert_eq!(content_type_for("a.css"), "text/css; charset=utf-8");
        assert_eq!(
            content_type_for("a.json"),
            "application/json; charset=utf-8"
        );
        assert_eq!(content_type_for("a.png"), "image/png");
        assert_eq!(content_type_for("a.unknownext"), "application/octet-stream");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }
}
