//! `filter=_selector`: a batch of the index's rows keeps the revisions whose documents a Mango
//! selector matches, as CouchDB's `couch_changes:filter` does (each revision the row lists,
//! rendered as CouchDB renders it: `_id`, `_rev`, `_deleted`, attachment stubs, the body).
//!
//! The documents come from the backend in one `_bulk_get` per 100 rows, not one read per row.
//! A row lists several revisions only for a conflicted document in `style=all_docs`; those are
//! asked in further requests of one revision per document each, since PouchDB Server merges
//! repeated ids of one `_bulk_get`.

use super::feed::Row;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::mango::{Fields, Selector};
use crate::namespace::Namespace;
use http::Method;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Items per backend `_bulk_get`.
const CHUNK: usize = 100;

/// A `filter=_selector` request: the selector, and the `fields` its `include_docs` documents
/// show.
#[derive(Debug, Clone)]
pub struct SelectorFilter {
    pub selector: Selector,
    pub fields: Option<Fields>,
}

impl PartialEq for SelectorFilter {
    fn eq(&self, other: &Self) -> bool {
        self.selector.normalized() == other.selector.normalized() && self.fields == other.fields
    }
}

/// Keeps the revisions of `rows` whose documents match; rows left with none are dropped.
pub(super) async fn filter(
    backend: &Backend,
    ns: &Namespace,
    filter: &SelectorFilter,
    rows: Vec<Row>,
) -> Result<Vec<Row>> {
    let mut kept = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        let docs = revisions(backend, ns, chunk).await?;
        for row in chunk {
            let id = row.row["id"].as_str().unwrap_or_default();
            let passing: Vec<Value> = row.row["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| {
                    let rev = c["rev"].as_str().unwrap_or_default();
                    docs.get(&(id.to_owned(), rev.to_owned()))
                        .is_some_and(|doc| filter.selector.matches(doc))
                })
                .cloned()
                .collect();
            if !passing.is_empty() {
                let mut row = row.clone();
                row.row["changes"] = Value::Array(passing);
                kept.push(row);
            }
        }
    }
    Ok(kept)
}

/// The documents of the revisions `rows` list, by (client id, rev), with client ids.
async fn revisions(
    backend: &Backend,
    ns: &Namespace,
    rows: &[Row],
) -> Result<HashMap<(String, String), Value>> {
    // Round k asks the k-th revision of every row that lists one.
    let mut rounds: Vec<Vec<Value>> = Vec::new();
    for row in rows {
        let Some(backing) = row.row["id"]
            .as_str()
            .and_then(|id| ns.encode_doc_id(id).ok())
        else {
            continue;
        };
        for (k, change) in row.row["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if rounds.len() <= k {
                rounds.push(Vec::new());
            }
            rounds[k].push(json!({"id": backing, "rev": change["rev"]}));
        }
    }
    let url = backend.db_url("/_bulk_get");
    let mut docs = HashMap::new();
    for items in rounds {
        let (_, answer) = backend
            .json(Method::POST, &url, Some(&json!({ "docs": items })))
            .await?;
        let results = answer["results"]
            .as_array()
            .ok_or_else(|| Error::BadGateway("_bulk_get answer without results".into()))?;
        for result in results {
            for entry in result["docs"].as_array().into_iter().flatten() {
                let Some(doc) = entry.get("ok") else { continue };
                let mut doc = doc.clone();
                // Every id must be one of this namespace's: `strip_doc` refuses any other.
                ns.strip_doc(&mut doc)?;
                if let (Some(id), Some(rev)) = (doc["_id"].as_str(), doc["_rev"].as_str()) {
                    let key = (id.to_owned(), rev.to_owned());
                    docs.insert(key, doc);
                }
            }
        }
    }
    Ok(docs)
}
