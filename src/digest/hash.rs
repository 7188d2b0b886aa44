//! Hashing a file's bytes by pread into a caller's buffer (never through the mapping, so a file
//! truncated meanwhile gives an error rather than SIGBUS), for the background store and for
//! `sendfiled digest` alike.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256, Sha512};

use super::{Algorithm, Raw};

/// The digests in `algorithms` of the first `len` bytes of `file`; `took(n)` is told of every
/// read (for pacing and counting).
pub fn file(
    file: &File,
    len: u64,
    algorithms: &[Algorithm],
    buf: &mut [u8],
    mut took: impl FnMut(u64),
) -> io::Result<Raw> {
    let mut sha256 = algorithms.contains(&Algorithm::Sha256).then(Sha256::new);
    let mut sha512 = algorithms.contains(&Algorithm::Sha512).then(Sha512::new);
    let mut at = 0u64;
    while at < len {
        let want = buf
            .len()
            .min(usize::try_from(len - at).unwrap_or(usize::MAX));
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::Error::other("file shrank while it was hashed"));
        }
        if let Some(h) = sha256.as_mut() {
            h.update(&buf[..n]);
        }
        if let Some(h) = sha512.as_mut() {
            h.update(&buf[..n]);
        }
        at += n as u64;
        took(n as u64);
    }
    Ok(Raw {
        sha256: sha256.map(|h| h.finalize().into()),
        sha512: sha512.map(|h| h.finalize().into()),
    })
}
