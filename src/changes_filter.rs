//! The filter-the-feed source of a namespace's changes: reads the shared database's `_changes`
//! after a backend sequence and keeps the rows of one namespace.
//!
//! Its cost grows with every user's changes, not the caller's own; a per-user index replaces it.
//! It is kept as the simple, obviously correct reference, with two guards, since whatever one
//! user writes passes through every other user's filter:
//! - the shared feed is read without documents, and other namespaces' rows only by `id`
//!   ([`FeedRow`]): no document of another user is parsed, so none can fail the page; the
//!   caller's own documents are read in one batch for its own rows;
//! - every read is bounded: pages of at most [`PAGE`] rows and
//!   [`crate::backend::FEED_PAGE_BYTES`] bytes, at most the caller's `budget` of shared rows
//!   (see [`crate::handlers::changes`]), and a descending feed reads only the newest `budget`
//!   rows of the shared feed, as it cannot be paged backwards.

use crate::backend::FeedRow;
use crate::error::Result;
use crate::handlers::changes::{enrich, Batch, Opts, Row};
use crate::namespace::Namespace;
use crate::proxy::State;
use crate::seq::Position;
use serde_json::{json, Value};
use std::time::Duration;

/// Backend rows read per request.
pub const PAGE: usize = 1000;

/// How much longer than the backend's own longpoll timeout couchgate waits for it.
const WAIT_GRACE: Duration = Duration::from_millis(250);

/// Reads the namespace's changes after `since`, scanning at most `budget` rows of the shared
/// feed. With `wait`, the backend long-polls that long when nothing is new (a change of any
/// namespace ends the wait; the batch may then be empty).
pub async fn fetch(
    st: &State,
    ns: &Namespace,
    opts: &Opts,
    since: &Value,
    wait: Option<Duration>,
    budget: usize,
) -> Result<Batch> {
    let limit = if opts.descending {
        budget
    } else {
        budget.min(PAGE)
    };
    let mut q = vec![];
    if opts.descending {
        q.push(("descending", "true".to_owned()));
    }
    if opts.all_docs_style {
        q.push(("style", "all_docs".into()));
    }
    if let Some(w) = wait {
        q.push(("feed", "longpoll".into()));
        q.push(("timeout", w.as_millis().to_string()));
    }
    let doc_ids = match &opts.doc_ids {
        Some(ids) => {
            let encoded: Vec<Value> = ids
                .iter()
                .filter_map(|id| ns.encode_doc_id(id).ok())
                .map(Value::String)
                .collect();
            if encoded.is_empty() {
                // Nothing can match; answer without asking the backend to wait.
                return Ok(Batch::empty(Position::backend(since.clone())));
            }
            Some(Value::Array(encoded))
        }
        None => None,
    };
    let timeout = st.backend.timeout() + wait.unwrap_or_default();
    let call = st
        .backend
        .changes_page::<FeedRow>(since, limit, &q, doc_ids.as_ref(), timeout);
    let page = match wait {
        None => call.await?,
        // Not every backend ends a longpoll at its `timeout` (PouchDB Server never does), so
        // the wait is enforced here too. Giving up returns nothing new: the next call resumes
        // from the same position, so no change is lost.
        Some(w) => match tokio::time::timeout(w + WAIT_GRACE, call).await {
            Ok(r) => r?,
            Err(_) => return Ok(Batch::empty(Position::backend(since.clone()))),
        },
    };
    let scanned = page.rows.len();
    let caught_up = opts.descending || scanned < page.asked;
    let mut rows = Vec::new();
    for r in page.rows {
        if let Some(row) = own_row(ns, r) {
            rows.push(row);
        }
    }
    if opts.include_docs && !rows.is_empty() {
        enrich(st, ns, opts, &mut rows).await?;
    }
    Ok(Batch {
        rows,
        last: Position::backend(page.last_seq),
        caught_up,
        scanned: scanned as u64,
    })
}

/// The client's row for a shared feed row of the namespace; `None` for any other row, which is
/// dropped unparsed.
fn own_row(ns: &Namespace, r: FeedRow) -> Option<Row> {
    let id = ns.decode_id(&r.id)?;
    let changes = r
        .changes
        .and_then(|raw| crate::backend::parse_json(raw.get().as_bytes()).ok())
        .unwrap_or_else(|| json!([]));
    let mut row = json!({"id": id, "changes": changes});
    if r.deleted {
        row["deleted"] = Value::Bool(true);
    }
    Some(Row {
        pos: Position::backend(r.seq),
        row,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_row(text: &str) -> FeedRow {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn only_own_rows_are_kept_and_others_are_not_parsed() {
        let ns = Namespace::new("u", "d", "e");
        // Far deeper than serde_json's own limit, in another user's row: never parsed.
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let theirs = feed_row(&format!(r#"{{"seq":1,"id":"v.d.e:x","changes":{deep}}}"#));
        assert!(own_row(&ns, theirs).is_none());
        let mine = feed_row(r#"{"seq":2,"id":"u.d.e:a","changes":[{"rev":"2-b"}],"deleted":true}"#);
        let row = own_row(&ns, mine).unwrap();
        assert_eq!(
            row.row,
            json!({"id": "a", "changes": [{"rev": "2-b"}], "deleted": true})
        );
        assert_eq!(row.pos, Position::backend(json!(2)));
        assert!(own_row(&ns, feed_row(r#"{"seq":3,"id":"couchgate:db.u.d"}"#)).is_none());
    }
}
