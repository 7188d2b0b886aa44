//! Digests kept beside the bytes in extended attributes (`user.sendfiled.sha256`,
//! `user.sendfiled.sha512`), so that a restart, or a copy made with `rsync -aX`, keeps them.
//!
//! An attribute holds the size and mtime (ns) it was computed for and the digest in hex, as
//! text (`v1 <size> <mtime ns> <hex>`, readable with `getfattr`); one whose size or mtime differs
//! from the file's is stale and never trusted. The ctime cannot be recorded: writing the
//! attribute changes it.

use std::fs::File;
use std::io;

use xattr::FileExt;

use super::{Algorithm, Raw};
use crate::fs::FileKey;

/// The attribute's name for `alg`.
pub fn name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::Sha256 => "user.sendfiled.sha256",
        Algorithm::Sha512 => "user.sendfiled.sha512",
    }
}

/// What a file's attribute says about its current bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A digest for the file's current size and mtime.
    Fresh(Vec<u8>),
    /// A digest for other bytes (the file changed since), or one that does not parse.
    Stale,
    /// No attribute.
    Missing,
}

/// Reads `file`'s attribute for `alg`, checked against its identity `key`.
pub fn read(file: &File, key: &FileKey, alg: Algorithm) -> io::Result<Found> {
    Ok(match file.get_xattr(name(alg))? {
        None => Found::Missing,
        Some(value) => match parse(&value, key) {
            Some(d) if d.len() == digest_len(alg) => Found::Fresh(d),
            _ => Found::Stale,
        },
    })
}

/// Reads every attribute in `algorithms`; `None` unless all are fresh.
pub fn read_all(file: &File, key: &FileKey, algorithms: &[Algorithm]) -> io::Result<Option<Raw>> {
    let mut raw = Raw::default();
    for &alg in algorithms {
        let Found::Fresh(d) = read(file, key, alg)? else {
            return Ok(None);
        };
        match alg {
            Algorithm::Sha256 => raw.sha256 = d.try_into().ok(),
            Algorithm::Sha512 => raw.sha512 = d.try_into().ok(),
        }
    }
    Ok(Some(raw))
}

/// Writes the attribute of every digest in `raw`, for identity `key`.
pub fn write_all(file: &File, key: &FileKey, raw: &Raw) -> io::Result<()> {
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        if let Some(d) = raw.get(alg) {
            file.set_xattr(name(alg), format(key, d).as_bytes())?;
        }
    }
    Ok(())
}

/// Whether `e` says the file system (or its mount) keeps no user attributes for us, as opposed
/// to a failure of this one file.
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EROFS | libc::EPERM | libc::EACCES | libc::ENOSPC)
    )
}

fn digest_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::Sha256 => 32,
        Algorithm::Sha512 => 64,
    }
}

fn format(key: &FileKey, digest: &[u8]) -> String {
    let mut text = format!("v1 {} {} ", key.size, key.mtime_ns);
    for b in digest {
        text.push_str(&format!("{b:02x}"));
    }
    text
}

fn parse(value: &[u8], key: &FileKey) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut fields = text.split(' ');
    let fresh = fields.next() == Some("v1")
        && fields.next()?.parse::<u64>().ok()? == key.size
        && fields.next()?.parse::<i128>().ok()? == key.mtime_ns;
    let hex = fields.next()?;
    if !fresh || fields.next().is_some() || hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(size: u64, mtime_ns: i128) -> FileKey {
        FileKey {
            dev: 1,
            ino: 2,
            size,
            mtime_ns,
            ctime_ns: 3,
        }
    }

    #[test]
    fn an_attribute_is_trusted_only_for_the_size_and_mtime_it_names() {
        let text = format(&key(5, 1_700_000_000_123_456_789), &[0xab, 0x01]);
        assert_eq!(text, "v1 5 1700000000123456789 ab01");
        let same = key(5, 1_700_000_000_123_456_789);
        assert_eq!(parse(text.as_bytes(), &same), Some(vec![0xab, 0x01]));
        assert_eq!(parse(text.as_bytes(), &key(6, same.mtime_ns)), None);
        assert_eq!(parse(text.as_bytes(), &key(5, same.mtime_ns + 1)), None);
        for bad in [
            "v2 5 1700000000123456789 ab01",
            "v1 5 1700000000123456789 ab0",
            "v1 5",
        ] {
            assert_eq!(parse(bad.as_bytes(), &same), None, "{bad}");
        }
    }
}
