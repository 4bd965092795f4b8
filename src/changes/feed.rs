//! A namespace's changes feed, framed as a normal, longpoll, continuous or eventsource feed,
//! with heartbeats, limits and timeouts, read from the changes index in batches.
//!
//! Invariants: every `seq`/`last_seq` a client sees is a token of the namespace's own history
//! ([`super::positions`]); `last_seq` is the position after the last row sent, or the
//! namespace's end when everything was sent, so resuming from it never skips a change; longpoll
//! really waits, and only for this namespace's changes.

use super::index::{Change, ChangesIndex};
use super::positions::{Position, Since};
use super::select::{self, SelectorFilter};
use super::Changes;
use crate::backend::doc_flags;
use crate::body::{self, Body, ChunkSender};
use crate::error::Result;
use crate::namespace::Namespace;
use http::{header, HeaderValue, Method, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// CouchDB's default for `timeout` and for `heartbeat=true`, and the longest wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows read from the index per batch, and documents per backend read for `include_docs`.
const BATCH: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Normal,
    Longpoll,
    Continuous,
    EventSource,
}

/// A parsed `_changes` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    pub feed: Feed,
    pub since: Since,
    pub limit: Option<u64>,
    pub descending: bool,
    pub all_docs_style: bool,
    pub include_docs: bool,
    pub conflicts: bool,
    pub attachments: bool,
    pub att_encoding_info: bool,
    /// Client ids of `filter=_doc_ids`.
    pub doc_ids: Option<Vec<String>>,
    /// `filter=_selector`.
    pub selector: Option<Arc<SelectorFilter>>,
    pub heartbeat: Option<Duration>,
    /// How long a live feed waits without a change; `None` when a heartbeat keeps it open.
    pub timeout: Option<Duration>,
}

/// One change of the namespace, ready for the client but for its `seq`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    /// Where the change is filed; sealed into the row's `seq`.
    pub n: u64,
    /// `{"id", "changes", "deleted"?, "doc"?}` with client ids.
    pub row: Value,
}

/// Changes after some position.
#[derive(Debug, Clone, PartialEq)]
struct Batch {
    rows: Vec<Row>,
    /// The position up to which this batch covers the feed.
    last: u64,
    /// `true` when the index had nothing more at the time.
    caught_up: bool,
}

impl Changes {
    /// Answers `_changes` for `ns`. `expires`: Unix time at which the caller's credential
    /// stops being accepted; live feeds end then.
    pub async fn serve(
        self: &Arc<Self>,
        ns: &Namespace,
        opts: Opts,
        expires: Option<u64>,
    ) -> Result<Response<Body>> {
        self.ready_for(ns).await?;
        let partition = ns.partition().to_owned();
        let (after, start) = {
            let since = opts.since;
            self.with_index(move |ix| {
                Ok(match since {
                    Since::Zero => (0, 0),
                    Since::Now => {
                        let n = ix.position(&partition)?.n;
                        (n, n)
                    }
                    Since::At(p) => {
                        let n = ix.resume_after(&partition, &p)?;
                        (n, n)
                    }
                })
            })
            .await?
        };
        // The first batch is read before answering, so a failing backend gets a proper status.
        let first = self
            .batch(ns, &opts, after, read_size(&opts, 0), None)
            .await?;
        let (tx, body) = body::channel(8);
        let content_type = if opts.feed == Feed::EventSource {
            "text/event-stream"
        } else {
            "application/json"
        };
        // A credential that expires further out than a clock can count never ends the feed.
        let ends_at = expires.and_then(|exp| {
            let left = exp.saturating_sub(jsonwebtoken::get_current_timestamp());
            Instant::now().checked_add(Duration::from_secs(left))
        });
        let changes = Arc::clone(self);
        let ns = ns.clone();
        tokio::spawn(async move {
            let mut driver = Driver {
                changes: &changes,
                ns: &ns,
                opts: &opts,
                tx,
                sent: 0,
                start,
                since: after,
                ends_at,
            };
            if let Err(e) = driver.run(first).await {
                tracing::warn!(error = %e, "_changes feed ended early");
            }
        });
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if content_type == "text/event-stream" {
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        Ok(r)
    }

    fn seal(&self, ns: &Namespace, n: u64) -> String {
        self.codec.seal(
            ns.partition(),
            Position {
                index: self.index.id(),
                n,
            },
        )
    }

    /// At most `max` changes after `after`; with `wait`, waits that long for one when there
    /// are none yet.
    async fn batch(
        &self,
        ns: &Namespace,
        opts: &Opts,
        after: u64,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Batch> {
        let query = || {
            let (p, descending, ids) = (
                ns.partition().to_owned(),
                opts.descending,
                opts.doc_ids.clone(),
            );
            self.with_index(move |ix: &ChangesIndex| {
                ix.query(&p, after, max, descending, ids.as_deref())
            })
        };
        // Register for wake-ups before looking, so a write in between is not missed.
        let notify = self.index.notifier(ns.partition());
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut q = query().await?;
        if q.rows.is_empty() {
            if let Some(w) = wait {
                let _ = tokio::time::timeout(w, notified).await;
                q = query().await?;
            }
        }
        let caught_up = opts.descending || q.rows.len() < max;
        let last = match q.rows.last() {
            Some(r) if !caught_up => r.n,
            _ => q.last,
        };
        let mut rows: Vec<Row> = q
            .rows
            .into_iter()
            .map(|c| client_row(c, opts.all_docs_style))
            .collect();
        if let Some(f) = &opts.selector {
            rows = select::filter(&self.backend, ns, f, rows).await?;
        }
        if opts.include_docs {
            for chunk in rows.chunks_mut(BATCH) {
                self.add_docs(ns, opts, chunk).await?;
            }
            if let Some(fields) = opts.selector.as_ref().and_then(|f| f.fields.as_ref()) {
                for r in &mut rows {
                    r.row["doc"] = fields.extract(&r.row["doc"]);
                }
            }
        }
        Ok(Batch {
            rows,
            last,
            caught_up,
        })
    }

    /// Adds the current documents for `include_docs`, in one backend read.
    async fn add_docs(&self, ns: &Namespace, opts: &Opts, rows: &mut [Row]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                r.row["id"]
                    .as_str()
                    .and_then(|id| ns.encode_doc_id(id).ok())
            })
            .collect();
        let q = doc_flags(
            opts.include_docs,
            opts.conflicts,
            opts.attachments,
            opts.att_encoding_info,
        );
        let url = self
            .backend
            .db_url(&format!("/_all_docs{}", crate::backend::query_string(q)));
        let (_, answer) = self
            .backend
            .json(Method::POST, &url, Some(&json!({ "keys": keys })))
            .await?;
        let found: std::collections::HashMap<String, Value> = answer["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((ns.decode_id(r.get("id")?.as_str()?)?, r.clone())))
            .collect();
        for r in rows {
            let Some(current) = r.row["id"].as_str().and_then(|id| found.get(id)) else {
                continue;
            };
            let rev = current["value"]["rev"].clone();
            let deleted = current["value"]["deleted"] == json!(true);
            let mut doc = if deleted || current["doc"].is_null() {
                json!({"_id": current["id"], "_rev": rev, "_deleted": true})
            } else {
                current["doc"].clone()
            };
            ns.strip_doc(&mut doc)?;
            r.row["doc"] = doc;
        }
        Ok(())
    }

    /// CouchDB's `pending`: the namespace's changes after `after` (before it, descending)
    /// that were not sent.
    async fn pending(&self, ns: &Namespace, after: u64, descending: bool) -> Result<u64> {
        let p = ns.partition().to_owned();
        self.with_index(move |ix| ix.pending(&p, after, descending))
            .await
    }
}

/// Rows to read from the index for a feed that has sent `sent`: no more than `limit` allows,
/// but, with a selector (which may drop most of them), a whole backend read's worth.
fn read_size(opts: &Opts, sent: u64) -> usize {
    let n = batch_size(opts.limit, sent);
    match (&opts.selector, opts.descending) {
        // A descending feed is one batch: the namespace's newest rows.
        (Some(_), true) => BATCH,
        (Some(_), false) => n.max(SELECT_READ),
        (None, _) => n,
    }
}

/// Rows read from the index at least per batch of a `filter=_selector` feed.
const SELECT_READ: usize = 100;

/// Rows to read from the index for a feed that has sent `sent` of `limit`: a feed asked for
/// 100 rows reads 100, not a whole batch.
fn batch_size(limit: Option<u64>, sent: u64) -> usize {
    limit.map_or(BATCH, |l| {
        usize::try_from(l.saturating_sub(sent)).map_or(BATCH, |left| left.clamp(1, BATCH))
    })
}

/// The client's row for an index entry: the winner alone (`main_only`) or every leaf.
fn client_row(c: Change, all_docs_style: bool) -> Row {
    let revs = if all_docs_style {
        &c.revs[..]
    } else {
        &c.revs[..c.revs.len().min(1)]
    };
    let changes: Vec<Value> = revs.iter().map(|r| json!({ "rev": r })).collect();
    let mut row = json!({"id": c.id, "changes": changes});
    if c.deleted {
        row["deleted"] = Value::Bool(true);
    }
    Row { n: c.n, row }
}

/// Frames batches as the requested feed.
struct Driver<'a> {
    changes: &'a Changes,
    ns: &'a Namespace,
    opts: &'a Opts,
    tx: ChunkSender,
    /// Rows sent so far.
    sent: u64,
    /// Where the feed started.
    start: u64,
    /// Position after the last row sent.
    since: u64,
    /// When the credential that opened the feed expires: a live feed ends then.
    ends_at: Option<Instant>,
}

/// Why the driver stopped early.
enum Stop {
    /// The client went away.
    Gone,
    /// `limit` rows were sent.
    Limit,
}

impl Driver<'_> {
    async fn run(&mut self, first: Batch) -> Result<()> {
        let head = match self.opts.feed {
            Feed::Normal | Feed::Longpoll => "{\"results\":[\n",
            Feed::Continuous | Feed::EventSource => "",
        };
        if !head.is_empty() && !self.tx.send(head).await {
            return Ok(());
        }
        // `limit=0` sends no rows (and, as in CouchDB, does not wait).
        let outcome = if self.opts.limit == Some(0) {
            None
        } else {
            self.pump(first).await?
        };
        if matches!(outcome, Some(Stop::Gone)) {
            return Ok(());
        }
        let last_seq = json!(self.changes.seal(self.ns, self.since));
        // CouchDB's `pending`, measured against CouchDB 3.5 (the differential suite):
        // - `_doc_ids`: the changes after `since` that were not sent, whether the filter
        //   would pass them or not;
        // - `_selector`: the changes after the last row sent when `limit` stopped the feed,
        //   else none (the filter read the feed to its end);
        // - no filter: the changes after the last row sent; nothing sent yet of a descending
        //   feed: everything is still older.
        let d = self.opts.descending;
        let pending = if self.opts.selector.is_some() {
            match outcome {
                Some(Stop::Limit) => self.changes.pending(self.ns, self.since, d).await?,
                _ => 0,
            }
        } else if self.opts.doc_ids.is_some() {
            let from = if d { u64::MAX } else { self.start };
            let all = self.changes.pending(self.ns, from, d).await?;
            all.saturating_sub(self.sent)
        } else if d && self.sent == 0 {
            self.changes.pending(self.ns, u64::MAX, true).await?
        } else {
            self.changes.pending(self.ns, self.since, d).await?
        };
        let tail = match self.opts.feed {
            Feed::Normal | Feed::Longpoll => {
                format!("\n],\n\"last_seq\":{last_seq},\"pending\":{pending}}}\n")
            }
            Feed::Continuous => format!("{{\"last_seq\":{last_seq},\"pending\":{pending}}}\n"),
            Feed::EventSource => String::new(),
        };
        if !tail.is_empty() {
            self.tx.send(tail).await;
        }
        Ok(())
    }

    /// Sends rows until the feed is done; `None` when it ended normally.
    async fn pump(&mut self, first: Batch) -> Result<Option<Stop>> {
        // Catch up with everything already there.
        let mut batch = first;
        loop {
            let caught_up = batch.caught_up;
            if let Some(stop) = self.send_batch(batch).await {
                return Ok(Some(stop));
            }
            if caught_up || self.opts.descending {
                break;
            }
            batch = self
                .changes
                .batch(self.ns, self.opts, self.since, self.room(), None)
                .await?;
        }
        if self.opts.feed == Feed::Normal || (self.opts.feed == Feed::Longpoll && self.sent > 0) {
            return Ok(None);
        }
        // Live: wait for changes of this namespace.
        let mut deadline = self.opts.timeout.map(|t| Instant::now() + t);
        let mut heartbeat = self.opts.heartbeat.map(|h| {
            let mut i = tokio::time::interval_at(Instant::now() + h, h);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            let end = match (deadline, self.ends_at) {
                (Some(d), Some(e)) => Some(d.min(e)),
                (d, e) => d.or(e),
            };
            let wait = match end {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    left.min(DEFAULT_TIMEOUT)
                }
                None => DEFAULT_TIMEOUT,
            };
            let batch = {
                let fetch =
                    self.changes
                        .batch(self.ns, self.opts, self.since, self.room(), Some(wait));
                tokio::pin!(fetch);
                loop {
                    tokio::select! {
                        b = &mut fetch => break b?,
                        _ = tick(&mut heartbeat) => {
                            let beat = if self.opts.feed == Feed::EventSource { "event: heartbeat\ndata: \n\n" } else { "\n" };
                            if !self.tx.send(beat).await {
                                return Ok(Some(Stop::Gone));
                            }
                        }
                    }
                }
            };
            let got_rows = !batch.rows.is_empty();
            if let Some(stop) = self.send_batch(batch).await {
                return Ok(Some(stop));
            }
            if got_rows && self.opts.feed == Feed::Longpoll {
                return Ok(None);
            }
            if got_rows {
                // A continuous feed's inactivity timeout restarts with every change.
                deadline = self.opts.timeout.map(|t| Instant::now() + t);
            }
        }
    }

    /// The rows the next batch may hold: no more than `limit` still allows.
    fn room(&self) -> usize {
        read_size(self.opts, self.sent)
    }

    /// Sends a batch's rows, advancing `since`.
    async fn send_batch(&mut self, batch: Batch) -> Option<Stop> {
        let mut chunk = String::new();
        for row in batch.rows {
            let seq = self.changes.seal(self.ns, row.n);
            let mut value = row.row;
            value["seq"] = Value::String(seq.clone());
            self.since = row.n;
            match self.opts.feed {
                Feed::Normal | Feed::Longpoll => {
                    if self.sent > 0 {
                        chunk.push_str(",\n");
                    }
                    chunk.push_str(&value.to_string());
                }
                Feed::Continuous => {
                    chunk.push_str(&value.to_string());
                    chunk.push('\n');
                }
                Feed::EventSource => {
                    chunk.push_str(&format!("data: {value}\nid: {seq}\n\n"));
                }
            }
            self.sent += 1;
            if Some(self.sent) == self.opts.limit {
                return Some(if self.tx.send(chunk).await {
                    Stop::Limit
                } else {
                    Stop::Gone
                });
            }
        }
        if !chunk.is_empty() && !self.tx.send(chunk).await {
            return Some(Stop::Gone);
        }
        // Everything up to the batch's end was sent (`doc_ids` skips the rest): resuming
        // after it loses nothing. A descending feed ends at its oldest row, as CouchDB's does.
        if !self.opts.descending {
            self.since = batch.last;
        }
        None
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_read_no_more_than_the_limit_allows() {
        assert_eq!(batch_size(None, 0), BATCH);
        assert_eq!(batch_size(None, 5000), BATCH);
        assert_eq!(batch_size(Some(100), 0), 100);
        assert_eq!(batch_size(Some(100), 60), 40);
        assert_eq!(batch_size(Some(5000), 10), BATCH);
        assert_eq!(batch_size(Some(u64::MAX), 0), BATCH);
        // Never an empty read (a limit already reached stops the feed before asking).
        assert_eq!(batch_size(Some(100), 100), 1);
        assert_eq!(batch_size(Some(0), 0), 1);
    }

    #[test]
    fn rows_show_the_winner_or_every_leaf() {
        let c = Change {
            id: "a".into(),
            revs: vec!["2-w".into(), "2-l".into()],
            deleted: false,
            n: 4,
        };
        assert_eq!(
            client_row(c.clone(), false).row,
            json!({"id": "a", "changes": [{"rev": "2-w"}]})
        );
        assert_eq!(
            client_row(c, true).row["changes"],
            json!([{"rev": "2-w"}, {"rev": "2-l"}])
        );
        let gone = Change {
            id: "b".into(),
            revs: vec![],
            deleted: true,
            n: 5,
        };
        assert_eq!(
            client_row(gone, false).row,
            json!({"id": "b", "changes": [], "deleted": true})
        );
    }
}
