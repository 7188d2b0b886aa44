//! Per-worker open-file cache (nginx's open_file_cache): the fd, mapping, metadata and validator
//! headers of recently served files, so a hot file costs no open, stat, mmap or munmap per request.
//!
//! One cache per worker thread, so no locks. Bounded by entry count and by mapped bytes (address
//! space and vm.max_map_count), evicted with the CLOCK algorithm (an approximation of LRU that
//! needs no list reordering on hits). An entry older than `valid` is revalidated: the path is
//! opened again and compared by (dev, ino, size, mtime, ctime), so a file replaced by an atomic
//! rename is picked up within `valid`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{file_key, OpenFile};

struct Slot {
    key: Box<str>,
    entry: Arc<OpenFile>,
    checked: Instant,
    referenced: bool,
}

/// The cache. `get` and `insert` are the whole interface.
pub struct FileCache {
    index: HashMap<Box<str>, usize>,
    slots: Vec<Slot>,
    hand: usize,
    mapped: u64,
    max_entries: usize,
    max_mapped: u64,
    valid: Duration,
    hits: u64,
    misses: u64,
}

/// The outcome of a lookup.
pub enum Cached {
    /// Fresh: serve it.
    Hit(Arc<OpenFile>),
    /// Present but older than `valid`: the caller reopens and calls [`FileCache::revalidate`].
    Stale(Arc<OpenFile>),
    /// Not cached.
    Miss,
}

impl FileCache {
    /// An empty cache with the given bounds. `max_entries == 0` disables caching.
    pub fn new(max_entries: usize, max_mapped: u64, valid: Duration) -> Self {
        FileCache {
            index: HashMap::with_capacity(max_entries.min(4096)),
            slots: Vec::new(),
            hand: 0,
            mapped: 0,
            max_entries,
            max_mapped,
            valid,
            hits: 0,
            misses: 0,
        }
    }

    /// Look `path` up at time `now`.
    pub fn get(&mut self, path: &str, now: Instant) -> Cached {
        let Some(&i) = self.index.get(path) else {
            self.misses += 1;
            return Cached::Miss;
        };
        let slot = &mut self.slots[i];
        slot.referenced = true;
        if now.duration_since(slot.checked) <= self.valid {
            self.hits += 1;
            Cached::Hit(slot.entry.clone())
        } else {
            self.misses += 1;
            Cached::Stale(slot.entry.clone())
        }
    }

    /// After reopening a stale entry: if the reopened file is the same, keep the cached entry
    /// (and its mapping) and return it; otherwise drop it so the caller inserts the new one.
    pub fn revalidate(
        &mut self,
        path: &str,
        meta: &std::fs::Metadata,
        now: Instant,
    ) -> Option<Arc<OpenFile>> {
        let &i = self.index.get(path)?;
        if self.slots[i].entry.key == file_key(meta) {
            self.slots[i].checked = now;
            return Some(self.slots[i].entry.clone());
        }
        self.remove_slot(i);
        None
    }

    /// Cache `entry` under `path` (replacing any old entry), evicting as needed. Entries bigger
    /// than the whole mapped-bytes budget are not cached.
    pub fn insert(&mut self, path: &str, entry: Arc<OpenFile>, now: Instant) {
        if self.max_entries == 0 {
            return;
        }
        if let Some(&i) = self.index.get(path) {
            self.remove_slot(i);
        }
        let cost = mapped_cost(&entry);
        if cost > self.max_mapped {
            return;
        }
        while self.slots.len() >= self.max_entries || self.mapped + cost > self.max_mapped {
            if !self.evict_one() {
                return;
            }
        }
        self.mapped += cost;
        let key: Box<str> = path.into();
        self.index.insert(key.clone(), self.slots.len());
        self.slots.push(Slot {
            key,
            entry,
            checked: now,
            referenced: false,
        });
    }

    /// Forget `path` (it could not be reopened).
    pub fn remove(&mut self, path: &str) {
        if let Some(&i) = self.index.get(path) {
            self.remove_slot(i);
        }
    }

    /// (hits, misses) since start.
    pub fn counters(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Close up to `n` entries (CLOCK order): descriptors ran out, and cached files hold some.
    pub fn shed(&mut self, n: usize) -> usize {
        let mut closed = 0;
        while closed < n && self.evict_one() {
            closed += 1;
        }
        closed
    }

    /// CLOCK: sweep from the hand, giving referenced slots a second chance.
    fn evict_one(&mut self) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            if self.slots[self.hand].referenced {
                self.slots[self.hand].referenced = false;
                self.hand += 1;
            } else {
                self.remove_slot(self.hand);
                return true;
            }
        }
    }

    fn remove_slot(&mut self, i: usize) {
        let slot = self.slots.swap_remove(i);
        self.index.remove(&slot.key);
        self.mapped -= mapped_cost(&slot.entry);
        if i < self.slots.len() {
            let moved = self.slots[i].key.clone();
            self.index.insert(moved, i);
        }
    }
}

fn mapped_cost(entry: &OpenFile) -> u64 {
    entry.map.as_ref().map_or(0, |m| m.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entry(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Arc<OpenFile> {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let meta = f.metadata().unwrap();
        Arc::new(super::super::describe(f, &meta, name, None))
    }

    #[test]
    fn bounded_by_entries_and_bytes_with_second_chance() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut c = FileCache::new(2, 1 << 20, Duration::from_secs(60));
        c.insert("a", entry(dir.path(), "a", b"aaaa"), now);
        c.insert("b", entry(dir.path(), "b", b"bb"), now);
        assert!(matches!(c.get("a", now), Cached::Hit(_))); // a referenced
        c.insert("c", entry(dir.path(), "c", b"c"), now); // evicts b, not a
        assert!(matches!(c.get("a", now), Cached::Hit(_)));
        assert!(matches!(c.get("b", now), Cached::Miss));
        assert!(matches!(c.get("c", now), Cached::Hit(_)));
        assert_eq!(c.len(), 2);

        let mut small = FileCache::new(10, 5, Duration::from_secs(60));
        small.insert("a", entry(dir.path(), "a2", b"aaaa"), now);
        small.insert("b", entry(dir.path(), "b2", b"bb"), now); // 4 + 2 > 5: a goes
        assert!(matches!(small.get("a", now), Cached::Miss));
        small.insert("big", entry(dir.path(), "big", b"123456"), now); // larger than budget: skipped
        assert!(matches!(small.get("big", now), Cached::Miss));
    }

    #[test]
    fn stale_after_valid_and_revalidated_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut c = FileCache::new(10, 1 << 20, Duration::from_millis(10));
        c.insert("a", entry(dir.path(), "a", b"one"), now);
        let later = now + Duration::from_millis(20);
        assert!(matches!(c.get("a", later), Cached::Stale(_)));
        let same = std::fs::metadata(dir.path().join("a")).unwrap();
        assert!(c.revalidate("a", &same, later).is_some());
        assert!(matches!(c.get("a", later), Cached::Hit(_)));
        // replaced by rename: different inode
        std::fs::write(dir.path().join("a.new"), b"two!").unwrap();
        std::fs::rename(dir.path().join("a.new"), dir.path().join("a")).unwrap();
        let replaced = std::fs::metadata(dir.path().join("a")).unwrap();
        let much_later = later + Duration::from_millis(20);
        assert!(matches!(c.get("a", much_later), Cached::Stale(_)));
        assert!(c.revalidate("a", &replaced, much_later).is_none());
        assert!(matches!(c.get("a", much_later), Cached::Miss));
    }
}
