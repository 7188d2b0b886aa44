//! The digests the server knows, by file identity (device, inode, size, mtime, ctime), and the
//! background work that fills them in. A request that finds no digest queues its file (bounded
//! queue, each identity once) and goes out at once without `Repr-Digest`: no request ever waits
//! for a digest. One thread takes the queue: it reads the file's extended attributes and, when
//! they hold no fresh digest and the mode allows it, hashes the file by pread at a bounded rate,
//! keeps the result only if the file's identity did not change meanwhile, and (when asked to)
//! writes the attributes where the file system lets it.
//! Writing an attribute changes the file's ctime, so the thread then files the digest under the
//! new identity too: the digest does not become unknown again because we wrote it down.
//! Process-wide, like the archive CRC cache: every worker's open-file cache shares it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{attribute, hash, Digests, Mode, Plan, Raw};
use crate::fs::{file_key, FileKey};
use crate::units::Rate;

/// Files waiting for the digest thread; a request that finds the queue full is not queued (a
/// later one will be).
const QUEUE: usize = 4096;
/// Identities remembered per generation; when one fills, it becomes the old generation and the
/// one before is dropped (recently used digests survive, in at most twice this many entries).
const GENERATION: usize = 1 << 17;
/// Read size while hashing (see `tree::READ_BUF`).
const READ_BUF: usize = 128 * 1024;

/// Counters for /metrics.
#[derive(Default)]
pub struct Counters {
    /// Digests computed by hashing.
    pub computed: AtomicU64,
    /// Digests taken from fresh extended attributes.
    pub from_attributes: AtomicU64,
    pub bytes_hashed: AtomicU64,
    pub cache_hits: AtomicU64,
    pub queued: AtomicU64,
    pub dropped: AtomicU64,
    /// Jobs queued and not yet finished.
    pub queue_length: AtomicU64,
}

/// Per identity: the digests, or `None` when none can be had (precomputed-only without a fresh
/// attribute), so that such a file is not queued again.
type Entry = Option<Arc<Digests>>;

struct Job {
    file: File,
    key: FileKey,
    plan: Arc<Plan>,
}

struct Store {
    known: Mutex<Generations>,
    pending: Mutex<HashSet<FileKey>>,
    jobs: SyncSender<Job>,
    counters: Counters,
}

#[derive(Default)]
struct Generations {
    young: HashMap<FileKey, Entry>,
    old: HashMap<FileKey, Entry>,
}

impl Generations {
    fn get(&mut self, key: &FileKey) -> Option<Entry> {
        if let Some(d) = self.young.get(key) {
            return Some(d.clone());
        }
        let d = self.old.remove(key)?;
        self.insert(*key, d.clone());
        Some(d)
    }

    fn insert(&mut self, key: FileKey, d: Entry) {
        if self.young.len() >= GENERATION {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, d);
    }
}

static STORE: OnceLock<Store> = OnceLock::new();

/// The store, its thread started by the first call.
fn store() -> &'static Store {
    STORE.get_or_init(|| {
        let (jobs, queue) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("sendfiled-digest".into())
            .spawn(move || work_forever(queue));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the digest thread; no digests will be sent");
        }
        Store {
            known: Mutex::default(),
            pending: Mutex::default(),
            jobs,
            counters: Counters::default(),
        }
    })
}

/// The counters, once the store has started.
pub fn counters() -> Option<&'static Counters> {
    STORE.get().map(|s| &s.counters)
}

/// The digests of the file with identity `key`, if known (nothing is queued).
pub fn known(key: FileKey) -> Option<Arc<Digests>> {
    let s = STORE.get()?;
    s.known.lock().ok()?.get(&key).flatten()
}

/// The digests of the file with identity `key` if known; otherwise queues `file` for the
/// digest thread (once per identity) and returns `None` at once.
pub fn lookup(file: &File, key: FileKey, plan: &Arc<Plan>) -> Option<Arc<Digests>> {
    let s = store();
    if let Some(entry) = s.known.lock().ok()?.get(&key) {
        s.counters
            .cache_hits
            .fetch_add(u64::from(entry.is_some()), Relaxed);
        return entry;
    }
    let mut pending = s.pending.lock().ok()?;
    if pending.contains(&key) {
        return None;
    }
    let job = Job {
        file: file.try_clone().ok()?,
        key,
        plan: plan.clone(),
    };
    match s.jobs.try_send(job) {
        Ok(()) => {
            pending.insert(key);
            s.counters.queued.fetch_add(1, Relaxed);
            s.counters.queue_length.fetch_add(1, Relaxed);
        }
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            s.counters.dropped.fetch_add(1, Relaxed);
        }
    }
    None
}

/// The digest thread: one file at a time.
fn work_forever(queue: Receiver<Job>) {
    let mut buf = vec![0u8; READ_BUF];
    let mut pace = Pace::new(Rate::new(1).expect("1 is not 0"));
    let mut no_attributes = NoAttributes::default();
    for job in queue {
        // Jobs come only through the store, so it is set by now.
        let Some(s) = STORE.get() else { continue };
        pace.rate = job.plan.read_rate;
        let entry = find(&job, &mut buf, &mut pace, &mut no_attributes, s);
        if let Some(entry) = entry {
            if let Ok(mut known) = s.known.lock() {
                known.insert(job.key, entry);
            }
        }
        if let Ok(mut pending) = s.pending.lock() {
            pending.remove(&job.key);
        }
        s.counters.queue_length.fetch_sub(1, Relaxed);
    }
}

/// The entry for one job: from fresh attributes, else (in background mode) by hashing; `None`
/// when nothing should be remembered (a read failed, or the file changed while it was read).
fn find(
    job: &Job,
    buf: &mut [u8],
    pace: &mut Pace,
    no_attributes: &mut NoAttributes,
    s: &Store,
) -> Option<Entry> {
    let algorithms = &job.plan.algorithms;
    if !no_attributes.reading(job.key.dev) {
        match attribute::read_all(&job.file, &job.key, algorithms) {
            Ok(Some(raw)) => {
                s.counters.from_attributes.fetch_add(1, Relaxed);
                return Some(Some(Arc::new(Digests::new(raw))));
            }
            Ok(None) => {}
            Err(e) => no_attributes.note(job.key.dev, &e, false),
        }
    }
    if job.plan.mode == Mode::PrecomputedOnly {
        return Some(None);
    }
    let raw = hash_paced(job, buf, pace, s)?;
    s.counters.computed.fetch_add(1, Relaxed);
    if job.plan.write_attributes && !no_attributes.writing(job.key.dev) {
        let digests = Arc::new(Digests::new(raw));
        match attribute::write_all(&job.file, &job.key, &digests.raw) {
            Ok(()) => file_under_new_ctime(job, &digests, s),
            Err(e) => no_attributes.note(job.key.dev, &e, true),
        }
        return Some(Some(digests));
    }
    Some(Some(Arc::new(Digests::new(raw))))
}

/// After our own attribute write: the same digest under the identity with the new ctime, if
/// nothing else changed.
fn file_under_new_ctime(job: &Job, digests: &Arc<Digests>, s: &Store) {
    let Ok(meta) = job.file.metadata() else {
        return;
    };
    let now = file_key(&meta);
    let same_but_ctime = FileKey {
        ctime_ns: job.key.ctime_ns,
        ..now
    } == job.key;
    if same_but_ctime {
        if let Ok(mut known) = s.known.lock() {
            known.insert(now, Some(digests.clone()));
        }
    }
}

/// Hashes the job's file at the plan's rate; `None` if it failed or the file changed meanwhile.
fn hash_paced(job: &Job, buf: &mut [u8], pace: &mut Pace, s: &Store) -> Option<Raw> {
    let took = |n| {
        s.counters.bytes_hashed.fetch_add(n, Relaxed);
        pace.took(n);
    };
    let raw = match hash::file(&job.file, job.key.size, &job.plan.algorithms, buf, took) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hash a file for its digest");
            return None;
        }
    };
    let unchanged = job.file.metadata().is_ok_and(|m| file_key(&m) == job.key);
    if !unchanged {
        tracing::debug!("file changed while it was hashed; digest not kept");
        return None;
    }
    Some(raw)
}

/// Devices whose file system keeps no attributes (nothing to read or write there), and devices
/// where we may not write them (a read-only root still has the attributes a deploy wrote); each
/// is logged once and not tried again.
#[derive(Default)]
struct NoAttributes {
    read: HashSet<u64>,
    write: HashSet<u64>,
}

impl NoAttributes {
    fn reading(&self, dev: u64) -> bool {
        self.read.contains(&dev)
    }

    fn writing(&self, dev: u64) -> bool {
        self.write.contains(&dev)
    }

    fn note(&mut self, dev: u64, e: &std::io::Error, writing: bool) {
        if !attribute::unsupported(e) {
            tracing::debug!(error = %e, "cannot use a file's digest attributes");
            return;
        }
        if !writing || e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            self.read.insert(dev);
        }
        if self.write.insert(dev) {
            tracing::warn!(
                error = %e,
                device = dev,
                "cannot keep digests in extended attributes here; they are kept in memory only"
            );
        }
    }
}

/// Keeps reading at or below a rate: after each read, sleeps until the bytes so far fit it.
struct Pace {
    rate: Rate,
    since: Instant,
    bytes: u64,
}

impl Pace {
    fn new(rate: Rate) -> Pace {
        Pace {
            rate,
            since: Instant::now(),
            bytes: 0,
        }
    }

    fn took(&mut self, n: u64) {
        // Idle time banks no credit: after a pause the count starts again.
        let now = Instant::now();
        if now.duration_since(self.since) > self.due() + Duration::from_secs(1) {
            self.since = now;
            self.bytes = 0;
        }
        self.bytes += n;
        let due = self.due();
        let elapsed = now.duration_since(self.since);
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }

    /// How long the bytes so far take at the rate.
    fn due(&self) -> Duration {
        self.rate.time_for(self.bytes)
    }
}
