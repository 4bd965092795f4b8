//! The filter-the-feed source of a namespace's changes: reads the shared database's `_changes`
//! after a backend sequence and keeps the rows of one namespace.
//!
//! Its cost grows with every user's changes, not the caller's own; a per-user index replaces it.
//! It is kept as the simple, obviously correct reference.

use crate::error::Result;
use crate::handlers::changes::{Batch, Opts, Row};
use crate::namespace::Namespace;
use crate::proxy::State;
use crate::seq::Position;
use serde_json::{json, Value};
use std::time::Duration;

/// Backend rows read per request.
pub const PAGE: usize = 1000;

/// How much longer than the backend's own longpoll timeout couchgate waits for it.
const WAIT_GRACE: Duration = Duration::from_millis(250);

/// Reads the namespace's changes after `since`. With `wait`, the backend long-polls that long
/// when nothing is new (a change of any namespace ends the wait; the batch may then be empty).
pub async fn fetch(
    st: &State,
    ns: &Namespace,
    opts: &Opts,
    since: &Value,
    wait: Option<Duration>,
) -> Result<Batch> {
    let mut q = vec![];
    if opts.descending {
        q.push(("descending", "true".to_owned()));
    } else {
        q.push(("limit", PAGE.to_string()));
    }
    if opts.all_docs_style {
        q.push(("style", "all_docs".into()));
    }
    q.extend(crate::handlers::doc_flags(
        opts.include_docs,
        opts.conflicts,
        opts.attachments,
        opts.att_encoding_info,
    ));
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
    let call = st.backend.changes_page(since, q, doc_ids.as_ref(), timeout);
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
    let results = page.rows;
    let caught_up = opts.descending || results.len() < PAGE;
    let last_seq = page.last_seq;
    let mut rows = Vec::new();
    for r in &results {
        let Some(id) = r
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| ns.decode_id(id))
        else {
            continue;
        };
        let mut row = json!({"id": id, "changes": r.get("changes").cloned().unwrap_or(json!([]))});
        if r.get("deleted").and_then(Value::as_bool) == Some(true) {
            row["deleted"] = Value::Bool(true);
        }
        if let Some(doc) = r.get("doc") {
            let mut doc = doc.clone();
            crate::handlers::doc::strip_doc(st, ns, &mut doc)?;
            row["doc"] = doc;
        }
        rows.push(Row {
            pos: Position::backend(r.get("seq").cloned().unwrap_or(Value::Null)),
            row,
        });
    }
    Ok(Batch {
        rows,
        last: Position::backend(last_seq),
        caught_up,
    })
}
