//! The ZIP wire format (APPNOTE 6.3): header encoders and the exact length of every part, so an
//! archive's size is known before any file is read. Pure; no I/O.
//!
//! Entry kinds and their layout (see docs/zip.md):
//! - **Dir**: method 0, no data.
//! - **Stored (S)**: method 0, CRC and sizes in the local header, raw file bytes. Never with a
//!   data descriptor (Java's ZipInputStream rejects STORED + bit 3).
//! - **StoredBlocks (B)**: method 8 carrying only stored deflate blocks (5-byte block headers every
//!   65535 bytes), CRC in a signed data descriptor. The exact size is known without the CRC.
//! - **Deflate (D)**: real deflate, sizes and CRC in the descriptor; length unknown up front.
//!
//! Zip64 is used exactly when a value reaches its 32- or 16-bit sentinel (`>=`, never `>`); a
//! zip64 entry always carries the zip64 extra in its local header (macOS needs it); every name
//! has the UTF-8 flag; versions: made by 3.0/Unix, needed 1.0 (stored), 2.0 (deflate), 4.5 (zip64).

/// Payload bytes of one stored deflate block.
pub const BLOCK: u64 = 65535;
/// A 32-bit field's "look in the zip64 extra" value.
pub const MAX32: u64 = 0xFFFF_FFFF;
/// Entry count sentinel.
pub const MAX16: u64 = 0xFFFF;

const FLAG_UTF8: u16 = 0x0800;
const FLAG_DESCRIPTOR: u16 = 0x0008;
const MADE_BY: u16 = 0x031E; // Unix, spec 3.0: external attributes carry the Unix mode

/// How an entry is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Dir,
    Stored,
    StoredBlocks,
    Deflate,
}

impl Kind {
    fn method(self) -> u16 {
        match self {
            Kind::Dir | Kind::Stored => 0,
            Kind::StoredBlocks | Kind::Deflate => 8,
        }
    }

    fn flags(self) -> u16 {
        match self {
            Kind::Dir | Kind::Stored => FLAG_UTF8,
            Kind::StoredBlocks | Kind::Deflate => FLAG_UTF8 | FLAG_DESCRIPTOR,
        }
    }

    /// Whether the CRC and sizes follow the data in a descriptor.
    pub fn has_descriptor(self) -> bool {
        matches!(self, Kind::StoredBlocks | Kind::Deflate)
    }
}

/// Number of stored blocks for `u` bytes (an empty entry still has one, final, empty block).
pub fn blocks(u: u64) -> u64 {
    u.div_ceil(BLOCK).max(1)
}

/// Compressed size of a StoredBlocks entry of `u` bytes.
pub fn stored_blocks_size(u: u64) -> u64 {
    u + 5 * blocks(u)
}

/// Whether an entry needs zip64 in its local header, decided from its exact sizes.
pub fn entry_zip64(kind: Kind, usize: u64, csize: u64) -> bool {
    match kind {
        Kind::Dir => false,
        Kind::Stored | Kind::Deflate => usize >= MAX32,
        Kind::StoredBlocks => csize >= MAX32,
    }
}

/// Everything the headers of one entry say.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub kind: Kind,
    pub crc: u32,
    pub usize: u64,
    /// Compressed size (Stored: = usize; StoredBlocks: exact; Deflate: known only at the end).
    pub csize: u64,
    pub mtime: i64,
    pub mode: u32,
    pub zip64: bool,
    /// Offset of the local header in the archive.
    pub offset: u64,
}

impl Header<'_> {
    fn version_needed(&self) -> u16 {
        if self.zip64 {
            45
        } else if self.kind.method() == 8 {
            20
        } else {
            10
        }
    }

    fn external_attributes(&self) -> u32 {
        if self.kind == Kind::Dir {
            ((0o040000 | 0o755) << 16) | 0x10
        } else {
            let perm = if self.mode & 0o111 != 0 { 0o755 } else { 0o644 };
            (0o100000 | perm) << 16
        }
    }
}

/// Length of a local header.
pub fn local_header_len(name_len: usize, zip64: bool) -> u64 {
    30 + name_len as u64 + 9 + if zip64 { 20 } else { 0 }
}

/// Length of a data descriptor.
pub fn descriptor_len(kind: Kind, zip64: bool) -> u64 {
    match (kind.has_descriptor(), zip64) {
        (false, _) => 0,
        (true, false) => 16,
        (true, true) => 24,
    }
}

/// Length of a central directory record.
pub fn central_len(name_len: usize, usize: u64, csize: u64, offset: u64) -> u64 {
    let k = [usize, csize, offset]
        .iter()
        .filter(|&&v| v >= MAX32)
        .count() as u64;
    46 + name_len as u64 + 9 + if k > 0 { 4 + 8 * k } else { 0 }
}

/// Whether the end of the archive needs the zip64 end record and locator.
pub fn end_needs_zip64(entries: u64, cd_size: u64, cd_offset: u64) -> bool {
    entries >= MAX16 || cd_size >= MAX32 || cd_offset >= MAX32
}

/// Length of the end of the archive (zip64 end record and locator when needed, then EOCD).
pub fn end_len(entries: u64, cd_size: u64, cd_offset: u64) -> u64 {
    22 + if end_needs_zip64(entries, cd_size, cd_offset) {
        56 + 20
    } else {
        0
    }
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u64le(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn clamp32(v: u64) -> u32 {
    v.min(MAX32) as u32
}

fn unix_time_extra(out: &mut Vec<u8>, mtime: i64) {
    u16le(out, 0x5455);
    u16le(out, 5);
    out.push(1); // modification time present
    u32le(out, mtime.clamp(0, i64::from(i32::MAX)) as u32);
}

/// Append the local header of `h`.
pub fn write_local_header(out: &mut Vec<u8>, h: &Header<'_>) {
    let (time, date) = dos_datetime(h.mtime);
    u32le(out, 0x0403_4b50);
    u16le(out, h.version_needed());
    u16le(out, h.kind.flags());
    u16le(out, h.kind.method());
    u16le(out, time);
    u16le(out, date);
    let (crc, csize, usize) = match h.kind {
        Kind::Stored => (h.crc, h.csize, h.usize),
        _ => (0, 0, 0),
    };
    u32le(out, crc);
    if h.zip64 {
        u32le(out, MAX32 as u32);
        u32le(out, MAX32 as u32);
    } else {
        u32le(out, csize as u32);
        u32le(out, usize as u32);
    }
    u16le(out, h.name.len() as u16);
    u16le(out, if h.zip64 { 20 + 9 } else { 9 });
    out.extend_from_slice(h.name);
    if h.zip64 {
        u16le(out, 0x0001);
        u16le(out, 16);
        u64le(out, usize);
        u64le(out, csize);
    }
    unix_time_extra(out, h.mtime);
}

/// Append the 5-byte header of a stored deflate block of `len` bytes.
pub fn write_block_header(out: &mut Vec<u8>, len: u16, last: bool) {
    out.push(u8::from(last));
    u16le(out, len);
    u16le(out, !len);
}

/// Append a signed data descriptor.
pub fn write_descriptor(out: &mut Vec<u8>, crc: u32, csize: u64, usize: u64, zip64: bool) {
    u32le(out, 0x0807_4b50);
    u32le(out, crc);
    if zip64 {
        u64le(out, csize);
        u64le(out, usize);
    } else {
        u32le(out, csize as u32);
        u32le(out, usize as u32);
    }
}

/// Append the central directory record of `h` (with its real sizes and CRC).
pub fn write_central(out: &mut Vec<u8>, h: &Header<'_>) {
    let (time, date) = dos_datetime(h.mtime);
    let big: Vec<u64> = [h.usize, h.csize, h.offset]
        .into_iter()
        .filter(|&v| v >= MAX32)
        .collect();
    u32le(out, 0x0201_4b50);
    u16le(out, MADE_BY);
    u16le(out, h.version_needed());
    u16le(out, h.kind.flags());
    u16le(out, h.kind.method());
    u16le(out, time);
    u16le(out, date);
    u32le(out, h.crc);
    u32le(out, clamp32(h.csize));
    u32le(out, clamp32(h.usize));
    u16le(out, h.name.len() as u16);
    let z64_extra = if big.is_empty() {
        0
    } else {
        4 + 8 * big.len() as u16
    };
    u16le(out, z64_extra + 9);
    u16le(out, 0); // comment
    u16le(out, 0); // disk
    u16le(out, 0); // internal attributes
    u32le(out, h.external_attributes());
    u32le(out, clamp32(h.offset));
    out.extend_from_slice(h.name);
    if !big.is_empty() {
        u16le(out, 0x0001);
        u16le(out, 8 * big.len() as u16);
        for v in big {
            u64le(out, v);
        }
    }
    unix_time_extra(out, h.mtime);
}

/// Append the end of the archive: the zip64 end record and locator when needed, then the EOCD.
pub fn write_end(out: &mut Vec<u8>, entries: u64, cd_size: u64, cd_offset: u64) {
    if end_needs_zip64(entries, cd_size, cd_offset) {
        let z64_end_offset = cd_offset + cd_size;
        u32le(out, 0x0606_4b50);
        u64le(out, 44);
        u16le(out, MADE_BY);
        u16le(out, 45);
        u32le(out, 0);
        u32le(out, 0);
        u64le(out, entries);
        u64le(out, entries);
        u64le(out, cd_size);
        u64le(out, cd_offset);
        u32le(out, 0x0706_4b50);
        u32le(out, 0);
        u64le(out, z64_end_offset);
        u32le(out, 1);
    }
    u32le(out, 0x0605_4b50);
    u16le(out, 0);
    u16le(out, 0);
    u16le(out, entries.min(MAX16) as u16);
    u16le(out, entries.min(MAX16) as u16);
    u32le(out, clamp32(cd_size));
    u32le(out, clamp32(cd_offset));
    u16le(out, 0);
}

/// MS-DOS (time, date) of a Unix time in UTC, clamped to 1980-01-01 .. 2107-12-31, seconds
/// rounded down to even.
pub fn dos_datetime(unix: i64) -> (u16, u16) {
    const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    const MAX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
    let t = unix.clamp(MIN, MAX);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let time = (((secs / 3600) << 11) | ((secs % 3600 / 60) << 5) | ((secs % 60) / 2)) as u16;
    let date = (((y - 1980) << 9) | ((m as i64) << 5) | d as i64) as u16;
    (time, date)
}

/// (year, month 1-12, day 1-31) of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind, usize: u64, offset: u64) -> Header<'static> {
        let csize = match kind {
            Kind::StoredBlocks => stored_blocks_size(usize),
            _ => usize,
        };
        Header {
            name: "top/中文.bin".as_bytes(),
            kind,
            crc: 0x1234_5678,
            usize,
            csize,
            mtime: 1_700_000_000,
            mode: 0o644,
            zip64: entry_zip64(kind, usize, csize),
            offset,
        }
    }

    /// Every encoder writes exactly the length its formula announces.
    #[test]
    fn lengths_match_the_formulas() {
        for kind in [Kind::Dir, Kind::Stored, Kind::StoredBlocks, Kind::Deflate] {
            for usize in [0, 1, BLOCK, BLOCK + 1, MAX32 - 1, MAX32, 5 << 30] {
                for offset in [0, MAX32 - 1, MAX32, 6 << 30] {
                    let h = header(kind, usize, offset);
                    let mut out = Vec::new();
                    write_local_header(&mut out, &h);
                    assert_eq!(
                        out.len() as u64,
                        local_header_len(h.name.len(), h.zip64),
                        "{kind:?} {usize}"
                    );
                    out.clear();
                    write_central(&mut out, &h);
                    assert_eq!(
                        out.len() as u64,
                        central_len(h.name.len(), h.usize, h.csize, offset)
                    );
                    out.clear();
                    write_descriptor(&mut out, 0, h.csize, h.usize, h.zip64);
                    assert_eq!(out.len() as u64, descriptor_len(Kind::Deflate, h.zip64));
                }
            }
        }
        for (n, size, off) in [
            (1, 10, 10),
            (65534, 1, 1),
            (65535, 1, 1),
            (3, MAX32, 1),
            (3, 1, MAX32),
        ] {
            let mut out = Vec::new();
            write_end(&mut out, n, size, off);
            assert_eq!(out.len() as u64, end_len(n, size, off), "{n} {size} {off}");
        }
    }

    #[test]
    fn zip64_thresholds_use_ge() {
        assert!(!entry_zip64(Kind::Stored, MAX32 - 1, MAX32 - 1));
        assert!(entry_zip64(Kind::Stored, MAX32, MAX32));
        // StoredBlocks looks at its compressed size, which is a little larger.
        assert!(entry_zip64(
            Kind::StoredBlocks,
            MAX32 - 100,
            stored_blocks_size(MAX32 - 100)
        ));
        assert!(!end_needs_zip64(65534, 0, 0));
        assert!(end_needs_zip64(65535, 0, 0));
        assert_eq!(blocks(0), 1);
        assert_eq!(blocks(BLOCK), 1);
        assert_eq!(blocks(BLOCK + 1), 2);
        assert_eq!(stored_blocks_size(0), 5);
    }

    #[test]
    fn dos_times() {
        // 2023-11-14 22:13:20 UTC
        let (t, d) = dos_datetime(1_700_000_000);
        assert_eq!((d >> 9) + 1980, 2023);
        assert_eq!((d >> 5) & 0xF, 11);
        assert_eq!(d & 0x1F, 14);
        assert_eq!(t >> 11, 22);
        assert_eq!((t >> 5) & 0x3F, 13);
        assert_eq!((t & 0x1F) * 2, 20);
        // before 1980 clamps to 1980-01-01
        assert_eq!(dos_datetime(0), (0, (1 << 5) | 1));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn stored_block_headers() {
        let mut out = Vec::new();
        write_block_header(&mut out, 0, true);
        assert_eq!(out, [1, 0, 0, 0xFF, 0xFF]);
        out.clear();
        write_block_header(&mut out, 0xFFFF, false);
        assert_eq!(out, [0, 0xFF, 0xFF, 0, 0]);
    }
}
