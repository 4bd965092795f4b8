//! The per-namespace changes index: for every namespace, the latest change of each of its
//! documents, in the order this instance saw them. Synchronous methods only; the follower task
//! ([`crate::changes_follower`]) feeds it, `_changes` handlers read it.
//!
//! # Design and invariants
//! - One upstream follower reads the shared database's feed (`style=all_docs`) page by page and
//!   calls [`ChangesIndex::apply_page`]. Each change that alters a document's leaf revisions or
//!   deleted flag gets the next *ordinal* of this index (a local counter) and replaces the
//!   document's previous entry, so a namespace's log holds one entry per document, ordered by
//!   ordinal: exactly what CouchDB's `_changes` shows.
//! - Backend sequences are never parsed. The index keeps the backend sequence it has read up
//!   to, and *checkpoints*: for the first ordinal of every page, the backend sequence the page
//!   was read from. Replaying the backend feed from the checkpoint at or before an ordinal covers
//!   that ordinal's change, so every row handed out can carry a backend sequence that any other
//!   instance can resume from (see [`crate::seq::Position`]).
//! - Ordinals only mean something to the index that assigned them, which has a random identity
//!   kept across restarts by the snapshot. A token from another index falls back to its backend
//!   sequence: a correct, possibly slower answer, never a skipped change.
//! - A page is applied under the progress lock, and queries read the published ordinal under the
//!   same lock and return only rows at or below it, so `last_seq` always covers what was sent.
//! - Applying the same change twice is harmless: an unchanged entry keeps its ordinal.
//! - Writers of a namespace are woken through that namespace's own `Notify`, so a write by one
//!   user wakes only that user's feeds.

use crate::namespace::META_PARTITION;
use crate::seq::Position;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The latest change of one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub ord: u64,
    /// Leaf revisions as the backend listed them (`style=all_docs`).
    pub revs: Vec<String>,
    pub deleted: bool,
}

/// One namespace's log.
#[derive(Debug, Default)]
struct NsLog {
    by_ord: BTreeMap<u64, Arc<str>>,
    docs: HashMap<Arc<str>, Entry>,
    deleted: u64,
    /// The ids of `docs` that are not deleted, in `_all_docs` order.
    live: LiveIds,
    notify: Arc<Notify>,
}

impl NsLog {
    /// Records a document's latest change; returns the entry it replaces.
    fn put(&mut self, key: Arc<str>, entry: Entry) -> Option<Entry> {
        if entry.deleted {
            self.deleted += 1;
            self.live.remove(&key);
        } else {
            self.live.insert(Arc::clone(&key));
        }
        self.by_ord.insert(entry.ord, Arc::clone(&key));
        let old = self.docs.insert(key, entry)?;
        if old.deleted {
            self.deleted -= 1;
        }
        Some(old)
    }
}

/// Ids per run of [`LiveIds`].
const RUN: usize = 512;

/// A set of ids in code point order (CouchDB's `_all_docs` order) that counts the ids before
/// any key: sorted runs of at most `2 * RUN` ids (two neighbours together hold more than
/// `RUN`), so an insert or removal moves at most `2 * RUN` ids, and a count is two binary
/// searches and a sum over fewer than `2 * n / RUN` run lengths.
#[derive(Debug, Default)]
struct LiveIds {
    runs: Vec<Vec<Arc<str>>>,
}

impl LiveIds {
    /// The run `id` belongs in: the first whose last id is not below it (or the last run).
    fn run_of(&self, id: &str) -> usize {
        let i = self
            .runs
            .partition_point(|r| r.last().is_some_and(|l| &**l < id));
        i.min(self.runs.len().saturating_sub(1))
    }

    fn insert(&mut self, id: Arc<str>) {
        if self.runs.is_empty() {
            self.runs.push(vec![id]);
            return;
        }
        let i = self.run_of(&id);
        let run = &mut self.runs[i];
        if let Err(at) = run.binary_search_by(|x| (**x).cmp(&*id)) {
            run.insert(at, id);
            if run.len() > 2 * RUN {
                let upper = run.split_off(RUN);
                self.runs.insert(i + 1, upper);
            }
        }
    }

    fn remove(&mut self, id: &str) {
        let i = self.run_of(id);
        let Some(run) = self.runs.get_mut(i) else {
            return;
        };
        let Ok(at) = run.binary_search_by(|x| (**x).cmp(id)) else {
            return;
        };
        run.remove(at);
        let len = run.len();
        if len == 0 {
            self.runs.remove(i);
        } else if self
            .runs
            .get(i + 1)
            .is_some_and(|next| len + next.len() <= RUN)
        {
            let next = self.runs.remove(i + 1);
            self.runs[i].extend(next);
        }
    }

    /// How many ids sort before `key`.
    fn below(&self, key: &str) -> u64 {
        let i = self
            .runs
            .partition_point(|r| r.last().is_some_and(|l| &**l < key));
        let before: usize = self.runs[..i].iter().map(Vec::len).sum();
        let within = self
            .runs
            .get(i)
            .map_or(0, |r| r.partition_point(|x| &**x < key));
        (before + within) as u64
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// Highest ordinal assigned and published.
    ord: u64,
    /// Backend sequence the index has read up to.
    backend: Value,
    /// First ordinal of a page -> backend sequence the page was read from.
    checkpoints: BTreeMap<u64, Value>,
}

/// One change as the client sees it, before enrichment and sealing.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedChange {
    pub id: String,
    pub entry: Entry,
    pub pos: Position,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub rows: Vec<IndexedChange>,
    /// The index position the answer covers (for `last_seq`).
    pub last: Position,
}

#[derive(Debug)]
pub struct ChangesIndex {
    id: String,
    namespaces: DashMap<String, NsLog>,
    progress: Mutex<Progress>,
    ready: AtomicBool,
}

/// Splits a backing id into (partition, client id) for user documents.
fn split_id(id: &str) -> Option<(&str, &str)> {
    let (partition, rest) = id.split_once(':')?;
    if partition == META_PARTITION || partition.starts_with('_') || rest.is_empty() {
        return None;
    }
    Some((partition, rest))
}

impl ChangesIndex {
    /// An empty index with a fresh identity.
    pub fn new() -> ChangesIndex {
        let id = crate::handlers::db::new_uuid();
        ChangesIndex {
            id: id[..12].to_owned(),
            namespaces: DashMap::new(),
            progress: Mutex::new(Progress {
                backend: Value::from(0),
                ..Progress::default()
            }),
            ready: AtomicBool::new(false),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A panic while holding the lock cannot leave torn state that matters more than
        // stopping the index would, so a poisoned lock is used as is.
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the index has caught up with the backend once since start.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The backend sequence to continue following from.
    pub fn backend_seq(&self) -> Value {
        self.progress().backend.clone()
    }

    /// The current end of the index.
    pub fn position(&self) -> Position {
        let p = self.progress();
        Position {
            backend: p.backend.clone(),
            index: Some((self.id.clone(), p.ord)),
        }
    }

    /// The ordinal of a position issued by this index, if it is one.
    pub fn ordinal_of(&self, pos: &Position) -> Option<u64> {
        let (id, ord) = pos.index.as_ref()?;
        (id == &self.id && *ord <= self.progress().ord).then_some(*ord)
    }

    /// Applies one page of the backend feed read with `since`, ending at `last_seq`.
    /// Returns how many entries changed.
    pub fn apply_page(&self, since: &Value, rows: &[Value], last_seq: &Value) -> usize {
        let mut touched: Vec<Arc<Notify>> = Vec::new();
        let mut changed = 0;
        {
            let mut p = self.progress();
            let first = p.ord + 1;
            for row in rows {
                let Some((partition, id)) =
                    row.get("id").and_then(Value::as_str).and_then(split_id)
                else {
                    continue;
                };
                let revs: Vec<String> = row
                    .get("changes")
                    .and_then(Value::as_array)
                    .map(|c| {
                        c.iter()
                            .filter_map(|r| r.get("rev").and_then(Value::as_str))
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let deleted = row.get("deleted").and_then(Value::as_bool) == Some(true);
                let mut log = self.namespaces.entry(partition.to_owned()).or_default();
                if let Some(old) = log.docs.get(id) {
                    if old.revs == revs && old.deleted == deleted {
                        continue;
                    }
                }
                p.ord += 1;
                let ord = p.ord;
                let entry = Entry { ord, revs, deleted };
                if let Some(old) = log.put(Arc::from(id), entry) {
                    log.by_ord.remove(&old.ord);
                }
                touched.push(Arc::clone(&log.notify));
                changed += 1;
            }
            if p.ord >= first {
                p.checkpoints.insert(first, since.clone());
            }
            p.backend = last_seq.clone();
        }
        for n in touched {
            n.notify_waiters();
        }
        changed
    }

    /// The notifier of a namespace; created on first use.
    pub fn notifier(&self, partition: &str) -> Arc<Notify> {
        Arc::clone(
            &self
                .namespaces
                .entry(partition.to_owned())
                .or_default()
                .notify,
        )
    }

    fn checkpoint(p: &Progress, ord: u64) -> Value {
        p.checkpoints
            .range(..=ord)
            .next_back()
            .map_or(Value::from(0), |(_, v)| v.clone())
    }

    /// Changes of a namespace after ordinal `after`, oldest first (or newest first when
    /// `descending`), at most `limit`, optionally only for `doc_ids` (client ids).
    pub fn query(
        &self,
        partition: &str,
        after: u64,
        limit: usize,
        descending: bool,
        doc_ids: Option<&[String]>,
    ) -> Query {
        let p = self.progress();
        let top = p.ord;
        let last = Position {
            backend: p.backend.clone(),
            index: Some((self.id.clone(), top)),
        };
        let mut found: Vec<(u64, String, Entry)> = Vec::new();
        if let Some(log) = self.namespaces.get(partition) {
            match doc_ids {
                Some(ids) => {
                    for id in ids {
                        if let Some(e) = log.docs.get(id.as_str()) {
                            if (descending || e.ord > after) && e.ord <= top {
                                found.push((e.ord, id.clone(), e.clone()));
                            }
                        }
                    }
                    found.sort_by_key(|(ord, _, _)| *ord);
                    found.dedup_by_key(|(ord, _, _)| *ord);
                    if descending {
                        found.reverse();
                    }
                    found.truncate(limit);
                }
                None => {
                    let range: Box<dyn Iterator<Item = (&u64, &Arc<str>)>> = if descending {
                        Box::new(log.by_ord.range(..=top).rev())
                    } else if after < top {
                        Box::new(log.by_ord.range(after + 1..=top))
                    } else {
                        // `range` panics on an empty interval written backwards.
                        Box::new(std::iter::empty())
                    };
                    for (ord, id) in range.take(limit) {
                        if let Some(e) = log.docs.get(id) {
                            found.push((*ord, id.to_string(), e.clone()));
                        }
                    }
                }
            }
        }
        let rows = found
            .into_iter()
            .map(|(ord, id, entry)| IndexedChange {
                pos: Position {
                    backend: Self::checkpoint(&p, ord),
                    index: Some((self.id.clone(), ord)),
                },
                id,
                entry,
            })
            .collect();
        Query { rows, last }
    }

    /// How many of a namespace's changes lie after ordinal `after` (before it, when
    /// `descending`): CouchDB's `pending`.
    pub fn pending(&self, partition: &str, after: u64, descending: bool) -> u64 {
        let top = self.progress().ord;
        let Some(log) = self.namespaces.get(partition) else {
            return 0;
        };
        let n = if descending {
            log.by_ord.range(..after.min(top)).count()
        } else if after < top {
            log.by_ord.range(after + 1..=top).count()
        } else {
            0
        };
        n as u64
    }

    /// Live and deleted document counts of a namespace.
    pub fn counts(&self, partition: &str) -> (u64, u64) {
        self.namespaces.get(partition).map_or((0, 0), |log| {
            let total = log.docs.len() as u64;
            (total - log.deleted, log.deleted)
        })
    }

    /// How many live documents of a namespace have ids sorting before the client id `key`:
    /// CouchDB's `_all_docs` offset of a read starting there.
    pub fn live_below(&self, partition: &str, key: &str) -> u64 {
        self.namespaces
            .get(partition)
            .map_or(0, |log| log.live.below(key))
    }

    /// Forgets a namespace (its virtual database was deleted).
    pub fn forget(&self, partition: &str) {
        if let Some((_, log)) = self.namespaces.remove(partition) {
            log.notify.notify_waiters();
        }
    }

    /// Number of namespaces and of indexed documents.
    pub fn size(&self) -> (usize, usize) {
        let docs = self.namespaces.iter().map(|l| l.docs.len()).sum();
        (self.namespaces.len(), docs)
    }

    /// A consistent snapshot, for persisting.
    pub fn snapshot(&self) -> Snapshot {
        let p = self.progress();
        let namespaces = self
            .namespaces
            .iter()
            .filter(|l| !l.docs.is_empty())
            .map(|l| {
                let docs = l
                    .by_ord
                    .values()
                    .filter_map(|id| Some((id.to_string(), l.docs.get(id)?.clone())))
                    .collect();
                (l.key().clone(), docs)
            })
            .collect();
        Snapshot {
            version: SNAPSHOT_VERSION,
            source: String::new(),
            id: self.id.clone(),
            ord: p.ord,
            backend: p.backend.clone(),
            checkpoints: p.checkpoints.clone(),
            namespaces,
        }
    }

    /// Rebuilds an index from a snapshot.
    pub fn restore(s: Snapshot) -> Option<ChangesIndex> {
        if s.version != SNAPSHOT_VERSION {
            return None;
        }
        let namespaces = DashMap::new();
        for (partition, docs) in s.namespaces {
            let mut log = NsLog::default();
            for (id, entry) in docs {
                log.put(Arc::from(id.as_str()), entry);
            }
            namespaces.insert(partition, log);
        }
        Some(ChangesIndex {
            id: s.id,
            namespaces,
            progress: Mutex::new(Progress {
                ord: s.ord,
                backend: s.backend,
                checkpoints: s.checkpoints,
            }),
            ready: AtomicBool::new(false),
        })
    }
}

impl Default for ChangesIndex {
    fn default() -> Self {
        Self::new()
    }
}

const SNAPSHOT_VERSION: u32 = 1;

/// The persisted form of an index.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    /// The backing database the index was built from (URL without credentials).
    #[serde(default)]
    pub source: String,
    id: String,
    ord: u64,
    backend: Value,
    checkpoints: BTreeMap<u64, Value>,
    namespaces: Vec<(String, Vec<(String, Entry)>)>,
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

    #[test]
    fn keeps_the_latest_change_per_document_in_order() {
        let ix = ChangesIndex::new();
        ix.apply_page(
            &json!(0),
            &[
                row("u.d.e:a", &["1-a"], false),
                row("v.d.e:x", &["1-x"], false),
                row("u.d.e:b", &["1-b"], false),
                row("couchgate:db.u.d", &["1-m"], false),
            ],
            &json!(4),
        );
        ix.apply_page(&json!(4), &[row("u.d.e:a", &["2-a"], true)], &json!(5));
        let q = ix.query("u.d.e", 0, 100, false, None);
        assert_eq!(ids(&q), ["b", "a"]);
        assert!(q.rows[1].entry.deleted);
        assert_eq!(ix.counts("u.d.e"), (1, 1));
        assert_eq!(ix.counts("v.d.e"), (1, 0));
        assert_eq!(ix.size(), (2, 3), "metadata documents are not indexed");
        // Resuming after a row returns only later ones.
        let after_b = ix.ordinal_of(&q.rows[0].pos).unwrap();
        assert_eq!(ids(&ix.query("u.d.e", after_b, 100, false, None)), ["a"]);
        // The last position covers everything.
        let end = ix.ordinal_of(&q.last).unwrap();
        assert!(ix.query("u.d.e", end, 100, false, None).rows.is_empty());
        assert_eq!(q.last.backend, json!(5));
        assert_eq!(ids(&ix.query("u.d.e", 0, 1, true, None)), ["a"]);
        assert_eq!(ids(&ix.query("u.d.e", 0, 1, false, None)), ["b"]);
    }

    #[test]
    fn rows_carry_a_backend_sequence_to_replay_from() {
        let ix = ChangesIndex::new();
        ix.apply_page(
            &json!("s0"),
            &[row("u.d.e:a", &["1-a"], false)],
            &json!("s1"),
        );
        ix.apply_page(
            &json!("s1"),
            &[row("u.d.e:b", &["1-b"], false)],
            &json!("s2"),
        );
        let q = ix.query("u.d.e", 0, 100, false, None);
        assert_eq!(q.rows[0].pos.backend, json!("s0"));
        assert_eq!(q.rows[1].pos.backend, json!("s1"));
    }

    #[test]
    fn reapplying_a_change_is_harmless() {
        let ix = ChangesIndex::new();
        let page = [row("u.d.e:a", &["1-a"], false)];
        ix.apply_page(&json!(0), &page, &json!(1));
        let first = ix.query("u.d.e", 0, 10, false, None);
        assert_eq!(ix.apply_page(&json!(0), &page, &json!(1)), 0);
        assert_eq!(ix.query("u.d.e", 0, 10, false, None).rows, first.rows);
    }

    #[test]
    fn doc_ids_and_foreign_positions() {
        let ix = ChangesIndex::new();
        ix.apply_page(
            &json!(0),
            &[
                row("u.d.e:a", &["1-a"], false),
                row("u.d.e:b", &["1-b", "1-c"], false),
            ],
            &json!(2),
        );
        let q = ix.query("u.d.e", 0, 10, false, Some(&["b".into(), "zz".into()]));
        assert_eq!(ids(&q), ["b"]);
        assert_eq!(q.rows[0].entry.revs, ["1-b", "1-c"]);
        let other = ChangesIndex::new();
        assert_eq!(other.ordinal_of(&q.last), None, "ordinals are per index");
        assert_eq!(ix.ordinal_of(&Position::backend(json!(2))), None);
    }

    #[test]
    fn snapshot_round_trips() {
        let ix = ChangesIndex::new();
        ix.apply_page(&json!(0), &[row("u.d.e:a", &["1-a"], false)], &json!(1));
        ix.apply_page(&json!(1), &[row("u.d.e:b", &["1-b"], true)], &json!(2));
        let text = serde_json::to_string(&ix.snapshot()).unwrap();
        let back = ChangesIndex::restore(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.id(), ix.id());
        assert_eq!(
            back.query("u.d.e", 0, 10, false, None),
            ix.query("u.d.e", 0, 10, false, None)
        );
        assert_eq!(back.counts("u.d.e"), (1, 1));
        assert_eq!(back.backend_seq(), json!(2));
    }

    #[test]
    fn live_ids_count_what_sorts_before_a_key() {
        let mut live = LiveIds::default();
        // Enough ids, inserted out of order, for several runs.
        let ids: Vec<String> = (0..3000)
            .map(|i| format!("d{:05}", (i * 7919) % 3000))
            .collect();
        for id in &ids {
            live.insert(Arc::from(id.as_str()));
        }
        live.insert(Arc::from("d00005"));
        assert!(live.runs.len() > 2);
        assert_eq!(live.below(""), 0);
        assert_eq!(live.below("d00000"), 0);
        assert_eq!(live.below("d00005"), 5);
        assert_eq!(live.below("d00005\u{0}"), 6);
        assert_eq!(live.below("d02999"), 2999);
        assert_eq!(live.below("e"), 3000);
        for i in (0..3000).step_by(2) {
            live.remove(&format!("d{i:05}"));
        }
        live.remove("absent");
        assert_eq!(live.below("d01000"), 500);
        assert_eq!(live.below("e"), 1500);
        assert!(live
            .runs
            .iter()
            .all(|r| !r.is_empty() && r.len() <= 2 * RUN));
        assert!(live.runs.windows(2).all(|w| w[0].last() < w[1].first()));
        for i in (1..3000).step_by(2) {
            live.remove(&format!("d{i:05}"));
        }
        assert_eq!((live.below("e"), live.runs.len()), (0, 0));
    }

    #[test]
    fn offsets_skip_deleted_documents() {
        let ix = ChangesIndex::new();
        ix.apply_page(
            &json!(0),
            &[
                row("u.d.e:a", &["1-a"], false),
                row("u.d.e:b", &["1-b"], false),
                row("u.d.e:c", &["1-c"], false),
                row("v.d.e:a", &["1-a"], false),
            ],
            &json!(4),
        );
        ix.apply_page(&json!(4), &[row("u.d.e:a", &["2-a"], true)], &json!(5));
        assert_eq!(ix.live_below("u.d.e", "c"), 1);
        assert_eq!(ix.live_below("u.d.e", "z"), 2);
        assert_eq!(ix.live_below("w.d.e", "z"), 0);
        ix.apply_page(&json!(5), &[row("u.d.e:a", &["3-a"], false)], &json!(6));
        assert_eq!(ix.live_below("u.d.e", "c"), 2, "undeleted again");
        let back = ChangesIndex::restore(ix.snapshot()).unwrap();
        assert_eq!(back.live_below("u.d.e", "c"), 2);
        assert_eq!(back.counts("u.d.e"), (3, 0));
    }

    #[tokio::test]
    async fn a_write_wakes_only_its_namespace() {
        let ix = Arc::new(ChangesIndex::new());
        let mine = ix.notifier("u.d.e");
        let theirs = ix.notifier("v.d.e");
        let my_wait = mine.notified();
        let their_wait = theirs.notified();
        tokio::pin!(my_wait, their_wait);
        my_wait.as_mut().enable();
        their_wait.as_mut().enable();
        ix.apply_page(&json!(0), &[row("u.d.e:a", &["1-a"], false)], &json!(1));
        assert!(futures_util::poll!(my_wait.as_mut()).is_ready());
        assert!(futures_util::poll!(their_wait.as_mut()).is_pending());
    }
}
