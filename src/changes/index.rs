//! The per-namespace changes index: for every namespace, the latest change of each of its
//! documents, numbered in the namespace's own history, on disk. Synchronous methods only (run
//! them off the async runtime); the follower ([`super::follower`]) feeds it, `_changes`,
//! `GET /{db}` and `_all_docs` read it.
//!
//! # Numbering
//! Each namespace has its own counter `N`. A change that alters a document's leaf revisions or
//! deleted flag raises it by the document's gain in revision generation (at least 1, at most
//! [`MAX_GAIN`]) and is filed under the new `N`, replacing the document's previous entry. So a
//! namespace's log holds one entry per document, ordered by `N`, which is exactly what
//! CouchDB's `_changes` shows, and `N` is the number of edits that made the namespace's
//! documents (the sum of their generations), whichever intermediate changes this instance saw:
//! instances agree on it, and it moves only when the namespace changes.
//!
//! # Why resuming never skips
//! A query after `N` returns every entry filed above `N`. An entry's `N` only grows (a later
//! change of the document is filed higher), and every change the index learns later is filed
//! above everything there is. So whatever a client was told up to `N`, anything it has not seen
//! is above `N`. This holds while the index is still filling after a cold start too: it is then
//! incomplete, never inconsistent.
//!
//! # Storage
//! [redb](https://docs.rs/redb) tables in one file per backing database, so memory is redb's
//! bounded cache, not a function of the number of documents:
//! - `log`: (partition, N) → (id, deleted, leaf revisions, winner first)
//! - `docs`: (partition, id) → (N, deleted, generation)
//! - `namespaces`: partition → (N, live documents, deleted documents)
//! - `buckets`: how many log entries each span of `N` holds, so `pending` costs the buckets
//!   and one span, not the whole log
//! - `meta`: the index identity, the backend sequence read up to, the backing database it was
//!   built from, and whether it was closed cleanly.
//!
//! A page of the shared feed is applied in one write transaction, and the backend sequence it
//! was read up to is written in the same transaction, so the file is always a consistent
//! prefix of the feed. Pages commit without waiting for the disk, and one commit per
//! [`DURABLE_EVERY`] waits for it (and records redb's allocator state, so reopening after a
//! crash does not walk the file): after a crash the index can have lost its last changes, so
//! tokens it issued could be ahead of it. An index that was not closed cleanly therefore takes
//! a new identity on opening: tokens it issued before replay from the start of their
//! namespace, and it re-reads the lost changes from its durable backend sequence.

use super::positions::{IndexId, Position, INDEX_ID_LEN};
use crate::error::{Error, Result};
use crate::namespace::META_PARTITION;
use dashmap::DashMap;
use rand::RngCore;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde_json::Value;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const LOG: TableDefinition<(&str, u64), (&str, bool, Vec<&str>)> = TableDefinition::new("log");
const DOCS: TableDefinition<(&str, &str), (u64, bool, u64)> = TableDefinition::new("docs");
const NAMESPACES: TableDefinition<&str, (u64, u64, u64)> = TableDefinition::new("namespaces");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// (partition, N >> [`BUCKET_BITS`]) → entries of the namespace's log in that span of `N`.
const BUCKETS: TableDefinition<(&str, u64), u64> = TableDefinition::new("buckets");

/// `pending` counts whole spans of `2^BUCKET_BITS` values of `N` from [`BUCKETS`], and entries
/// one by one only within the span it starts in.
const BUCKET_BITS: u32 = 12;

/// The layout of the file; a file of another layout is rebuilt from the backend.
const FORMAT: &[u8] = b"1";

/// The most one change raises `N` by, so that no revision a client writes (`99999999-x` with
/// `new_edits=false`) can run a namespace's counter out.
pub const MAX_GAIN: u64 = 1 << 20;

/// How often at most a page commit waits for the disk.
const DURABLE_EVERY: Duration = Duration::from_secs(1);

/// The latest change of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The client id.
    pub id: String,
    /// Leaf revisions, winner first.
    pub revs: Vec<String>,
    pub deleted: bool,
    /// Where the change is filed.
    pub n: u64,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub rows: Vec<Change>,
    /// The namespace's `N` when the rows were read (for `last_seq`).
    pub last: u64,
}

/// What [`ChangesIndex::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new, empty index.
    New,
    /// The index as it was closed.
    Clean,
    /// An index that was not closed cleanly, with a new identity.
    Recovered,
}

pub struct ChangesIndex {
    db: Database,
    id: IndexId,
    opened: Opened,
    /// The backend sequence the index has read up to (also in `meta`).
    backend: Mutex<Value>,
    last_durable: Mutex<Instant>,
    ready: AtomicBool,
    closed: AtomicBool,
    /// Wakers of the namespaces someone is waiting on.
    notifiers: DashMap<String, Arc<Notify>>,
}

impl std::fmt::Debug for ChangesIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangesIndex")
            .field("id", &self.id)
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("changes index store: {e}"))
}

/// Splits a backing id into (partition, client id) for user documents.
fn split_id(id: &str) -> Option<(&str, &str)> {
    let (partition, rest) = id.split_once(':')?;
    if partition == META_PARTITION || partition.starts_with('_') || rest.is_empty() {
        return None;
    }
    Some((partition, rest))
}

/// A revision's generation (`3` of `3-abc`); 1 for anything unreadable.
fn generation(rev: &str) -> u64 {
    rev.split_once('-')
        .and_then(|(g, _)| g.parse().ok())
        .unwrap_or(1)
}

/// The smallest text above every `(partition, ..)` key.
fn after_partition(partition: &str) -> String {
    format!("{partition}\0")
}

impl ChangesIndex {
    /// Opens (or creates) the index file at `path` for the backing database `source`, with
    /// `cache_bytes` of page cache.
    pub fn open(path: &Path, source: &str, cache_bytes: usize) -> Result<ChangesIndex> {
        let create = || {
            Database::builder()
                .set_cache_size(cache_bytes)
                .create(path)
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => Error::Internal(format!(
                        "{}: the changes index is in use by another couchgate; give each \
                         instance its own --data-dir",
                        path.display()
                    )),
                    e => store_err(format!("{}: {e}", path.display())),
                })
        };
        let mut db = create()?;
        if !has_format(&db)? {
            tracing::warn!(path = %path.display(), "the changes index file has another layout; rebuilding it");
            drop(db);
            std::fs::remove_file(path)
                .map_err(|e| store_err(format!("{}: {e}", path.display())))?;
            db = create()?;
        }
        let mut w = db.begin_write().map_err(store_err)?;
        w.set_quick_repair(true);
        let (id, opened, backend) = {
            let mut meta = w.open_table(META).map_err(store_err)?;
            w.open_table(LOG).map_err(store_err)?;
            w.open_table(DOCS).map_err(store_err)?;
            w.open_table(NAMESPACES).map_err(store_err)?;
            w.open_table(BUCKETS).map_err(store_err)?;
            let get = |k: &str| -> Result<Option<Vec<u8>>> {
                Ok(meta.get(k).map_err(store_err)?.map(|v| v.value().to_vec()))
            };
            if let Some(s) = get("source")? {
                if s != source.as_bytes() {
                    return Err(Error::Internal(format!(
                        "{}: this changes index belongs to another backing database",
                        path.display()
                    )));
                }
            }
            let backend: Value = get("backend")?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_else(|| Value::from(0));
            let stored: Option<IndexId> = get("id")?.and_then(|b| b.try_into().ok());
            let clean = get("state")?.as_deref() == Some(b"clean");
            let (id, opened) = match stored {
                Some(id) if clean => (id, Opened::Clean),
                Some(_) => (random_id(), Opened::Recovered),
                None => (random_id(), Opened::New),
            };
            meta.insert("id", id.as_slice()).map_err(store_err)?;
            meta.insert("format", FORMAT).map_err(store_err)?;
            meta.insert("source", source.as_bytes())
                .map_err(store_err)?;
            meta.insert("state", b"open".as_slice())
                .map_err(store_err)?;
            (id, opened, backend)
        };
        w.commit().map_err(store_err)?;
        Ok(ChangesIndex {
            db,
            id,
            opened,
            ready: AtomicBool::new(opened != Opened::New),
            backend: Mutex::new(backend),
            last_durable: Mutex::new(Instant::now()),
            closed: AtomicBool::new(false),
            notifiers: DashMap::new(),
        })
    }

    /// An index in a temporary file, for tests.
    #[cfg(test)]
    pub fn temporary() -> (ChangesIndex, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ix = ChangesIndex::open(&dir.path().join("index.redb"), "test", 1 << 20).unwrap();
        (ix, dir)
    }

    /// Marks the index closed cleanly (durably); nothing is applied afterwards.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        let mut w = self.db.begin_write().map_err(store_err)?;
        w.set_durability(Durability::Immediate).map_err(store_err)?;
        w.set_quick_repair(true);
        w.open_table(META)
            .map_err(store_err)?
            .insert("state", b"clean".as_slice())
            .map_err(store_err)?;
        w.commit().map_err(store_err)
    }

    pub fn id(&self) -> IndexId {
        self.id
    }

    pub fn opened(&self) -> Opened {
        self.opened
    }

    /// Whether the index may answer: it held data when opened, or has caught up with the
    /// backend once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The backend sequence to continue following from.
    pub fn backend_seq(&self) -> Value {
        lock(&self.backend).clone()
    }

    /// Applies one page of the shared feed (`style=all_docs` rows, winner first) read up to
    /// `last_seq`; answers how many changes were new. Reapplying a change is
    /// harmless: an unchanged document keeps its entry.
    pub fn apply_page(&self, rows: &[Value], last_seq: &Value) -> Result<usize> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(0);
        }
        let mut touched: Vec<String> = Vec::new();
        let mut changed = 0;
        let mut w = self.db.begin_write().map_err(store_err)?;
        let durable = {
            let mut last = lock(&self.last_durable);
            let due = last.elapsed() >= DURABLE_EVERY;
            if due {
                *last = Instant::now();
            }
            due
        };
        if durable {
            // The allocator state goes with durable commits: reopening after a crash is then
            // quick, not a walk of the whole file.
            w.set_quick_repair(true);
        } else {
            w.set_durability(Durability::None).map_err(store_err)?;
        }
        {
            let mut log = w.open_table(LOG).map_err(store_err)?;
            let mut docs = w.open_table(DOCS).map_err(store_err)?;
            let mut spaces = w.open_table(NAMESPACES).map_err(store_err)?;
            let mut buckets = w.open_table(BUCKETS).map_err(store_err)?;
            // A page's changes to a namespace's counters and to its buckets are gathered and
            // written once per page, not once per row.
            let mut counters: HashMap<&str, (u64, u64, u64)> = HashMap::new();
            let mut bucket_counts: HashMap<(&str, u64), i64> = HashMap::new();
            for row in rows {
                let Some((partition, id)) = row["id"].as_str().and_then(split_id) else {
                    continue;
                };
                let revs: Vec<&str> = row["changes"]
                    .as_array()
                    .map(|c| c.iter().filter_map(|r| r["rev"].as_str()).collect())
                    .unwrap_or_default();
                let deleted = row["deleted"].as_bool() == Some(true);
                let old = docs
                    .get((partition, id))
                    .map_err(store_err)?
                    .map(|g| g.value());
                if let Some((old_n, old_deleted, _)) = old {
                    if old_deleted == deleted {
                        let same = log
                            .get((partition, old_n))
                            .map_err(store_err)?
                            .is_some_and(|g| g.value().2 == revs);
                        if same {
                            continue;
                        }
                    }
                }
                let (mut n, mut live, mut dead) = match counters.get(partition) {
                    Some(c) => *c,
                    None => spaces
                        .get(partition)
                        .map_err(store_err)?
                        .map_or((0, 0, 0), |g| g.value()),
                };
                let gen = revs.iter().map(|r| generation(r)).max().unwrap_or(1);
                let old_gen = old.map_or(0, |(_, _, g)| g);
                n = n.saturating_add(gen.saturating_sub(old_gen).clamp(1, MAX_GAIN));
                if let Some((old_n, old_deleted, _)) = old {
                    log.remove((partition, old_n)).map_err(store_err)?;
                    *bucket_counts
                        .entry((partition, old_n >> BUCKET_BITS))
                        .or_default() -= 1;
                    if old_deleted {
                        dead = dead.saturating_sub(1);
                    } else {
                        live = live.saturating_sub(1);
                    }
                }
                if deleted {
                    dead += 1;
                } else {
                    live += 1;
                }
                log.insert((partition, n), (id, deleted, revs))
                    .map_err(store_err)?;
                *bucket_counts
                    .entry((partition, n >> BUCKET_BITS))
                    .or_default() += 1;
                docs.insert((partition, id), (n, deleted, gen))
                    .map_err(store_err)?;
                counters.insert(partition, (n, live, dead));
                if touched.last().map(String::as_str) != Some(partition) {
                    touched.push(partition.to_owned());
                }
                changed += 1;
            }
            for (partition, c) in counters {
                spaces.insert(partition, c).map_err(store_err)?;
            }
            for (key, delta) in bucket_counts {
                add_to_bucket(&mut buckets, key, delta)?;
            }
            let mut meta = w.open_table(META).map_err(store_err)?;
            let seq = serde_json::to_vec(last_seq).map_err(store_err)?;
            meta.insert("backend", seq.as_slice()).map_err(store_err)?;
        }
        w.commit().map_err(store_err)?;
        *lock(&self.backend) = last_seq.clone();
        touched.sort();
        touched.dedup();
        for p in touched {
            self.wake(&p);
        }
        Ok(changed)
    }

    fn wake(&self, partition: &str) {
        if let Some(n) = self.notifiers.get(partition) {
            n.notify_waiters();
        }
        // Nobody waits any more: drop the waker, so they stay as many as the waiters.
        self.notifiers
            .remove_if(partition, |_, n| Arc::strong_count(n) == 1);
    }

    /// The waker of a namespace; hold it while waiting.
    pub fn notifier(&self, partition: &str) -> Arc<Notify> {
        Arc::clone(&self.notifiers.entry(partition.to_owned()).or_default())
    }

    fn read(&self) -> Result<redb::ReadTransaction> {
        self.db.begin_read().map_err(store_err)
    }

    fn namespace(&self, tx: &redb::ReadTransaction, partition: &str) -> Result<(u64, u64, u64)> {
        let spaces = tx.open_table(NAMESPACES).map_err(store_err)?;
        Ok(spaces
            .get(partition)
            .map_err(store_err)?
            .map_or((0, 0, 0), |g| g.value()))
    }

    /// The current end of a namespace.
    pub fn position(&self, partition: &str) -> Result<Position> {
        let (n, _, _) = self.namespace(&self.read()?, partition)?;
        Ok(Position { index: self.id, n })
    }

    /// Where to resume for a client's position: after it when it is this index's and within
    /// the namespace's history, else from the start (replaying never skips a change).
    pub fn resume_after(&self, partition: &str, pos: &Position) -> Result<u64> {
        if pos.index != self.id {
            return Ok(0);
        }
        let (top, _, _) = self.namespace(&self.read()?, partition)?;
        Ok(if pos.n <= top { pos.n } else { 0 })
    }

    /// Changes of a namespace after `after`, oldest first (or newest first when `descending`,
    /// whatever `after`), at most `limit`, optionally only for `doc_ids` (client ids).
    pub fn query(
        &self,
        partition: &str,
        after: u64,
        limit: usize,
        descending: bool,
        doc_ids: Option<&[String]>,
    ) -> Result<Query> {
        let tx = self.read()?;
        let (top, _, _) = self.namespace(&tx, partition)?;
        let log = tx.open_table(LOG).map_err(store_err)?;
        let change = |n: u64, (id, deleted, revs): (&str, bool, Vec<&str>)| Change {
            id: id.to_owned(),
            revs: revs.into_iter().map(String::from).collect(),
            deleted,
            n,
        };
        let mut rows = Vec::new();
        match doc_ids {
            Some(ids) => {
                let docs = tx.open_table(DOCS).map_err(store_err)?;
                let mut ns = Vec::new();
                for id in ids {
                    if let Some(g) = docs.get((partition, id.as_str())).map_err(store_err)? {
                        let (n, _, _) = g.value();
                        if descending || n > after {
                            ns.push(n);
                        }
                    }
                }
                ns.sort_unstable();
                ns.dedup();
                if descending {
                    ns.reverse();
                }
                for n in ns.into_iter().take(limit) {
                    if let Some(g) = log.get((partition, n)).map_err(store_err)? {
                        rows.push(change(n, g.value()));
                    }
                }
            }
            None => {
                let range = log
                    .range((partition, after.saturating_add(1))..=(partition, u64::MAX))
                    .map_err(store_err)?;
                let range: Box<dyn Iterator<Item = _>> = if descending {
                    Box::new(
                        log.range((partition, 0)..=(partition, u64::MAX))
                            .map_err(store_err)?
                            .rev(),
                    )
                } else {
                    Box::new(range)
                };
                for item in range.take(limit) {
                    let (k, v) = item.map_err(store_err)?;
                    rows.push(change(k.value().1, v.value()));
                }
            }
        }
        Ok(Query { rows, last: top })
    }

    /// Where a document's latest change is filed, if the index has it.
    pub fn doc_n(&self, partition: &str, id: &str) -> Result<Option<u64>> {
        let tx = self.read()?;
        let docs = tx.open_table(DOCS).map_err(store_err)?;
        let got = docs.get((partition, id)).map_err(store_err)?;
        Ok(got.map(|g| g.value().0))
    }

    /// Whether the index has seen revision `rev` of a namespace's document `id` (the client's
    /// id): it is one of the leaves listed, or a later generation has replaced it.
    pub fn holds(&self, partition: &str, id: &str, rev: &str) -> Result<bool> {
        let tx = self.read()?;
        let docs = tx.open_table(DOCS).map_err(store_err)?;
        let Some(n) = docs
            .get((partition, id))
            .map_err(store_err)?
            .map(|g| g.value().0)
        else {
            return Ok(false);
        };
        let log = tx.open_table(LOG).map_err(store_err)?;
        let Some(entry) = log.get((partition, n)).map_err(store_err)? else {
            return Ok(false);
        };
        let (_, _, leaves) = entry.value();
        let generation = |r: &str| r.split('-').next().and_then(|g| g.parse::<u64>().ok());
        let wanted = generation(rev).unwrap_or(u64::MAX);
        Ok(leaves
            .iter()
            .any(|l| *l == rev || generation(l).is_some_and(|g| g > wanted)))
    }

    /// How many of a namespace's changes lie after `after` (before it, when `descending`):
    /// CouchDB's `pending`.
    pub fn pending(&self, partition: &str, after: u64, descending: bool) -> Result<u64> {
        let tx = self.read()?;
        let log = tx.open_table(LOG).map_err(store_err)?;
        let buckets = tx.open_table(BUCKETS).map_err(store_err)?;
        let span = after >> BUCKET_BITS;
        let sum = |range: redb::Range<'_, (&'static str, u64), u64>| -> Result<u64> {
            let mut total = 0;
            for item in range {
                total += item.map_err(store_err)?.1.value();
            }
            Ok(total)
        };
        let count = |range: redb::Range<
            '_,
            (&'static str, u64),
            (&'static str, bool, Vec<&'static str>),
        >| { range.count() as u64 };
        Ok(if descending {
            // Whole spans below `after`'s, then its span up to `after`.
            let whole = sum(buckets
                .range((partition, 0)..(partition, span))
                .map_err(store_err)?)?;
            let start = span << BUCKET_BITS;
            whole
                + count(
                    log.range((partition, start)..(partition, after))
                        .map_err(store_err)?,
                )
        } else {
            // `after`'s span above it, then whole spans above.
            let end = (span << BUCKET_BITS) | ((1 << BUCKET_BITS) - 1);
            let part = count(
                log.range((partition, after.saturating_add(1))..=(partition, end))
                    .map_err(store_err)?,
            );
            let whole = match span.checked_add(1) {
                Some(next) => sum(buckets
                    .range((partition, next)..=(partition, u64::MAX))
                    .map_err(store_err)?)?,
                None => 0,
            };
            part + whole
        })
    }

    /// Live and deleted document counts of a namespace.
    pub fn counts(&self, partition: &str) -> Result<(u64, u64)> {
        let (_, live, dead) = self.namespace(&self.read()?, partition)?;
        Ok((live, dead))
    }

    /// How many live documents of a namespace have ids sorting before the client id `key`:
    /// CouchDB's `_all_docs` offset of a read starting there. Costs the ids counted.
    pub fn live_below(&self, partition: &str, key: &str) -> Result<u64> {
        let tx = self.read()?;
        let docs = tx.open_table(DOCS).map_err(store_err)?;
        let mut n = 0;
        for item in docs
            .range((partition, "")..(partition, key))
            .map_err(store_err)?
        {
            let (_, v) = item.map_err(store_err)?;
            if !v.value().1 {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Forgets a namespace (its virtual database was deleted).
    pub fn forget(&self, partition: &str) -> Result<()> {
        let w = self.db.begin_write().map_err(store_err)?;
        {
            let end = after_partition(partition);
            let mut log = w.open_table(LOG).map_err(store_err)?;
            log.retain_in(
                (
                    Bound::Included((partition, 0)),
                    Bound::Excluded((end.as_str(), 0)),
                ),
                |_, _| false,
            )
            .map_err(store_err)?;
            let mut docs = w.open_table(DOCS).map_err(store_err)?;
            docs.retain_in(
                (
                    Bound::Included((partition, "")),
                    Bound::Excluded((end.as_str(), "")),
                ),
                |_, _| false,
            )
            .map_err(store_err)?;
            let mut buckets = w.open_table(BUCKETS).map_err(store_err)?;
            buckets
                .retain_in(
                    (
                        Bound::Included((partition, 0)),
                        Bound::Excluded((end.as_str(), 0)),
                    ),
                    |_, _| false,
                )
                .map_err(store_err)?;
            w.open_table(NAMESPACES)
                .map_err(store_err)?
                .remove(partition)
                .map_err(store_err)?;
        }
        w.commit().map_err(store_err)?;
        self.wake(partition);
        Ok(())
    }

    /// Number of namespaces and of indexed documents.
    pub fn size(&self) -> Result<(u64, u64)> {
        let tx = self.read()?;
        let spaces = tx.open_table(NAMESPACES).map_err(store_err)?.len();
        let docs = tx.open_table(DOCS).map_err(store_err)?.len();
        Ok((spaces.map_err(store_err)?, docs.map_err(store_err)?))
    }
}

/// Adds `delta` log entries to the count of bucket `key`, `(partition, N >> BUCKET_BITS)`.
fn add_to_bucket(
    buckets: &mut redb::Table<'_, (&'static str, u64), u64>,
    key: (&str, u64),
    delta: i64,
) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    let now = buckets
        .get(key)
        .map_err(store_err)?
        .map_or(0, |g| g.value());
    let next = now.saturating_add_signed(delta);
    if next == 0 {
        buckets.remove(key).map_err(store_err)?;
    } else {
        buckets.insert(key, next).map_err(store_err)?;
    }
    Ok(())
}

/// Whether an index file has this build's layout (a new, empty file has).
fn has_format(db: &Database) -> Result<bool> {
    let tx = db.begin_read().map_err(store_err)?;
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(true),
        Err(e) => return Err(store_err(e)),
    };
    let format = meta.get("format").map_err(store_err)?;
    Ok(format.is_some_and(|f| f.value() == FORMAT))
}

fn random_id() -> IndexId {
    let mut id = [0u8; INDEX_ID_LEN];
    rand::thread_rng().fill_bytes(&mut id);
    id
}

/// A lock whose holder panicked is used as is: what it guards is a plain value.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, revs: &[&str], deleted: bool) -> Value {
        let changes: Vec<Value> = revs.iter().map(|r| json!({ "rev": r })).collect();
        let mut r = json!({"id": id, "changes": changes});
        if deleted {
            r["deleted"] = json!(true);
        }
        r
    }

    fn ids(q: &Query) -> Vec<&str> {
        q.rows.iter().map(|r| r.id.as_str()).collect()
    }

    fn apply(ix: &ChangesIndex, rows: &[Value]) -> usize {
        ix.apply_page(rows, &json!(rows.len())).unwrap()
    }

    #[test]
    fn keeps_the_latest_change_per_document_in_order() {
        let (ix, _dir) = ChangesIndex::temporary();
        apply(
            &ix,
            &[
                row("u.d.e:a", &["1-a"], false),
                row("v.d.e:x", &["1-x"], false),
                row("u.d.e:b", &["1-b"], false),
                row("couchgate:db.u.d", &["1-m"], false),
            ],
        );
        apply(&ix, &[row("u.d.e:a", &["2-a"], true)]);
        let q = ix.query("u.d.e", 0, 100, false, None).unwrap();
        assert_eq!(ids(&q), ["b", "a"]);
        assert!(q.rows[1].deleted);
        assert_eq!(q.last, 3, "three edits: a twice, b once");
        assert_eq!(ix.counts("u.d.e").unwrap(), (1, 1));
        assert_eq!(ix.counts("v.d.e").unwrap(), (1, 0));
        assert_eq!(
            ix.size().unwrap(),
            (2, 3),
            "metadata documents are not indexed"
        );
        let after_b = q.rows[0].n;
        assert_eq!(
            ids(&ix.query("u.d.e", after_b, 100, false, None).unwrap()),
            ["a"]
        );
        assert!(ix
            .query("u.d.e", q.last, 100, false, None)
            .unwrap()
            .rows
            .is_empty());
        assert_eq!(ids(&ix.query("u.d.e", 0, 1, true, None).unwrap()), ["a"]);
        assert_eq!(ids(&ix.query("u.d.e", 0, 1, false, None).unwrap()), ["b"]);
        assert_eq!(ix.pending("u.d.e", after_b, false).unwrap(), 1);
        assert_eq!(ix.pending("u.d.e", q.last, true).unwrap(), 1);
    }

    #[test]
    fn n_counts_edits_whichever_changes_were_seen() {
        let (seen_all, _a) = ChangesIndex::temporary();
        apply(&seen_all, &[row("u.d.e:a", &["1-a"], false)]);
        apply(&seen_all, &[row("u.d.e:a", &["2-a"], false)]);
        apply(&seen_all, &[row("u.d.e:a", &["3-a"], false)]);
        let (seen_last, _b) = ChangesIndex::temporary();
        apply(&seen_last, &[row("u.d.e:a", &["3-a"], false)]);
        assert_eq!(seen_all.position("u.d.e").unwrap().n, 3);
        assert_eq!(seen_last.position("u.d.e").unwrap().n, 3);
        // Another namespace's writes leave it alone.
        apply(&seen_all, &[row("v.d.e:z", &["1-z"], false)]);
        assert_eq!(seen_all.position("u.d.e").unwrap().n, 3);
        // A revision far ahead raises N by a bounded step; a new conflict by one.
        apply(&seen_all, &[row("u.d.e:b", &["99999999-b"], false)]);
        assert_eq!(seen_all.position("u.d.e").unwrap().n, 3 + MAX_GAIN);
        apply(&seen_all, &[row("u.d.e:a", &["3-a", "2-c"], false)]);
        assert_eq!(seen_all.position("u.d.e").unwrap().n, 4 + MAX_GAIN);
    }

    #[test]
    fn pending_counts_what_lies_on_either_side_across_buckets() {
        let (ix, _dir) = ChangesIndex::temporary();
        // Generations that spread the entries over many buckets, then updates that move some.
        let mut x: u64 = 7;
        let mut step = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for round in 1..=3u64 {
            let mut rows = Vec::new();
            for d in 0..400 {
                if round > 1 && step() % 3 != 0 {
                    continue;
                }
                let gen = round * 10_000 + step() % 9000;
                rows.push(row(
                    &format!("u.d.e:d{d}"),
                    &[&format!("{gen}-x")],
                    step() % 5 == 0,
                ));
            }
            apply(&ix, &rows);
            apply(&ix, &[row(&format!("v.d.e:o{round}"), &["1-a"], false)]);
        }
        let all: Vec<u64> = ix
            .query("u.d.e", 0, usize::MAX, false, None)
            .unwrap()
            .rows
            .iter()
            .map(|c| c.n)
            .collect();
        assert_eq!(all.len(), 400);
        let top = *all.last().unwrap();
        assert!(top >> BUCKET_BITS > 100, "spread over many buckets");
        let mut afters: Vec<u64> = vec![0, 1, top, top + 1, u64::MAX];
        for &n in all.iter().step_by(7) {
            afters.extend([n - 1, n, n + 1, n & !((1 << BUCKET_BITS) - 1)]);
        }
        for after in afters {
            let above = all.iter().filter(|&&n| n > after).count() as u64;
            let below = all.iter().filter(|&&n| n < after).count() as u64;
            assert_eq!(
                ix.pending("u.d.e", after, false).unwrap(),
                above,
                "after {after}"
            );
            assert_eq!(
                ix.pending("u.d.e", after, true).unwrap(),
                below,
                "before {after}"
            );
        }
        ix.forget("u.d.e").unwrap();
        assert_eq!(ix.pending("u.d.e", 0, false).unwrap(), 0);
        assert_eq!(ix.pending("v.d.e", 0, false).unwrap(), 3);
    }

    #[test]
    fn a_file_of_another_layout_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        let ix = ChangesIndex::open(&path, "src", 1 << 20).unwrap();
        apply(&ix, &[row("u.d.e:a", &["1-a"], false)]);
        let w = ix.db.begin_write().unwrap();
        w.open_table(META)
            .unwrap()
            .insert("format", b"0".as_slice())
            .unwrap();
        w.commit().unwrap();
        drop(ix);
        let ix = ChangesIndex::open(&path, "src", 1 << 20).unwrap();
        assert_eq!(ix.opened(), Opened::New);
        assert_eq!(ix.counts("u.d.e").unwrap(), (0, 0));
    }

    #[test]
    fn reapplying_a_change_is_harmless() {
        let (ix, _dir) = ChangesIndex::temporary();
        let page = [row("u.d.e:a", &["1-a"], false)];
        apply(&ix, &page);
        let first = ix.query("u.d.e", 0, 10, false, None).unwrap();
        assert_eq!(apply(&ix, &page), 0);
        assert_eq!(ix.query("u.d.e", 0, 10, false, None).unwrap(), first);
    }

    #[test]
    fn doc_ids_and_foreign_positions() {
        let (ix, _dir) = ChangesIndex::temporary();
        apply(
            &ix,
            &[
                row("u.d.e:a", &["1-a"], false),
                row("u.d.e:b", &["1-b", "1-c"], false),
            ],
        );
        let q = ix
            .query("u.d.e", 0, 10, false, Some(&["b".into(), "zz".into()]))
            .unwrap();
        assert_eq!(ids(&q), ["b"]);
        assert_eq!(q.rows[0].revs, ["1-b", "1-c"]);
        let mine = ix.position("u.d.e").unwrap();
        assert_eq!(ix.resume_after("u.d.e", &mine).unwrap(), 2);
        let foreign = Position {
            index: *b"someoneX",
            n: 2,
        };
        assert_eq!(ix.resume_after("u.d.e", &foreign).unwrap(), 0);
        let ahead = Position { n: 99, ..mine };
        assert_eq!(ix.resume_after("u.d.e", &ahead).unwrap(), 0);
    }

    #[test]
    fn reopening_keeps_the_identity_only_after_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        let ix = ChangesIndex::open(&path, "src", 1 << 20).unwrap();
        assert_eq!(ix.opened(), Opened::New);
        assert!(!ix.is_ready());
        apply(&ix, &[row("u.d.e:a", &["1-a"], false)]);
        let id = ix.id();
        ix.close().unwrap();
        drop(ix);
        let ix = ChangesIndex::open(&path, "src", 1 << 20).unwrap();
        assert_eq!((ix.opened(), ix.id()), (Opened::Clean, id));
        assert!(ix.is_ready(), "an index with data answers at once");
        assert_eq!(ix.backend_seq(), json!(1));
        assert_eq!(ix.counts("u.d.e").unwrap(), (1, 0));
        drop(ix);
        let ix = ChangesIndex::open(&path, "src", 1 << 20).unwrap();
        assert_eq!(ix.opened(), Opened::Recovered);
        assert_ne!(ix.id(), id, "not closed: tokens it issued replay");
        assert_eq!(ix.counts("u.d.e").unwrap(), (1, 0));
        drop(ix);
        assert!(ChangesIndex::open(&path, "another", 1 << 20).is_err());
    }

    #[test]
    fn offsets_skip_deleted_documents_and_forgetting_clears_a_namespace() {
        let (ix, _dir) = ChangesIndex::temporary();
        apply(
            &ix,
            &[
                row("u.d.e:a", &["1-a"], false),
                row("u.d.e:b", &["1-b"], false),
                row("u.d.e:c", &["1-c"], false),
                row("u.d.e\u{0}x:a", &["1-a"], false),
                row("v.d.e:a", &["1-a"], false),
            ],
        );
        apply(&ix, &[row("u.d.e:a", &["2-a"], true)]);
        assert_eq!(ix.live_below("u.d.e", "c").unwrap(), 1);
        assert_eq!(ix.live_below("u.d.e", "z").unwrap(), 2);
        assert_eq!(ix.live_below("w.d.e", "z").unwrap(), 0);
        apply(&ix, &[row("u.d.e:a", &["3-a"], false)]);
        assert_eq!(ix.live_below("u.d.e", "c").unwrap(), 2, "undeleted again");
        assert_eq!(ix.counts("u.d.e").unwrap(), (3, 0));
        ix.forget("u.d.e").unwrap();
        assert_eq!(ix.counts("u.d.e").unwrap(), (0, 0));
        assert!(ix
            .query("u.d.e", 0, 10, false, None)
            .unwrap()
            .rows
            .is_empty());
        assert_eq!(ix.counts("v.d.e").unwrap(), (1, 0));
        assert_eq!(ix.counts("u.d.e\u{0}x").unwrap(), (1, 0));
    }

    #[tokio::test]
    async fn a_write_wakes_only_its_namespace() {
        let (ix, _dir) = ChangesIndex::temporary();
        let mine = ix.notifier("u.d.e");
        let theirs = ix.notifier("v.d.e");
        let my_wait = mine.notified();
        let their_wait = theirs.notified();
        tokio::pin!(my_wait, their_wait);
        my_wait.as_mut().enable();
        their_wait.as_mut().enable();
        apply(&ix, &[row("u.d.e:a", &["1-a"], false)]);
        assert!(futures_util::poll!(my_wait.as_mut()).is_ready());
        assert!(futures_util::poll!(their_wait.as_mut()).is_pending());
    }
}
