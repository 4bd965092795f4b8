//! `/{db}`: the life cycle and information of a virtual database, and `/_uuids`.

use super::Req;
use crate::auth::Identity;
use crate::backend::query_string;
use crate::body::{json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::state::State;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

/// Ids counted per backend request when a namespace's documents are counted.
const COUNT_PAGE: usize = 10_000;

/// Most ids one count reads from the backend (without the changes index, on a backend that
/// keeps no offsets); a larger namespace is counted as this many.
pub const COUNT_MAX: u64 = 100_000;

pub async fn handle(st: &State, who: &Identity, db: &str, req: Req) -> Result<Response<Body>> {
    match req.method {
        Method::GET | Method::HEAD => {
            let ns = st.registry.require(&who.user, db).await?;
            info(st, &ns, db).await
        }
        Method::PUT => {
            st.registry.create(&who.user, db).await?;
            let mut r = json_response(StatusCode::CREATED, &json!({"ok": true}));
            if let Ok(loc) =
                HeaderValue::from_str(&format!("/{}", crate::backend::encode_component(db)))
            {
                r.headers_mut().insert(header::LOCATION, loc);
            }
            Ok(r)
        }
        Method::DELETE => {
            if req.query.get("rev").is_some() {
                // CouchDB's own wording, `?=rev` included.
                return Err(Error::bad_request(
                    "You tried to DELETE a database with a ?=rev parameter. Did you mean to \
                     DELETE a document instead?",
                ));
            }
            // Its index entries go once the background cleanup has removed its documents.
            st.registry.delete(&who.user, db).await?;
            Ok(json_response(StatusCode::OK, &json!({"ok": true})))
        }
        Method::POST => {
            let ns = st.registry.require(&who.user, db).await?;
            super::doc::post(st, &ns, req).await
        }
        // CouchDB's wording leaves PUT out.
        _ => Err(Error::MethodNotAllowed(
            "Only DELETE,GET,HEAD,POST allowed".into(),
        )),
    }
}

/// `GET /{db}`: figures of this namespace only, never of the shared database.
async fn info(st: &State, ns: &Namespace, db: &str) -> Result<Response<Body>> {
    let (doc_count, doc_del_count) = match st.changes.counts(ns).await? {
        Some(counts) => counts,
        // Without the index, deleted documents are not counted.
        None => (count_range(st, &ns.start_key(), &ns.end_key()).await?, 0),
    };
    let update_seq = st.changes.update_seq(ns).await?;
    let cluster = st
        .cluster
        .get_or_try_init(|| async {
            let (_, shared) = st
                .backend
                .json(Method::GET, &st.backend.db_url(""), None)
                .await?;
            Ok::<_, Error>(shared["cluster"].clone())
        })
        .await?;
    let mut info = json!({
            "db_name": db,
            "update_seq": update_seq,
            "doc_count": doc_count,
            "doc_del_count": doc_del_count,
            "purge_seq": 0,
            "compact_running": false,
            "sizes": {"active": 0, "external": 0, "file": 0},
            "props": {},
            "disk_format_version": 8,
            "instance_start_time": "0",
    });
    if !cluster.is_null() {
        info["cluster"] = cluster.clone();
    }
    Ok(json_response(StatusCode::OK, &info))
}

/// Counts the ids in `[start, end)` of the backing `_all_docs`, up to [`COUNT_MAX`].
pub async fn count_range(st: &State, start: &str, end: &str) -> Result<u64> {
    let mut count = 0u64;
    let mut from = start.to_owned();
    loop {
        let q = query_string([
            ("startkey", json!(from).to_string()),
            ("endkey", json!(end).to_string()),
            ("inclusive_end", "false".into()),
            ("limit", COUNT_PAGE.to_string()),
        ]);
        let (_, page) = st
            .backend
            .json(
                Method::GET,
                &st.backend.db_url(&format!("/_all_docs{q}")),
                None,
            )
            .await?;
        let rows = page["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        count += rows.len() as u64;
        match rows.last().and_then(|r| r["id"].as_str()) {
            Some(last) if rows.len() == COUNT_PAGE && count < COUNT_MAX => {
                from = format!("{last}\u{0}")
            }
            _ => return Ok(count.min(COUNT_MAX)),
        }
    }
}

/// `GET /_uuids?count=N`.
pub fn uuids(req: &Req) -> Result<Response<Body>> {
    let count = match req.query.get("count") {
        None => 1,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| Error::bad_request("count must be a positive integer"))?,
    };
    if count > 1000 {
        return Err(Error::bad_request("count parameter too large"));
    }
    let ids: Vec<Value> = (0..count)
        .map(|_| Value::String(super::new_uuid()))
        .collect();
    let mut r = json_response(StatusCode::OK, &json!({ "uuids": ids }));
    // Fresh ids every time: never cached.
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", super::new_uuid()))
            .expect("hex is a valid header"),
    );
    Ok(r)
}
