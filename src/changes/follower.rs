//! The one upstream follower of an instance: reads the shared database's `_changes` feed into
//! the [`ChangesIndex`], resumes where it stopped (after a backend restart, with backoff; after
//! a couchgate restart, from the backend sequence the index stored), and gives writers
//! read-your-writes.
//!
//! The feed is read in bounded pages (`limit`), then followed with `feed=longpoll`: one upstream
//! connection, identical behaviour on CouchDB and PouchDB Server, and a natural place to stop
//! and catch up on demand. Read-your-writes: every write acknowledged through this instance
//! marks its namespace with a write number ([`Follower::note_write`]); before answering that
//! namespace's `_changes`, [`Follower::wait_synced`] waits until the follower has read a
//! page that reaches the feed's end and was asked for after the write (a catch-up pass, or the
//! longpoll that woke for the write), so the write is in the index.
//!
//! Winning revisions: every entry lists its leaf revisions with the winner first, so the
//! index answers `style=main_only` without asking the backend. Apache CouchDB lists them so
//! (`couch_doc:to_doc_info_path` sorts leaves by `{not deleted, rev}` descending, and
//! `_changes` keeps that order); PouchDB Server lists them by generation only, so against any
//! other backend the follower asks `_all_docs` for the winner of each document with several
//! leaves, once per page, when it reads the page.

use super::index::ChangesIndex;
use crate::backend::{Backend, ChangesPage};
use crate::error::{Error, Result};
use dashmap::DashMap;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Backend rows read per request.
const PAGE: usize = 1000;
/// Written revisions remembered per namespace until the index is seen to hold them.
const EXPECTED_PER_NAMESPACE: usize = 1000;
/// Namespaces with written revisions remembered.
const EXPECTED_NAMESPACES: usize = 10_000;
/// How long one upstream longpoll waits.
const LONGPOLL: Duration = Duration::from_secs(55);

#[derive(Debug)]
pub struct Follower {
    pub index: Arc<ChangesIndex>,
    backend: Backend,
    kick: Notify,
    writes: AtomicU64,
    last_write: DashMap<String, u64>,
    /// Revisions written through this instance that the index has not been seen to hold yet,
    /// per namespace (the newest [`EXPECTED_PER_NAMESPACE`]).
    expected: DashMap<String, Vec<(String, String)>>,
    synced: watch::Sender<u64>,
    /// Whether the backend lists leaf revisions winner first; learnt from `GET /`.
    winner_first: std::sync::OnceLock<bool>,
}

/// How a backend lists the leaf revisions of a `style=all_docs` change.
pub fn lists_winner_first(welcome: &Value) -> bool {
    welcome["couchdb"] == "Welcome" && welcome["vendor"]["name"] == "The Apache Software Foundation"
}

/// Moves each listed winner to the front of its row's `changes`. `winners` maps backing ids
/// to winning revisions; a winner that is not among a row's leaves (the document changed again
/// since) leaves the row alone: a later row of the feed replaces it.
pub fn put_winners_first(rows: &mut [Value], winners: &std::collections::HashMap<String, String>) {
    for row in rows {
        let Some(winner) = row["id"].as_str().and_then(|id| winners.get(id)) else {
            continue;
        };
        if let Some(changes) = row.get_mut("changes").and_then(Value::as_array_mut) {
            if let Some(i) = changes
                .iter()
                .position(|c| c["rev"].as_str() == Some(winner))
            {
                let w = changes.remove(i);
                changes.insert(0, w);
            }
        }
    }
}

impl Follower {
    /// Starts following the backend into `index`.
    pub fn start(backend: Backend, index: Arc<ChangesIndex>) -> Arc<Follower> {
        let (synced, _) = watch::channel(0);
        let f = Arc::new(Follower {
            index,
            backend,
            kick: Notify::new(),
            writes: AtomicU64::new(0),
            last_write: DashMap::new(),
            expected: DashMap::new(),
            synced,
            winner_first: std::sync::OnceLock::new(),
        });
        tokio::spawn(Arc::clone(&f).follow());
        f
    }

    /// Marks an acknowledged write to a namespace, with the `(id, rev)` pairs it wrote (the
    /// client's ids).
    pub fn note_write(&self, partition: &str, written: &[(String, String)]) {
        let n = self.writes.fetch_add(1, Ordering::AcqRel) + 1;
        self.last_write.insert(partition.to_owned(), n);
        if !written.is_empty() {
            // Bounded: past the cap, what was not confirmed yet is forgotten (those reads then
            // rest on the catch-up pass alone, exact on a single CouchDB node).
            if self.expected.len() >= EXPECTED_NAMESPACES && !self.expected.contains_key(partition)
            {
                self.expected.clear();
            }
            let mut expected = self.expected.entry(partition.to_owned()).or_default();
            expected.extend(written.iter().cloned());
            let over = expected.len().saturating_sub(EXPECTED_PER_NAMESPACE);
            expected.drain(..over);
        }
    }

    /// Whether the index holds every revision written through this instance to `partition`
    /// that it has not seen yet; those it holds are forgotten.
    async fn holds_expected(&self, partition: &str) -> bool {
        let Some(expected) = self.expected.get(partition).map(|e| e.clone()) else {
            return true;
        };
        let index = Arc::clone(&self.index);
        let p = partition.to_owned();
        // The revisions held, by value: writes noted meanwhile stay expected.
        let (held, missing) = tokio::task::spawn_blocking(move || {
            let mut held = std::collections::HashSet::new();
            let mut missing = 0usize;
            for (id, rev) in expected {
                if index.holds(&p, &id, &rev).unwrap_or(false) {
                    held.insert((id, rev));
                } else {
                    missing += 1;
                }
            }
            (held, missing)
        })
        .await
        .unwrap_or((std::collections::HashSet::new(), 1));
        if let Some(mut e) = self.expected.get_mut(partition) {
            e.retain(|w| !held.contains(w));
        }
        self.expected.remove_if(partition, |_, e| e.is_empty());
        missing == 0
    }

    /// Waits until every write acknowledged through this instance to `partition` is indexed;
    /// `false` when the index is not ready or that takes longer than `timeout`.
    ///
    /// Two conditions: the follower has read to the feed's end from a request sent after the
    /// write (a catch-up pass, or a longpoll whose answer is a last page), and the index
    /// holds each revision written. On one CouchDB node the first implies the second; on
    /// a cluster a write is acknowledged once `w` copies have it, and the feed may be read
    /// from a copy that does not have it yet, so the follower is asked again until it does.
    pub async fn wait_synced(&self, partition: &str, timeout: Duration) -> bool {
        if !self.index.is_ready() {
            return false;
        }
        let Some(need) = self.last_write.get(partition).map(|v| *v) else {
            return true;
        };
        let mut rx = self.synced.subscribe();
        if *rx.borrow() >= need && self.holds_expected(partition).await {
            return true;
        }
        let synced = tokio::time::timeout(timeout, async {
            loop {
                // Ask for a pass, and wait for the next one to finish.
                rx.borrow_and_update();
                self.kick.notify_one();
                if rx.changed().await.is_err() {
                    return false;
                }
                if *rx.borrow() >= need && self.holds_expected(partition).await {
                    return true;
                }
                // The feed has not shown every write yet (a cluster copy behind): again shortly.
                if *rx.borrow() >= need {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
        .await
        .unwrap_or(false);
        if !synced {
            // What could not be confirmed within the bound is not waited for again: one
            // revision the feed never shows costs one late answer, not every later one.
            self.expected.remove(partition);
        }
        synced
    }

    /// One page of the shared feed after `since`, winners first.
    async fn fetch(&self, since: &Value, longpoll: bool) -> Result<ChangesPage<Value>> {
        // Only the page's `last_seq` is kept: `seq_interval` spares CouchDB encoding a
        // sequence for every row (as its own replicator asks; other backends ignore it).
        let mut q = vec![
            ("style", "all_docs".to_owned()),
            ("seq_interval", PAGE.to_string()),
        ];
        if longpoll {
            q.push(("feed", "longpoll".into()));
            q.push(("timeout", LONGPOLL.as_millis().to_string()));
        }
        let timeout = self.backend.timeout() + if longpoll { LONGPOLL } else { Duration::ZERO };
        let mut page = self
            .backend
            .changes_page(since, PAGE, &q, None, timeout)
            .await?;
        self.name_winners(&mut page.rows).await?;
        Ok(page)
    }

    /// Makes every row list its winning revision first (see the module doc).
    async fn name_winners(&self, rows: &mut [Value]) -> Result<()> {
        let winner_first = match self.winner_first.get() {
            Some(w) => *w,
            None => {
                let (_, welcome) = self
                    .backend
                    .json(http::Method::GET, &self.backend.server_url("/"), None)
                    .await?;
                *self
                    .winner_first
                    .get_or_init(|| lists_winner_first(&welcome))
            }
        };
        if winner_first {
            return Ok(());
        }
        let keys: Vec<&str> = rows
            .iter()
            .filter(|r| r["changes"].as_array().is_some_and(|c| c.len() > 1))
            .filter_map(|r| r["id"].as_str())
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let (_, answer) = self
            .backend
            .json(
                http::Method::POST,
                &self.backend.db_url("/_all_docs"),
                Some(&serde_json::json!({ "keys": keys })),
            )
            .await?;
        let winners = answer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["id"].as_str()?.to_owned(),
                    r["value"]["rev"].as_str()?.to_owned(),
                ))
            })
            .collect();
        put_winners_first(rows, &winners);
        Ok(())
    }

    /// Reads pages until the backend has nothing more.
    async fn catch_up(&self) -> Result<()> {
        loop {
            let since = self.index.backend_seq();
            let page = self.fetch(&since, false).await?;
            let last = page.is_last();
            self.apply(page).await?;
            if last {
                return Ok(());
            }
        }
    }

    async fn follow(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        let started = std::time::Instant::now();
        // The writes acknowledged before the last longpoll was sent, when its answer was the
        // feed's last page and is applied: the index then holds them without another catch-up
        // pass, which would only read an empty page (a write costs the backend one feed read,
        // not two).
        let mut longpoll_covered: Option<u64> = None;
        loop {
            let target = match longpoll_covered.take() {
                Some(target) => target,
                None => {
                    let target = self.writes.load(Ordering::Acquire);
                    if let Err(e) = self.catch_up().await {
                        tracing::warn!(error = %e, retry_in = ?backoff, "changes follower: backend read failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                    target
                }
            };
            backoff = Duration::from_millis(100);
            if !self.index.is_ready() {
                let (namespaces, docs) = self.index.size().unwrap_or_default();
                tracing::info!(namespaces, docs, elapsed = ?started.elapsed(), "changes index ready");
                self.index.set_ready();
            }
            self.synced.send_replace(target);
            // Wait for news, or for a writer who wants the index caught up now. Not every
            // backend ends a longpoll at its timeout, so the wait is bounded here as well.
            let since = self.index.backend_seq();
            let sent = self.writes.load(Ordering::Acquire);
            tokio::select! {
                r = tokio::time::timeout(LONGPOLL + Duration::from_secs(1), self.fetch(&since, true)) => {
                    match r {
                        Ok(Ok(page)) => {
                            let last = page.is_last();
                            match self.apply(page).await {
                                Ok(()) if last => longpoll_covered = Some(sent),
                                Ok(()) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "changes follower: storing a page failed");
                                    tokio::time::sleep(backoff).await;
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "changes follower: longpoll failed");
                            tokio::time::sleep(backoff).await;
                        }
                        Err(_) => {}
                    }
                }
                _ = self.kick.notified() => {}
            }
        }
    }

    /// Applies a page on the blocking pool (it writes to disk).
    async fn apply(&self, page: ChangesPage<Value>) -> Result<()> {
        let index = Arc::clone(&self.index);
        tokio::task::spawn_blocking(move || index.apply_page(&page.rows, &page.last_seq))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winners_move_to_the_front() {
        let mut rows = vec![
            serde_json::json!({"id": "p:a", "changes": [{"rev": "3-a"}, {"rev": "2-b"}]}),
            serde_json::json!({"id": "p:b", "changes": [{"rev": "2-a"}, {"rev": "2-b"}]}),
            serde_json::json!({"id": "p:c", "changes": [{"rev": "1-a"}]}),
        ];
        let winners = [("p:a", "2-b"), ("p:b", "9-z")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        put_winners_first(&mut rows, &winners);
        assert_eq!(rows[0]["changes"][0]["rev"], "2-b");
        assert_eq!(rows[0]["changes"][1]["rev"], "3-a");
        assert_eq!(
            rows[1]["changes"][0]["rev"], "2-a",
            "an unknown winner changes nothing"
        );
        assert!(lists_winner_first(
            &serde_json::json!({"couchdb": "Welcome", "vendor": {"name": "The Apache Software Foundation"}})
        ));
        assert!(!lists_winner_first(
            &serde_json::json!({"express-pouchdb": "Welcome!"})
        ));
    }
}
