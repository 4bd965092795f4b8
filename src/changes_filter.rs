//! The filter-the-feed source of a namespace's changes: reads the shared database's `_changes`
//! after a backend sequence and keeps the rows of one namespace.
//!
//! Its cost grows with every user's changes, not the caller's own; a per-user index replaces it.
//! It is kept as the simple, obviously correct reference.

use crate::backend::query_string;
use crate::error::{Error, Result};
use crate::handlers::changes::{Batch, Opts, Row};
use crate::namespace::Namespace;
use crate::proxy::State;
use crate::seq::Position;
use http::Method;
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
    let since_text = match since {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut q = vec![("since", since_text)];
    if opts.descending {
        q.push(("descending", "true".into()));
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
    let (method, body) = match &opts.doc_ids {
        Some(ids) => {
            q.push(("filter", "_doc_ids".into()));
            let encoded: Vec<String> = ids
                .iter()
                .filter_map(|id| ns.encode_doc_id(id).ok())
                .collect();
            if encoded.is_empty() {
                // Nothing can match; answer without asking the backend to wait.
                return Ok(Batch::empty(Position::backend(since.clone())));
            }
            (Method::POST, Some(json!({ "doc_ids": encoded })))
        }
        None => (Method::GET, None),
    };
    let url = st.backend.db_url(&format!("/_changes{}", query_string(q)));
    let timeout = st.backend.timeout() + wait.unwrap_or_default();
    let call = st
        .backend
        .json_with_timeout(method, &url, body.as_ref(), timeout);
    let answer = match wait {
        None => call.await?.1,
        // Not every backend ends a longpoll at its `timeout` (PouchDB Server never does), so
        // the wait is enforced here too. Giving up returns nothing new: the next call resumes
        // from the same position, so no change is lost.
        Some(w) => match tokio::time::timeout(w + WAIT_GRACE, call).await {
            Ok(r) => r?.1,
            Err(_) => return Ok(Batch::empty(Position::backend(since.clone()))),
        },
    };
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadGateway("_changes answer without results".into()))?;
    let caught_up = opts.descending || results.len() < PAGE;
    let last_seq = answer
        .get("last_seq")
        .cloned()
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| since.clone());
    let mut rows = Vec::new();
    for r in results {
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
