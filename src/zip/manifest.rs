//! The manifest of an archive: which entries, in which order, under which names, of which kind,
//! at which offsets. Built from metadata only (no file is read), under exactly the rules of file
//! serving (root, symlinks, dotfiles), so the archive's length, ETag and layout are known before
//! the first byte is sent, and are the same for the same files on every request and every node.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

use super::format::{self, Kind};
use crate::config::{DotfileRule, SymlinkRule};
use crate::fs::{self, FileKey, OpenError};

pub use crate::config::Compress;

/// One entry.
#[derive(Clone, Debug)]
pub struct Entry {
    name: (u32, u32),
    disk: (u32, u32),
    pub kind: Kind,
    pub size: u64,
    /// Compressed size when known up front (Stored, StoredBlocks); 0 for Deflate.
    pub csize: u64,
    pub mtime: i64,
    pub mode: u32,
    pub key: FileKey,
    pub zip64: bool,
    /// Offset of the local header (sized archives only).
    pub offset: u64,
}

/// Limits applied while building.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_entries: usize,
    pub max_bytes: u64,
    /// Files up to this size are Stored with their CRC in the local header (computed ahead);
    /// larger ones use StoredBlocks with the CRC in a descriptor, so no stream waits for a
    /// large file to be read first.
    pub crc_ahead_max: u64,
    /// Deepest folder nesting below the archived directory; a deeper tree is refused.
    pub max_depth: usize,
}

/// Why no manifest could be built; each becomes a 4xx naming the culprit.
#[derive(Debug)]
pub enum ManifestError {
    /// A selected path is malformed or outside the directory (400).
    BadPath(String),
    /// A selected path does not exist or may not be served (404).
    NotFound(String),
    /// Over `max_entries`, `max_bytes`, `max_depth` or the walk budget (403).
    TooLarge(String),
    /// The client went away: the build stopped.
    Cancelled,
    /// Reading a directory failed (500).
    Io(std::io::Error),
}

/// Everything about one archive except the file contents.
#[derive(Debug)]
pub struct Manifest {
    arena: Vec<u8>,
    pub entries: Vec<Entry>,
    /// Every entry's size is known up front: exact Content-Length, ETag and Range.
    pub sized: bool,
    pub compress: Compress,
    pub level: u32,
    /// Where the central directory starts and how long it is (sized archives).
    pub cd_offset: u64,
    pub cd_size: u64,
    /// The whole archive's length (sized archives).
    pub total_len: u64,
    /// Latest modification time of any entry (seconds).
    pub last_modified: i64,
    /// Strong ETag, quotes included.
    pub etag: String,
    /// Files left out because no archive may hold them: names with a backslash or a control
    /// character (APPNOTE 4.4.17 allows only `/` as a separator), unreadable files and folders.
    pub skipped: usize,
}

/// In `auto` mode, deflate only when the text bytes are worth it: at least this much...
const AUTO_MIN_SAVING_BYTES: u64 = 8 << 20;
/// ...and at least this share of the archive.
const AUTO_MIN_SHARE: f64 = 0.10;
/// Deflate entries whose size is this close below 4 GiB become StoredBlocks instead, so that
/// the compressed size cannot cross the zip64 line unannounced.
const DEFLATE_ZIP64_MARGIN: u64 = 128 << 20;
/// Files smaller than this are never deflated (no gain).
const DEFLATE_MIN: u64 = 64;

/// What to put in the archive.
pub enum Selection<'a> {
    /// The whole directory tree.
    Everything,
    /// These paths, relative to the directory (files or directories).
    Paths(&'a [String]),
}

/// Inputs of [`build`].
pub struct BuildInput<'a> {
    pub root: &'a File,
    /// The directory's path relative to the root ("" for the root).
    pub dir_rel: &'a str,
    /// Name of the top folder inside the archive.
    pub top: &'a str,
    pub selection: Selection<'a>,
    pub symlinks: SymlinkRule,
    pub dotfiles: DotfileRule,
    pub compress: Compress,
    pub level: u32,
    pub limits: Limits,
    /// Paths relative to the root (no slashes at either end) whose subtrees stay out of the
    /// archive (protected folders in an unsigned archive).
    pub exclude: &'a [String],
    /// Set when the client has gone: the walk stops at its next directory.
    pub cancel: &'a std::sync::atomic::AtomicBool,
}

impl BuildInput<'_> {
    fn excluded(&self, disk_rel: &str) -> bool {
        self.exclude.iter().any(|x| {
            disk_rel.starts_with(x.as_str())
                && (disk_rel.len() == x.len() || disk_rel.as_bytes()[x.len()] == b'/')
        })
    }
}

struct Builder<'a> {
    input: &'a BuildInput<'a>,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    names: HashSet<Vec<u8>>,
    total: u64,
    /// Directory entries looked at so far, against the walk budget.
    visited: usize,
    skipped: usize,
}

/// A folder waiting to be walked: its path relative to the root, its name prefix in the
/// archive, and its depth below the archived directory.
struct PendingDir {
    disk: String,
    prefix: String,
    depth: usize,
}

/// Directory entries one archive may look at, per allowed entry: walking costs at most this
/// multiple of the work of the largest archive allowed, however the selection is spelled.
const WALK_BUDGET_PER_ENTRY: usize = 2;

/// Walk the directory (or the selection) and lay the archive out.
pub fn build(input: &BuildInput<'_>) -> Result<Manifest, ManifestError> {
    let mut b = Builder {
        input,
        arena: Vec::new(),
        entries: Vec::new(),
        names: HashSet::new(),
        total: 0,
        visited: 0,
        skipped: 0,
    };
    let (dir_file, dir_meta) =
        fs::open(input.root, input.dir_rel, input.symlinks).map_err(|e| match e {
            OpenError::Io(e) => ManifestError::Io(e),
            _ => ManifestError::NotFound(input.dir_rel.to_string()),
        })?;
    drop(dir_file);
    let top = format!("{}/", input.top);
    b.push(
        top.as_bytes(),
        input.dir_rel.as_bytes(),
        Kind::Dir,
        &dir_meta,
    )?;
    match input.selection {
        Selection::Everything => b.walk(input.dir_rel, &top, 0)?,
        Selection::Paths(paths) => {
            for p in collapse_selection(paths)? {
                b.select(&p, &top)?;
            }
        }
    }
    let mut m = b.finish();
    let arena = &m.arena;
    m.entries.sort_by(|a, b| {
        arena[a.name.0 as usize..(a.name.0 + a.name.1) as usize]
            .cmp(&arena[b.name.0 as usize..(b.name.0 + b.name.1) as usize])
    });
    m.decide_kinds(input.compress, input.limits.crc_ahead_max);
    m.lay_out(input.compress, input.level);
    Ok(m)
}

impl Builder<'_> {
    fn push(
        &mut self,
        name: &[u8],
        disk: &[u8],
        kind: Kind,
        meta: &std::fs::Metadata,
    ) -> Result<(), ManifestError> {
        if !self.names.insert(name.to_vec()) {
            return Ok(()); // the same entry selected twice (or through a parent)
        }
        if self.entries.len() >= self.input.limits.max_entries {
            return Err(ManifestError::TooLarge(format!(
                "the archive would have more than {} entries",
                self.input.limits.max_entries
            )));
        }
        let size = if kind == Kind::Dir { 0 } else { meta.len() };
        self.total = self.total.saturating_add(size);
        if self.total > self.input.limits.max_bytes {
            return Err(ManifestError::TooLarge(format!(
                "the archive would hold more than {} bytes",
                self.input.limits.max_bytes
            )));
        }
        let name_at = self.arena.len() as u32;
        self.arena.extend_from_slice(name);
        let disk_at = self.arena.len() as u32;
        self.arena.extend_from_slice(disk);
        self.entries.push(Entry {
            name: (name_at, name.len() as u32),
            disk: (disk_at, disk.len() as u32),
            kind,
            size,
            csize: 0,
            mtime: meta.mtime(),
            mode: meta.mode(),
            key: fs::file_key(meta),
            zip64: false,
            offset: 0,
        });
        Ok(())
    }

    /// Add everything under `disk_rel` (a directory at `depth` below the archived one), names
    /// prefixed with `prefix`. Iterative, with an explicit stack: the tree's depth is the
    /// client's to choose, the thread's stack is not.
    fn walk(&mut self, disk_rel: &str, prefix: &str, depth: usize) -> Result<(), ManifestError> {
        let mut pending = vec![PendingDir {
            disk: disk_rel.to_string(),
            prefix: prefix.to_string(),
            depth,
        }];
        while let Some(dir) = pending.pop() {
            if self.input.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(ManifestError::Cancelled);
            }
            let Some(children) = self.read_children(&dir.disk)? else {
                continue;
            };
            for (name, ftype, meta) in children {
                if let Some(sub) = self.add_child(&dir, &name, ftype, meta)? {
                    pending.push(sub);
                }
            }
        }
        Ok(())
    }

    /// The servable children of a folder, sorted by name; `None` when it vanished, is refused,
    /// or cannot be read (counted as skipped).
    #[allow(clippy::type_complexity)]
    fn read_children(
        &mut self,
        disk_rel: &str,
    ) -> Result<Option<Vec<(Vec<u8>, std::fs::FileType, Option<std::fs::Metadata>)>>, ManifestError>
    {
        let dir = match fs::open(self.input.root, disk_rel, self.input.symlinks) {
            Ok((dir, _)) => dir,
            Err(OpenError::Io(e)) => return Err(ManifestError::Io(e)),
            Err(_) => return Ok(None), // vanished or refused since it was listed: leave it out
        };
        // Read the directory through its descriptor, so the listing is of the directory that
        // was opened beneath the root, whatever happens to the path meanwhile.
        let listing = match std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                self.skipped += 1;
                return Ok(None);
            }
            Err(e) => return Err(ManifestError::Io(e)),
        };
        let mut children = Vec::new();
        for item in listing {
            let item = item.map_err(ManifestError::Io)?;
            self.visited += 1;
            if self.visited > self.input.limits.max_entries * WALK_BUDGET_PER_ENTRY {
                return Err(ManifestError::TooLarge(
                    "the selection would take too long to list".into(),
                ));
            }
            let name = item.file_name().as_bytes().to_vec();
            if self.input.dotfiles == DotfileRule::Deny && name.first() == Some(&b'.') {
                continue;
            }
            if !archivable_name(&name) {
                self.skipped += 1;
                continue;
            }
            let Ok(ftype) = item.file_type() else {
                continue;
            };
            // A regular file's metadata comes from fstatat() relative to the opened directory:
            // no open per file. Symlinks and directories go through openat2 in `add_child`.
            let meta = if ftype.is_file() {
                if !crate::sys::readable_at(&dir, &name) {
                    self.skipped += 1;
                    continue;
                }
                item.metadata().ok()
            } else {
                None
            };
            children.push((name, ftype, meta));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(children))
    }

    /// Add one child of `dir`; a folder comes back to be walked.
    fn add_child(
        &mut self,
        dir: &PendingDir,
        name: &[u8],
        ftype: std::fs::FileType,
        meta: Option<std::fs::Metadata>,
    ) -> Result<Option<PendingDir>, ManifestError> {
        let disk = if dir.disk.is_empty() {
            name.to_vec()
        } else {
            [dir.disk.as_bytes(), b"/", name].concat()
        };
        let Ok(disk_str) = String::from_utf8(disk) else {
            return Ok(None); // the server cannot address non-UTF-8 paths either
        };
        if self.input.excluded(&disk_str) {
            return Ok(None);
        }
        let shown = format!("{}{}", dir.prefix, String::from_utf8_lossy(name));
        if ftype.is_dir() {
            let meta = match fs::open(self.input.root, &disk_str, self.input.symlinks) {
                Ok((_, meta)) => meta,
                Err(OpenError::Forbidden) => {
                    self.skipped += 1; // unreadable: left out, like its files
                    return Ok(None);
                }
                Err(_) => return Ok(None),
            };
            if dir.depth + 1 > self.input.limits.max_depth {
                return Err(ManifestError::TooLarge(format!(
                    "the folder nests deeper than {} levels",
                    self.input.limits.max_depth
                )));
            }
            let dir_name = format!("{shown}/");
            self.push(dir_name.as_bytes(), disk_str.as_bytes(), Kind::Dir, &meta)?;
            return Ok(Some(PendingDir {
                disk: disk_str,
                prefix: dir_name,
                depth: dir.depth + 1,
            }));
        }
        if let Some(meta) = meta {
            self.push(shown.as_bytes(), disk_str.as_bytes(), Kind::Stored, &meta)?;
        } else if ftype.is_symlink() {
            // Symlinks are resolved by the same openat2 rule as requests; a link to a
            // directory is left out (no cycles).
            if let Ok((_, meta)) = fs::open(self.input.root, &disk_str, self.input.symlinks) {
                if meta.is_file() {
                    self.push(shown.as_bytes(), disk_str.as_bytes(), Kind::Stored, &meta)?;
                }
            }
        }
        Ok(None)
    }

    /// Add one selected path (relative to the directory).
    fn select(&mut self, path: &str, top: &str) -> Result<(), ManifestError> {
        let mut rel = String::new();
        let shown = format!("{path:?}");
        if path.is_empty() || path.starts_with('/') {
            return Err(ManifestError::BadPath(format!(
                "path {shown} must be relative to the directory"
            )));
        }
        fs::path::normalize(&format!("/{path}"), &mut rel)
            .map_err(|e| ManifestError::BadPath(format!("path {shown}: {e}")))?;
        if rel.is_empty() {
            return Err(ManifestError::BadPath(format!(
                "path {shown} names the directory itself"
            )));
        }
        if self.input.dotfiles == DotfileRule::Deny && fs::path::has_dotfile(&rel) {
            return Err(ManifestError::NotFound(format!(
                "path {shown} does not exist"
            )));
        }
        let disk = if self.input.dir_rel.is_empty() {
            rel.clone()
        } else {
            format!("{}/{rel}", self.input.dir_rel)
        };
        if self.input.excluded(&disk) {
            return Err(ManifestError::NotFound(format!(
                "path {shown} does not exist"
            )));
        }
        let meta = match fs::open(self.input.root, &disk, self.input.symlinks) {
            Ok((_, meta)) => meta,
            Err(OpenError::Io(e)) => return Err(ManifestError::Io(e)),
            Err(_) => {
                return Err(ManifestError::NotFound(format!(
                    "path {shown} does not exist"
                )))
            }
        };
        // Parent folders of a nested selection get their own entries.
        let mut at = 0;
        while let Some(slash) = rel[at..].find('/') {
            let parent = &rel[..at + slash];
            let parent_disk = if self.input.dir_rel.is_empty() {
                parent.to_string()
            } else {
                format!("{}/{parent}", self.input.dir_rel)
            };
            if let Ok((_, pm)) = fs::open(self.input.root, &parent_disk, self.input.symlinks) {
                self.push(
                    format!("{top}{parent}/").as_bytes(),
                    parent_disk.as_bytes(),
                    Kind::Dir,
                    &pm,
                )?;
            }
            at += slash + 1;
        }
        if meta.is_dir() {
            let name = format!("{top}{rel}/");
            self.push(name.as_bytes(), disk.as_bytes(), Kind::Dir, &meta)?;
            let depth = rel.split('/').count();
            if depth > self.input.limits.max_depth {
                return Err(ManifestError::TooLarge(format!(
                    "the folder nests deeper than {} levels",
                    self.input.limits.max_depth
                )));
            }
            self.walk(&disk, &name, depth)
        } else {
            self.push(
                format!("{top}{rel}").as_bytes(),
                disk.as_bytes(),
                Kind::Stored,
                &meta,
            )
        }
    }

    fn finish(self) -> Manifest {
        Manifest {
            arena: self.arena,
            entries: self.entries,
            skipped: self.skipped,
            sized: true,
            compress: Compress::Store,
            level: 0,
            cd_offset: 0,
            cd_size: 0,
            total_len: 0,
            last_modified: 0,
            etag: String::new(),
        }
    }
}

/// The selected paths, normalised, without duplicates and without paths inside another selected
/// folder (a folder's walk already holds them), in order: so that no spelling of a selection
/// makes the walk do the same work twice.
fn collapse_selection(paths: &[String]) -> Result<Vec<String>, ManifestError> {
    let mut normalised = Vec::with_capacity(paths.len());
    for path in paths {
        let shown = format!("{path:?}");
        if path.is_empty() || path.starts_with('/') {
            return Err(ManifestError::BadPath(format!(
                "path {shown} must be relative to the directory"
            )));
        }
        let mut rel = String::new();
        fs::path::normalize(&format!("/{path}"), &mut rel)
            .map_err(|e| ManifestError::BadPath(format!("path {shown}: {e}")))?;
        if rel.is_empty() {
            return Err(ManifestError::BadPath(format!(
                "path {shown} names the directory itself"
            )));
        }
        normalised.push(rel);
    }
    normalised.sort();
    normalised.dedup();
    let mut kept: Vec<String> = Vec::with_capacity(normalised.len());
    let mut folders: HashSet<&str> = HashSet::new();
    for rel in &normalised {
        let inside = rel
            .match_indices('/')
            .any(|(i, _)| folders.contains(&rel[..i]));
        if !inside {
            folders.insert(rel);
            kept.push(rel.clone());
        }
    }
    Ok(kept)
}

/// Whether a file name can stand in an archive: no backslash (a separator to some extractors)
/// and no control character (LF, TAB, …), the same rule as for request paths.
fn archivable_name(name: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(name) else {
        return true; // left out later: the server cannot address it
    };
    !text.chars().any(|c| c == '\\' || c.is_control())
}

impl Manifest {
    /// The entry's name inside the archive.
    pub fn name(&self, e: &Entry) -> &[u8] {
        &self.arena[e.name.0 as usize..(e.name.0 + e.name.1) as usize]
    }

    /// The entry's path relative to the served root.
    pub fn disk_path(&self, e: &Entry) -> &str {
        std::str::from_utf8(&self.arena[e.disk.0 as usize..(e.disk.0 + e.disk.1) as usize])
            .unwrap_or("")
    }

    /// The local header, descriptor and central record of entry `i`.
    pub fn header(&self, i: usize, crc: u32) -> format::Header<'_> {
        let e = &self.entries[i];
        format::Header {
            name: self.name(e),
            kind: e.kind,
            crc,
            usize: e.size,
            csize: e.csize,
            mtime: e.mtime,
            mode: e.mode,
            zip64: e.zip64,
            offset: e.offset,
        }
    }

    /// Length of entry `i`'s local header, data and descriptor (sized archives).
    pub fn entry_span(&self, i: usize) -> u64 {
        let e = &self.entries[i];
        format::local_header_len(e.name.1 as usize, e.zip64)
            + e.csize
            + format::descriptor_len(e.kind, e.zip64)
    }

    fn decide_kinds(&mut self, compress: Compress, crc_ahead_max: u64) {
        let deflatable = |m: &Manifest, e: &Entry| {
            e.size >= DEFLATE_MIN && super::compressible::compresses_well(m.name(e))
        };
        let deflate_all = match compress {
            Compress::Store => false,
            Compress::Deflate => true,
            Compress::Auto => {
                let total: u64 = self.entries.iter().map(|e| e.size).sum();
                let text: u64 = self
                    .entries
                    .iter()
                    .filter(|e| e.kind != Kind::Dir && deflatable(self, e))
                    .map(|e| e.size)
                    .sum();
                text >= AUTO_MIN_SAVING_BYTES && text as f64 >= AUTO_MIN_SHARE * total as f64
            }
        };
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.kind == Kind::Dir {
                continue;
            }
            let wants_deflate = deflate_all
                && e.size >= DEFLATE_MIN
                && (compress == Compress::Deflate || deflatable(self, e));
            let near_zip64 =
                e.size >= format::MAX32 - DEFLATE_ZIP64_MARGIN && e.size < format::MAX32;
            let kind = if wants_deflate && !near_zip64 {
                Kind::Deflate
            } else if e.size <= crc_ahead_max {
                Kind::Stored
            } else {
                Kind::StoredBlocks
            };
            let e = &mut self.entries[i];
            e.kind = kind;
            e.csize = match kind {
                Kind::Dir | Kind::Deflate => 0,
                Kind::Stored => e.size,
                Kind::StoredBlocks => format::stored_blocks_size(e.size),
            };
            e.zip64 = format::entry_zip64(kind, e.size, e.csize);
        }
        self.sized = self.entries.iter().all(|e| e.kind != Kind::Deflate);
    }

    fn lay_out(&mut self, compress: Compress, level: u32) {
        self.compress = compress;
        self.level = level;
        let mut offset = 0u64;
        let mut cd = 0u64;
        let mut hash = Sha256::new();
        hash.update(b"sendfiled-zip-1\0");
        hash.update([compress as u8, level as u8]);
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            self.last_modified = self.last_modified.max(e.mtime);
            hash.update(self.name(e));
            hash.update([0, e.kind as u8]);
            hash.update(e.size.to_le_bytes());
            hash.update(e.key.mtime_ns.to_le_bytes());
            hash.update(e.mode.to_le_bytes());
            let span = self.entry_span(i);
            let e = &mut self.entries[i];
            e.offset = offset;
            let name_len = e.name.1 as usize;
            cd += format::central_len(name_len, e.size, e.csize, offset);
            offset += span;
        }
        self.cd_offset = offset;
        self.cd_size = cd;
        self.total_len = offset + cd + format::end_len(self.entries.len() as u64, cd, offset);
        let digest = hash.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.etag = format!("\"z{hex}\"");
    }

    /// The ETag of this archive from its members' contents rather than their file times: it
    /// covers every input of the archive's bytes (names, kinds, sizes, modes, the times to the
    /// second as the archive records them, each file's SHA-256 from `sha256_of`), so it is
    /// equal on every node that would send the same bytes. `None` if a member's digest is
    /// unknown.
    pub fn content_etag(
        &self,
        mut sha256_of: impl FnMut(&Entry) -> Option<[u8; 32]>,
    ) -> Option<String> {
        let mut hash = Sha256::new();
        hash.update(b"sendfiled-zip-content-1\0");
        hash.update([self.compress as u8, self.level as u8]);
        for e in &self.entries {
            hash.update(self.name(e));
            hash.update([0, e.kind as u8]);
            hash.update(e.size.to_le_bytes());
            hash.update(e.mtime.to_le_bytes());
            hash.update(e.mode.to_le_bytes());
            if e.kind != Kind::Dir {
                hash.update(sha256_of(e)?);
            }
        }
        let digest = hash.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("\"zc{hex}\""))
    }

    /// Index of the entry whose local header, data or descriptor holds archive byte `at`
    /// (sized archives; `at` below `cd_offset`).
    pub fn entry_at(&self, at: u64) -> usize {
        self.entries
            .partition_point(|e| e.offset <= at)
            .saturating_sub(1)
    }
}
