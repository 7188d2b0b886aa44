//! Reading the small files a configuration names (the configuration itself, signing keys):
//! regular files only, and never more than a stated size, so that a key "file" of `/dev/zero`
//! or a FIFO cannot make the server read forever or run out of memory.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest configuration file read.
pub const MAX_CONFIG_FILE: u64 = 1 << 20;
/// The largest key file read.
pub const MAX_KEY_FILE: u64 = 64 << 10;

/// Read `path`, a regular file of at most `max` bytes. The error says what went wrong, without
/// the path (callers name the file and what it is for).
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > max {
        return Err(format!(
            "{} bytes, more than the {max} bytes allowed",
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("grew past the {max} bytes allowed"));
    }
    Ok(bytes)
}

/// Shortest accepted key (bytes of the key file, trailing whitespace removed).
pub const MIN_KEY_BYTES: usize = 16;

/// Read a key file: its bytes with trailing whitespace removed, at least [`MIN_KEY_BYTES`].
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = read_regular(path, MAX_KEY_FILE)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    if bytes.len() < MIN_KEY_BYTES {
        return Err(format!(
            "{} holds {} bytes; a key needs at least {MIN_KEY_BYTES} (try: head -c 32 /dev/urandom | base64 > {})",
            path.display(),
            bytes.len(),
            path.display()
        ));
    }
    Ok(bytes)
}

/// One configured key: its id and file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySource {
    pub id: String,
    pub file: PathBuf,
}
