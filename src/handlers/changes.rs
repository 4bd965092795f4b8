//! `GET|POST /{db}/_changes`: the namespace's changes feed, in every feed style.
//!
//! The handler is split in three: [`parse`] turns the request into [`Opts`] (pure), a [`Source`]
//! yields batches of the namespace's changes after a position (the per-namespace
//! [`crate::changes_index`] when it can answer, else [`crate::changes_filter`], the shared
//! database's feed filtered), and the *driver* here frames them as a normal, longpoll,
//! continuous or eventsource feed with heartbeats, limits and timeouts.
//!
//! Invariants: every `seq`/`last_seq` a client sees is a sealed [`Position`] ([`crate::seq`]);
//! `last_seq` is the source's position after the last row sent, so it never goes backwards and
//! resuming from it never skips a change; longpoll really waits.

use super::{bool_of, Query, Req};
use crate::body::{self, Body, ChunkSender};
use crate::changes_filter;
use crate::changes_follower::Follower;
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::proxy::State;
use crate::seq::Position;
use crate::seq::Since;
use http::{header, HeaderValue, Method, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// CouchDB's default for `timeout` and for `heartbeat=true`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

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
    pub heartbeat: Option<Duration>,
    /// How long a live feed waits without a change; `None` when a heartbeat keeps it open.
    pub timeout: Option<Duration>,
}

/// One change of the namespace, ready for the client but for its sealed `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Where the change is; sealed into the row's `seq`.
    pub pos: Position,
    /// `{"id", "changes", "deleted"?, "doc"?}` with client ids.
    pub row: Value,
}

/// Changes after some position.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: Vec<Row>,
    /// The position up to which this batch covers the feed.
    pub last: Position,
    /// `true` when the source had nothing more at the time.
    pub caught_up: bool,
    /// Rows of the shared feed read for this batch (0 for the index).
    pub scanned: u64,
}

impl Batch {
    pub fn empty(at: Position) -> Batch {
        Batch {
            rows: vec![],
            last: at,
            caught_up: true,
            scanned: 0,
        }
    }
}

/// Where a feed's changes come from.
pub enum Source {
    /// The shared database's feed, filtered (cost grows with every user's changes).
    Filter,
    /// This instance's changes index (cost grows with the rows returned).
    Index(Arc<Follower>),
}

/// Rows read from the index per batch.
const INDEX_BATCH: usize = 1000;

/// The index when it can answer for this `since` (ready, caught up with this instance's writes
/// to the namespace, and `since` is its own or a start, or the feed is descending, which reads
/// the newest changes whatever `since` says), otherwise the filtered feed.
async fn choose_source(st: &State, ns: &Namespace, opts: &Opts) -> (Source, Position) {
    if let Some(f) = st.synced_index(ns).await {
        let ix = &f.index;
        let start = || Position {
            backend: json!(0),
            index: Some((ix.id().to_owned(), 0)),
        };
        let since = match &opts.since {
            Since::Zero => Some(start()),
            Since::Now => Some(ix.position()),
            Since::At(p) => ix.ordinal_of(p).map(|_| p.clone()),
        }
        .or_else(|| opts.descending.then(start));
        if let Some(since) = since {
            return (Source::Index(Arc::clone(f)), since);
        }
    }
    let since = match &opts.since {
        Since::Zero => json!(0),
        Since::Now => json!("now"),
        Since::At(p) => p.backend.clone(),
    };
    (Source::Filter, Position::backend(since))
}

impl Source {
    /// CouchDB's `pending`: the namespace's changes after `since` not sent. The filtered
    /// shared feed cannot tell without counting other users' changes: `None`.
    fn pending(&self, ns: &Namespace, since: &Position, descending: bool) -> Option<u64> {
        match self {
            Source::Filter => None,
            Source::Index(f) => {
                let after = match (f.index.ordinal_of(since), descending) {
                    (Some(o), _) => o,
                    // Nothing sent yet of a descending feed: everything is still older.
                    (None, true) => u64::MAX,
                    (None, false) => 0,
                };
                Some(f.index.pending(ns.partition(), after, descending))
            }
        }
    }

    /// Changes after `since`; with `wait`, waits that long when there are none yet. The
    /// filtered feed reads at most `budget` rows of the shared feed.
    pub async fn fetch(
        &self,
        st: &State,
        ns: &Namespace,
        opts: &Opts,
        since: &Position,
        wait: Option<Duration>,
        budget: u64,
    ) -> Result<Batch> {
        match self {
            Source::Filter => {
                let budget = usize::try_from(budget).unwrap_or(usize::MAX);
                changes_filter::fetch(st, ns, opts, &since.backend, wait, budget).await
            }
            Source::Index(f) => index_fetch(st, f, ns, opts, since, wait).await,
        }
    }
}

async fn index_fetch(
    st: &State,
    f: &Follower,
    ns: &Namespace,
    opts: &Opts,
    since: &Position,
    wait: Option<Duration>,
) -> Result<Batch> {
    let ix = &f.index;
    let after = ix.ordinal_of(since).unwrap_or(0);
    let query = || {
        ix.query(
            ns.partition(),
            after,
            INDEX_BATCH,
            opts.descending,
            opts.doc_ids.as_deref(),
        )
    };
    // Register for wake-ups before looking, so a write in between is not missed.
    let notify = ix.notifier(ns.partition());
    let notified = notify.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let mut q = query();
    if q.rows.is_empty() {
        if let Some(w) = wait {
            let _ = tokio::time::timeout(w, notified).await;
            q = query();
        }
    }
    let caught_up = opts.descending || q.rows.len() < INDEX_BATCH;
    let last = match q.rows.last() {
        Some(r) if !caught_up => r.pos.clone(),
        _ => q.last,
    };
    let mut rows: Vec<Row> = q
        .rows
        .into_iter()
        .map(|c| {
            let changes: Vec<Value> = if opts.all_docs_style {
                c.entry.revs.iter().map(|r| json!({ "rev": r })).collect()
            } else {
                c.entry
                    .revs
                    .first()
                    .map(|r| json!({ "rev": r }))
                    .into_iter()
                    .collect()
            };
            let mut row = json!({"id": c.id, "changes": changes});
            if c.entry.deleted {
                row["deleted"] = Value::Bool(true);
            }
            Row { pos: c.pos, row }
        })
        .collect();
    // The index lists the winner first, so only documents need the backend.
    if !rows.is_empty() && opts.include_docs {
        enrich(st, ns, opts, &mut rows).await?;
    }
    Ok(Batch {
        rows,
        last,
        caught_up,
        scanned: 0,
    })
}

/// Adds the documents for `include_docs`, in batched backend reads of at most
/// [`INDEX_BATCH`] documents.
pub(crate) async fn enrich(
    st: &State,
    ns: &Namespace,
    opts: &Opts,
    rows: &mut [Row],
) -> Result<()> {
    for chunk in rows.chunks_mut(INDEX_BATCH) {
        enrich_batch(st, ns, opts, chunk).await?;
    }
    Ok(())
}

async fn enrich_batch(st: &State, ns: &Namespace, opts: &Opts, rows: &mut [Row]) -> Result<()> {
    let keys: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.row["id"]
                .as_str()
                .and_then(|id| ns.encode_doc_id(id).ok())
        })
        .collect();
    let q = super::doc_flags(
        opts.include_docs,
        opts.conflicts,
        opts.attachments,
        opts.att_encoding_info,
    );
    let url = st
        .backend
        .db_url(&format!("/_all_docs{}", crate::backend::query_string(q)));
    let (_, answer) = st
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
        let id = r.row["id"].as_str().unwrap_or("").to_owned();
        let Some(current) = found.get(&id) else {
            continue;
        };
        let rev = current["value"]["rev"].clone();
        let deleted = current["value"]["deleted"] == json!(true);
        let mut doc = if deleted || current["doc"].is_null() {
            json!({"_id": current["id"], "_rev": rev, "_deleted": true})
        } else {
            current["doc"].clone()
        };
        crate::handlers::doc::strip_doc(st, ns, &mut doc)?;
        r.row["doc"] = doc;
    }
    Ok(())
}

/// A count from the query: digits only; more than fit are as good as infinite.
fn count(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse().unwrap_or(u64::MAX))
}

/// `heartbeat` and `timeout`, in milliseconds, held to CouchDB's maximum wait (60 s), so no
/// client value can overflow a deadline.
fn millis(q: &Query, key: &str) -> Result<Option<Duration>> {
    let Some(v) = q.get(key) else {
        return Ok(None);
    };
    let ms = match (key, v) {
        ("heartbeat", "true") => return Ok(Some(DEFAULT_TIMEOUT)),
        ("heartbeat", v) => match count(v) {
            Some(0) => {
                return Err(Error::bad_request(
                    "The heartbeat value should be a positive integer (in milliseconds).",
                ))
            }
            Some(ms) => ms,
            None => return Err(Error::bad_request(
                "Invalid heartbeat value. Expecting a positive integer value (in milliseconds).",
            )),
        },
        (_, v) => count(v).ok_or_else(|| {
            Error::bad_request(format!("Invalid {key} value: must be milliseconds"))
        })?,
    };
    Ok(Some(Duration::from_millis(ms.max(1)).min(DEFAULT_TIMEOUT)))
}

/// Parses a `_changes` request from its query string and, for POST, its body.
pub fn parse(st: &State, q: &Query, body: Option<&Map<String, Value>>) -> Result<Opts> {
    let feed = match q.get("feed").unwrap_or("normal") {
        "normal" => Feed::Normal,
        "longpoll" => Feed::Longpoll,
        "continuous" | "live" => Feed::Continuous,
        "eventsource" => Feed::EventSource,
        _ => {
            return Err(Error::bad_request(
                "Supported `feed` types: normal, continuous, live, longpoll, eventsource",
            ))
        }
    };
    let since = match q.get("since") {
        None => Since::Zero,
        Some(raw) => st
            .seqs
            .since(&Value::String(raw.to_owned()))
            .ok_or_else(|| {
                Error::bad_request("Malformed sequence supplied in 'since' parameter.")
            })?,
    };
    let not_a_list = || Error::bad_request("`doc_ids` filter parameter is not a list of doc ids.");
    let doc_ids = match q.get("filter") {
        None => None,
        Some("_doc_ids") => {
            let ids = match body.and_then(|b| b.get("doc_ids")) {
                Some(v) => v.clone(),
                None => q.json("doc_ids")?.ok_or_else(not_a_list)?,
            };
            let Value::Array(ids) = ids else {
                return Err(not_a_list());
            };
            Some(
                ids.into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(not_a_list()),
                    })
                    .collect::<Result<Vec<_>>>()?,
            )
        }
        Some("_selector") => {
            return Err(Error::NotImplemented(
                "filter=_selector is not supported by couchgate; use filter=_doc_ids".into(),
            ))
        }
        Some(f) if f == "_view" || f == "_design" || f.contains('/') => {
            return Err(Error::NotImplemented(format!(
                "filter `{f}`: couchgate never runs design document functions"
            )))
        }
        Some(f) if f.starts_with('_') => {
            return Err(Error::bad_request("unknown builtin filter name"))
        }
        Some(_) => {
            return Err(Error::bad_request(
                "filter parameter must be of the form `designname/filtername`",
            ))
        }
    };
    let heartbeat = millis(q, "heartbeat")?;
    let timeout = match (heartbeat, millis(q, "timeout")?) {
        (Some(_), _) => None,
        (None, t) => Some(t.unwrap_or(DEFAULT_TIMEOUT)),
    };
    let style = q.get("style").unwrap_or("main_only");
    if style != "main_only" && style != "all_docs" {
        return Err(Error::bad_request("style must be main_only or all_docs"));
    }
    let descending = q.flag("descending")?;
    let limit = q
        .get("limit")
        .map(|v| {
            count(v).ok_or_else(|| {
                Error::bad_request("Invalid limit value: must be a non-negative integer")
            })
        })
        .transpose()?;
    Ok(Opts {
        feed,
        since,
        limit,
        descending,
        all_docs_style: style == "all_docs",
        include_docs: q.flag("include_docs")?,
        conflicts: q.flag("conflicts")?,
        attachments: q.flag("attachments")?,
        att_encoding_info: q.flag("att_encoding_info")?,
        doc_ids,
        heartbeat,
        timeout,
    })
}

/// `expires`: Unix time at which the caller's credential stops being accepted; live feeds end
/// then.
pub async fn handle(
    st: &Arc<State>,
    ns: &Namespace,
    req: Req,
    expires: Option<u64>,
) -> Result<Response<Body>> {
    let query = req.query.clone();
    let body = if req.method == Method::POST {
        match req.json().await? {
            Value::Object(m) => Some(m),
            _ => return Err(Error::bad_request("Request body must be a JSON object")),
        }
    } else {
        None
    };
    if let Some(b) = &body {
        // `seq_interval` and similar are accepted and ignored; a selector is refused.
        if b.contains_key("selector") && query.get("filter") != Some("_selector") {
            return Err(Error::NotImplemented(
                "selectors are not supported by couchgate; use filter=_doc_ids".into(),
            ));
        }
        bool_of(
            b.get("include_docs").unwrap_or(&Value::Null),
            "include_docs",
        )?;
    }
    let opts = parse(st, &query, body.as_ref())?;
    let (source, mut since) = choose_source(st, ns, &opts).await;
    // The first batch is read before answering, so a failing backend gets a proper status.
    let scan_cap = st.config.changes_filter_scan_rows;
    let first = source.fetch(st, ns, &opts, &since, None, scan_cap).await?;
    if opts.since == Since::Now {
        since = first.last.clone();
    }
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
    let st = Arc::clone(st);
    let ns = ns.clone();
    tokio::spawn(async move {
        let mut driver = Driver {
            st: &st,
            ns: &ns,
            opts: &opts,
            source,
            tx,
            sent: 0,
            scanned: 0,
            scan_cap,
            start: since.clone(),
            since,
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

/// Frames batches from the source as the requested feed.
struct Driver<'a> {
    st: &'a State,
    ns: &'a Namespace,
    opts: &'a Opts,
    source: Source,
    tx: ChunkSender,
    /// Rows sent so far.
    sent: u64,
    /// Rows of the shared feed read so far, and the most one request may read.
    scanned: u64,
    scan_cap: u64,
    /// Position after the last row sent or skipped.
    since: Position,
    /// Where the feed started.
    start: Position,
    /// When the credential that opened the feed expires: a live feed ends then.
    ends_at: Option<Instant>,
}

/// Why the driver stopped early.
enum Stop {
    /// The client went away.
    Gone,
    /// `limit` rows were sent.
    Limit,
    /// The request read as many rows of the shared feed as one request may; `last_seq` says
    /// where to resume, as after `limit`.
    ScanCap,
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
        let last_seq = json!(self.st.seqs.seal_position(&self.since));
        // With `_doc_ids`, CouchDB counts the changes after `since` that were not sent,
        // whether the filter would pass them or not.
        let pending = match &self.opts.doc_ids {
            None => self
                .source
                .pending(self.ns, &self.since, self.opts.descending),
            Some(_) => self
                .source
                .pending(self.ns, &self.start, self.opts.descending)
                .map(|n| n.saturating_sub(self.sent)),
        }
        .map(|n| format!(",\"pending\":{n}"))
        .unwrap_or_default();
        let tail = match self.opts.feed {
            Feed::Normal | Feed::Longpoll => {
                format!("\n],\n\"last_seq\":{last_seq}{pending}}}\n")
            }
            Feed::Continuous => format!("{{\"last_seq\":{last_seq}{pending}}}\n"),
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
                .source
                .fetch(
                    self.st,
                    self.ns,
                    self.opts,
                    &self.since,
                    None,
                    self.budget(),
                )
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
            let since = self.since.clone();
            let batch = {
                let fetch = self.source.fetch(
                    self.st,
                    self.ns,
                    self.opts,
                    &since,
                    Some(wait),
                    self.budget(),
                );
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

    /// Shared feed rows this request may still read.
    fn budget(&self) -> u64 {
        self.scan_cap.saturating_sub(self.scanned)
    }

    /// Sends a batch's rows, advancing `since`; stops the feed once the scan budget is spent.
    async fn send_batch(&mut self, batch: Batch) -> Option<Stop> {
        self.scanned = self.scanned.saturating_add(batch.scanned);
        let mut chunk = String::new();
        for row in batch.rows {
            let seq = self.st.seqs.seal_position(&row.pos);
            let mut value = row.row;
            value["seq"] = Value::String(seq.clone());
            self.since = row.pos;
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
        // Rows of other namespaces were skipped up to here: resuming after it loses nothing.
        // A descending feed ends at its oldest row, as CouchDB's does.
        if !self.opts.descending {
            self.since = batch.last;
        }
        (self.budget() == 0).then_some(Stop::ScanCap)
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

    fn state() -> State {
        crate::proxy::tests::state()
    }

    #[test]
    fn options() {
        let st = state();
        let o = parse(
            &st,
            &Query::parse("feed=longpoll&heartbeat=10000&style=all_docs&since=now&limit=5"),
            None,
        )
        .unwrap();
        assert_eq!(o.feed, Feed::Longpoll);
        assert_eq!(o.since, Since::Now);
        assert_eq!(o.heartbeat, Some(Duration::from_secs(10)));
        assert_eq!(o.timeout, None, "a heartbeat keeps the feed open");
        assert!(o.all_docs_style);
        assert_eq!(o.limit, Some(5));
        let o = parse(&st, &Query::parse("feed=continuous&timeout=500"), None).unwrap();
        assert_eq!(o.timeout, Some(Duration::from_millis(500)));
        let o = parse(&st, &Query::parse("since=12-g1AAAAbc"), None).unwrap();
        assert_eq!(
            o.since,
            Since::Zero,
            "a foreign since replays from the start"
        );
        let o = parse(
            &st,
            &Query::parse("feed=live&limit=99999999999999999999&timeout=99999999999999999999"),
            None,
        )
        .unwrap();
        assert_eq!(o.feed, Feed::Continuous);
        assert_eq!(o.limit, Some(u64::MAX), "huge counts saturate");
        assert_eq!(o.timeout, Some(DEFAULT_TIMEOUT), "waits are bounded");
    }

    #[test]
    fn filters() {
        let st = state();
        let q = Query::parse("filter=_doc_ids&doc_ids=%5B%22a%22%5D");
        assert_eq!(
            parse(&st, &q, None).unwrap().doc_ids,
            Some(vec!["a".into()])
        );
        let mut body = Map::new();
        body.insert("doc_ids".into(), json!(["b"]));
        let q = Query::parse("filter=_doc_ids");
        assert_eq!(
            parse(&st, &q, Some(&body)).unwrap().doc_ids,
            Some(vec!["b".into()])
        );
        for (q, status) in [
            ("filter=_selector", 501),
            ("filter=app/by_type", 501),
            ("filter=_view&view=a/b", 501),
            ("filter=nonsense", 400),
            ("filter=_doc_ids", 400),
            ("feed=sideways", 400),
            ("heartbeat=soon", 400),
            ("style=odd", 400),
            ("heartbeat=0", 400),
            ("since=bogus", 400),
            ("limit=-1", 400),
        ] {
            assert_eq!(
                parse(&st, &Query::parse(q), None).unwrap_err().status(),
                status,
                "{q}"
            );
        }
    }
}
