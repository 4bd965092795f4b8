//! `GET|POST /{db}/_all_docs`: the namespace's documents in id order.
//!
//! Client ranges are translated into the namespace's backing range (ids keep their order under
//! the constant prefix), `keys` are encoded one by one, and `total_rows`/`offset` are counted
//! within the namespace. Long answers are fetched from the backend in pages and streamed.

use super::{bool_of, Req};
use crate::backend::query_string;
use crate::body::{self, Body, ChunkSender};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::proxy::State;
use http::{header, HeaderValue, Method, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Rows fetched from the backend per request.
const PAGE: u64 = 1000;

/// A parsed `_all_docs` request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Opts {
    pub keys: Option<Vec<Value>>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub inclusive_end: bool,
    pub descending: bool,
    pub limit: Option<u64>,
    pub skip: u64,
    pub include_docs: bool,
    pub conflicts: bool,
    pub update_seq: bool,
    pub attachments: bool,
    pub att_encoding_info: bool,
}

/// Merges the query string and a POST body (whose members win) into [`Opts`].
pub fn parse(query: &super::Query, body: Option<Map<String, Value>>) -> Result<Opts> {
    let mut params: Map<String, Value> = Map::new();
    for (k, v) in &query.0 {
        let value = match k.as_str() {
            "keys" | "key" | "startkey" | "start_key" | "endkey" | "end_key" => {
                serde_json::from_str(v).map_err(|_| {
                    Error::bad_request(format!("Invalid JSON in query parameter {k}"))
                })?
            }
            _ => Value::String(v.clone()),
        };
        params.insert(k.clone(), value);
    }
    params.extend(body.unwrap_or_default());

    let string = |names: &[&str]| -> Result<Option<String>> {
        for n in names {
            match params.get(*n) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => return Ok(Some(s.clone())),
                Some(_) => {
                    return Err(Error::bad_request(format!(
                        "`{n}` must be a string: document ids are strings"
                    )))
                }
            }
        }
        Ok(None)
    };
    let flag = |n: &str| -> Result<bool> {
        Ok(bool_of(params.get(n).unwrap_or(&Value::Null), n)?.unwrap_or(false))
    };
    let number = |n: &str| -> Result<Option<u64>> {
        let parsed = match params.get(n) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(x)) => x.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            Some(_) => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| Error::bad_request(format!("`{n}` must be a non-negative integer")))
    };

    let mut opts = Opts {
        keys: match params.get("keys") {
            None | Some(Value::Null) => None,
            Some(Value::Array(k)) => Some(k.clone()),
            Some(_) => return Err(Error::bad_request("`keys` must be an array")),
        },
        start: string(&["startkey", "start_key"])?,
        end: string(&["endkey", "end_key"])?,
        inclusive_end: bool_of(
            params.get("inclusive_end").unwrap_or(&Value::Null),
            "inclusive_end",
        )?
        .unwrap_or(true),
        descending: flag("descending")?,
        limit: number("limit")?,
        skip: number("skip")?.unwrap_or(0),
        include_docs: flag("include_docs")?,
        conflicts: flag("conflicts")?,
        update_seq: flag("update_seq")?,
        attachments: flag("attachments")?,
        att_encoding_info: flag("att_encoding_info")?,
    };
    if let Some(key) = string(&["key"])? {
        opts.start = Some(key.clone());
        opts.end = Some(key);
        opts.inclusive_end = true;
    }
    Ok(opts)
}

/// The backend's range for a client range: `(startkey, endkey, inclusive_end)`.
pub fn backing_range(ns: &Namespace, o: &Opts) -> (String, String, bool) {
    let enc = |s: &String| format!("{}{s}", ns.start_key());
    if o.descending {
        (
            o.start.as_ref().map_or_else(|| ns.end_key(), enc),
            o.end.as_ref().map_or_else(|| ns.start_key(), enc),
            o.end.is_none() || o.inclusive_end,
        )
    } else {
        (
            o.start.as_ref().map_or_else(|| ns.start_key(), enc),
            o.end.as_ref().map_or_else(|| ns.end_key(), enc),
            o.end.is_some() && o.inclusive_end,
        )
    }
}

fn doc_params(o: &Opts) -> Vec<(&'static str, String)> {
    super::doc_flags(
        o.include_docs,
        o.conflicts,
        o.attachments,
        o.att_encoding_info,
    )
}

pub async fn handle(st: &Arc<State>, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    let query = req.query.clone();
    let body = if req.method == Method::POST {
        match req.json().await? {
            Value::Object(m) => Some(m),
            _ => return Err(Error::bad_request("Request body must be a JSON object")),
        }
    } else {
        None
    };
    let opts = parse(&query, body)?;
    let update_seq = if opts.update_seq {
        let (_, info) = st
            .backend
            .json(Method::GET, &st.backend.db_url(""), None)
            .await?;
        Some(st.seqs.seal(&info["update_seq"]))
    } else {
        None
    };
    match &opts.keys {
        Some(keys) => by_keys(st, ns, &opts, keys, update_seq).await,
        None => by_range(st, ns, opts, update_seq).await,
    }
}

/// Rewrites one backend row into the client's.
fn strip_row(st: &State, ns: &Namespace, mut row: Value) -> Result<Value> {
    for field in ["id", "key"] {
        if let Some(id) = row
            .get(field)
            .and_then(Value::as_str)
            .and_then(|s| ns.decode_id(s))
        {
            row[field] = Value::String(id);
        }
    }
    if let Some(doc) = row.get_mut("doc").filter(|d| d.is_object()) {
        super::doc::strip_doc(st, ns, doc)?;
    }
    Ok(row)
}

fn head(total_rows: u64, offset: Option<u64>, update_seq: &Option<String>) -> String {
    let mut h = format!("{{\"total_rows\":{total_rows}");
    if let Some(o) = offset {
        h.push_str(&format!(",\"offset\":{o}"));
    }
    if let Some(s) = update_seq {
        h.push_str(&format!(",\"update_seq\":{}", json!(s)));
    }
    h.push_str(",\"rows\":[\r\n");
    h
}

fn streaming_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn by_keys(
    st: &State,
    ns: &Namespace,
    o: &Opts,
    keys: &[Value],
    update_seq: Option<String>,
) -> Result<Response<Body>> {
    // Keys that cannot name a document of the namespace are answered `not_found` locally.
    let encoded: Vec<Option<String>> = keys
        .iter()
        .map(|k| k.as_str().and_then(|s| ns.encode_doc_id(s).ok()))
        .collect();
    let forward: Vec<&String> = encoded.iter().flatten().collect();
    let mut backend_rows = Vec::new().into_iter();
    if !forward.is_empty() {
        let url = st
            .backend
            .db_url(&format!("/_all_docs{}", query_string(doc_params(o))));
        let (_, answer) = st
            .backend
            .json(Method::POST, &url, Some(&json!({ "keys": forward })))
            .await?;
        backend_rows = answer["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter();
    }
    let mut rows = Vec::with_capacity(keys.len());
    for (key, enc) in keys.iter().zip(&encoded) {
        let mut row = match enc {
            None => json!({"key": key, "error": "not_found"}),
            Some(_) => strip_row(
                st,
                ns,
                backend_rows
                    .next()
                    .ok_or_else(|| Error::BadGateway("_all_docs answered too few rows".into()))?,
            )?,
        };
        if row.get("error").is_some() {
            row["key"] = key.clone();
        }
        rows.push(row);
    }
    let skip = usize::try_from(o.skip).unwrap_or(usize::MAX);
    let limit = o
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let rows: Vec<Value> = rows.into_iter().skip(skip).take(limit).collect();
    let total = super::db::count_docs(st, ns).await?;
    let mut out = head(total, None, &update_seq);
    let texts: Vec<String> = rows.iter().map(Value::to_string).collect();
    out.push_str(&texts.join(",\r\n"));
    out.push_str("\r\n]}\n");
    Ok(streaming_response(body::full(out)))
}

async fn by_range(
    st: &Arc<State>,
    ns: &Namespace,
    o: Opts,
    update_seq: Option<String>,
) -> Result<Response<Body>> {
    let (start, end, inclusive_end) = backing_range(ns, &o);
    let offset_range = if o.descending {
        (format!("{start}\u{0}"), ns.end_key())
    } else {
        (ns.start_key(), start.clone())
    };
    let first_limit = o.limit.map_or(PAGE, |l| l.min(PAGE));
    let fetch = Pager {
        start,
        end,
        inclusive_end,
        descending: o.descending,
        params: doc_params(&o),
    };
    let (total, before, first) = tokio::try_join!(
        super::db::count_docs(st, ns),
        super::db::count_range(st, &offset_range.0, &offset_range.1),
        fetch.page(st, None, o.skip, first_limit),
    )?;
    let (tx, body) = body::channel(4);
    let state = Arc::clone(st);
    let ns = ns.clone();
    let head = head(total, Some(before + o.skip), &update_seq);
    tokio::spawn(async move {
        if let Err(e) =
            stream_pages(&state, &ns, fetch, o.limit, first, first_limit, head, tx).await
        {
            tracing::warn!(error = %e, "_all_docs stream ended early");
        }
    });
    Ok(streaming_response(body))
}

struct Pager {
    start: String,
    end: String,
    inclusive_end: bool,
    descending: bool,
    params: Vec<(&'static str, String)>,
}

impl Pager {
    /// One page: from `start` (or after `after`, the last key of the previous page).
    async fn page(
        &self,
        st: &State,
        after: Option<&str>,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<Value>> {
        let mut q = vec![
            ("startkey", json!(after.unwrap_or(&self.start)).to_string()),
            ("endkey", json!(self.end).to_string()),
            ("inclusive_end", self.inclusive_end.to_string()),
            ("limit", limit.to_string()),
        ];
        let skip = if after.is_some() { 1 } else { skip };
        if skip > 0 {
            q.push(("skip", skip.to_string()));
        }
        if self.descending {
            q.push(("descending", "true".into()));
        }
        q.extend(self.params.iter().cloned());
        let url = st.backend.db_url(&format!("/_all_docs{}", query_string(q)));
        let (_, answer) = st.backend.json(Method::GET, &url, None).await?;
        Ok(answer["rows"].as_array().cloned().unwrap_or_default())
    }
}

#[allow(clippy::too_many_arguments)]
async fn stream_pages(
    st: &State,
    ns: &Namespace,
    pager: Pager,
    limit: Option<u64>,
    mut rows: Vec<Value>,
    mut asked: u64,
    head: String,
    tx: ChunkSender,
) -> Result<()> {
    let mut remaining = limit.unwrap_or(u64::MAX);
    let mut first = true;
    if !tx.send(head).await {
        return Ok(());
    }
    loop {
        let full_page = rows.len() as u64 == asked;
        remaining = remaining.saturating_sub(rows.len() as u64);
        let last_key = rows
            .last()
            .and_then(|r| r["key"].as_str())
            .map(String::from);
        let mut chunk = String::new();
        for row in rows {
            if !first {
                chunk.push_str(",\r\n");
            }
            first = false;
            chunk.push_str(&strip_row(st, ns, row)?.to_string());
        }
        if !chunk.is_empty() && !tx.send(chunk).await {
            return Ok(());
        }
        match last_key {
            Some(k) if full_page && remaining > 0 => {
                asked = remaining.min(PAGE);
                rows = pager.page(st, Some(&k), 0, asked).await?;
            }
            _ => break,
        }
    }
    tx.send("\r\n]}\n").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Query;

    fn opts(q: &str) -> Opts {
        parse(&Query::parse(q), None).unwrap()
    }

    #[test]
    fn ranges_stay_inside_the_namespace() {
        let ns = Namespace::new("u", "d", "e");
        assert_eq!(
            backing_range(&ns, &opts("")),
            ("u.d.e:".into(), "u.d.e;".into(), false)
        );
        assert_eq!(
            backing_range(
                &ns,
                &opts("startkey=%22b%22&endkey=%22y%22&inclusive_end=false")
            ),
            ("u.d.e:b".into(), "u.d.e:y".into(), false)
        );
        assert_eq!(
            backing_range(&ns, &opts("descending=true&start_key=%22y%22")),
            ("u.d.e:y".into(), "u.d.e:".into(), true)
        );
        assert_eq!(
            backing_range(&ns, &opts("key=%22k%22")),
            ("u.d.e:k".into(), "u.d.e:k".into(), true)
        );
    }

    #[test]
    fn body_members_override_the_query() {
        let mut body = Map::new();
        body.insert("keys".into(), json!(["a", "b"]));
        body.insert("limit".into(), json!(1));
        let o = parse(&Query::parse("limit=5&include_docs=true"), Some(body)).unwrap();
        assert_eq!(o.keys, Some(vec![json!("a"), json!("b")]));
        assert_eq!(o.limit, Some(1));
        assert!(o.include_docs);
    }

    #[test]
    fn bad_parameters() {
        for q in [
            "startkey=1",
            "limit=-1",
            "descending=yes",
            "keys=%7B%7D",
            "startkey=%22",
        ] {
            assert!(parse(&Query::parse(q), None).is_err(), "{q}");
        }
    }
}
