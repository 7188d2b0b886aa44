//! Per-worker open-file cache (nginx's open_file_cache): the fd, mapping, metadata and validator
//! headers of recently served files, so a hot file costs no open, stat, mmap or munmap per request.
//!
//! One cache per worker thread, so no locks. Bounded by entry count and by mapped bytes (address
//! space and vm.max_map_count), evicted with the CLOCK algorithm (an approximation of LRU that
//! needs no list reordering on hits). An entry older than `valid` is revalidated: the path is
//! opened again and compared by (dev, ino, size, mtime, ctime), so a file replaced by an atomic
//! rename is picked up within `valid`.
//!
//! Files at or under the small-body threshold also get their bytes kept on the entry (see
//! [`super::small`]) on their second request, within a byte budget of their own: the bytes live
//! and die with the entry, so the stat that revalidates the entry revalidates them too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{file_key, OpenFile};

struct Slot {
    key: Box<str>,
    entry: Arc<OpenFile>,
    checked: Instant,
    referenced: bool,
    /// Bytes of the small-body budget this entry's body holds (0: none).
    small: u64,
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
    /// Files of at most this many bytes keep their body in memory (0: none do).
    small_max: u64,
    small_budget: u64,
    small_used: u64,
}

/// The outcome of a lookup.
pub enum Cached {
    /// Fresh: serve it.
    Hit(Arc<OpenFile>),
    /// Present but older than `valid`: the caller reopens and calls [`FileCache::revalidate`].
    Stale,
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
            small_max: 0,
            small_budget: 0,
            small_used: 0,
        }
    }

    /// Keep the bodies of files of at most `max` bytes in memory, `budget` bytes in all.
    pub fn with_small_bodies(mut self, max: u64, budget: u64) -> Self {
        self.small_max = max;
        self.small_budget = budget;
        self
    }

    /// Look `path` up at time `now`.
    pub fn get(&mut self, path: &str, now: Instant) -> Cached {
        let Some(&i) = self.index.get(path) else {
            return Cached::Miss;
        };
        let slot = &mut self.slots[i];
        slot.referenced = true;
        if now.duration_since(slot.checked) <= self.valid {
            if slot.small == 0 && slot.entry.len <= self.small_max {
                let room = self.small_budget - self.small_used;
                self.small_used += keep_small_body(slot, room);
            }
            Cached::Hit(slot.entry.clone())
        } else {
            Cached::Stale
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
            small: 0,
        });
    }

    /// Forget `path` (it could not be reopened).
    pub fn remove(&mut self, path: &str) {
        if let Some(&i) = self.index.get(path) {
            self.remove_slot(i);
        }
    }

    /// Bytes of small bodies held now.
    pub fn small_bytes(&self) -> u64 {
        self.small_used
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.slots.len()
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
        self.small_used -= slot.small;
        if i < self.slots.len() {
            let moved = self.slots[i].key.clone();
            self.index.insert(moved, i);
        }
    }
}

/// Read a hit's small body into its entry if it fits in `room` bytes; the bytes charged.
fn keep_small_body(slot: &mut Slot, room: u64) -> u64 {
    let len = slot.entry.len;
    if len == 0 || len > room || slot.entry.small.get().is_some() {
        return 0;
    }
    let Some(bytes) = super::small::read_whole(&slot.entry) else {
        return 0;
    };
    if slot.entry.small.set(bytes).is_err() {
        return 0;
    }
    slot.small = len;
    len
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
    fn small_bodies_on_the_second_request_within_their_budget() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut c = FileCache::new(10, 1 << 20, Duration::from_secs(60)).with_small_bodies(4, 6);
        for (name, body) in [("a", &b"aaaa"[..]), ("b", b"bbbb"), ("big", b"12345")] {
            c.insert(name, entry(dir.path(), name, body), now);
        }
        let Cached::Hit(a) = c.get("a", now) else {
            panic!("a")
        };
        assert_eq!(a.small.get().map(|b| &b[..]), Some(&b"aaaa"[..]));
        let Cached::Hit(b) = c.get("b", now) else {
            panic!("b")
        };
        assert!(
            b.small.get().is_none(),
            "4 + 4 bytes exceed the budget of 6"
        );
        let Cached::Hit(big) = c.get("big", now) else {
            panic!("big")
        };
        assert!(big.small.get().is_none(), "over the threshold");
        assert_eq!(c.small_bytes(), 4);
        c.remove("a");
        assert_eq!(c.small_bytes(), 0);
        let Cached::Hit(b) = c.get("b", now) else {
            panic!("b")
        };
        assert!(b.small.get().is_some(), "room again once a went");
    }

    #[test]
    fn stale_after_valid_and_revalidated_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let mut c = FileCache::new(10, 1 << 20, Duration::from_millis(10));
        c.insert("a", entry(dir.path(), "a", b"one"), now);
        let later = now + Duration::from_millis(20);
        assert!(matches!(c.get("a", later), Cached::Stale));
        let same = std::fs::metadata(dir.path().join("a")).unwrap();
        assert!(c.revalidate("a", &same, later).is_some());
        assert!(matches!(c.get("a", later), Cached::Hit(_)));
        // replaced by rename: different inode
        std::fs::write(dir.path().join("a.new"), b"two!").unwrap();
        std::fs::rename(dir.path().join("a.new"), dir.path().join("a")).unwrap();
        let replaced = std::fs::metadata(dir.path().join("a")).unwrap();
        let much_later = later + Duration::from_millis(20);
        assert!(matches!(c.get("a", much_later), Cached::Stale));
        assert!(c.revalidate("a", &replaced, much_later).is_none());
        assert!(matches!(c.get("a", much_later), Cached::Miss));
    }
}
