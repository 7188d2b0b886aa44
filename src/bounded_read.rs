//! Reading the small files a configuration names (the configuration itself, signing keys):
//! regular files only, and never more than a stated size, so that a key "file" of `/dev/zero`
//! or a FIFO cannot make the server read forever or run out of memory.

use std::io::Read;
use std::path::Path;

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
