//! One module per CouchDB endpoint family. Each handler parses the client's request, calls the
//! backend with ids rewritten into the caller's namespace, and rewrites the answer back.

pub mod all_docs;
pub mod attachment;
pub mod bulk_docs;
pub mod bulk_get;
pub mod changes;
pub mod db;
pub mod doc;
pub mod find;
pub mod index;
pub mod local;
pub mod revs_diff;
pub mod session;
pub mod stubs;

use crate::body::{self, read_json, TimedBody};
use crate::error::{Error, Result};
use crate::state::State;
use bytes::Bytes;
use http::{HeaderMap, Method};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A request as handlers see it: method, headers, decoded query and the unread body (whose
/// pauses are bounded by `body_timeout`).
pub struct Req {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
    pub body: TimedBody<Incoming>,
    pub max_body: u64,
}

impl Req {
    pub fn new(
        parts: http::request::Parts,
        body: Incoming,
        max_body: u64,
        body_timeout: Duration,
    ) -> Result<Req> {
        if let Some(len) = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > max_body {
                return Err(Error::TooLarge(format!(
                    "the request body is larger than {max_body} bytes"
                )));
            }
        }
        let raw_query = parts.uri.query().unwrap_or("");
        crate::routing::check_escapes(raw_query)?;
        Ok(Req {
            method: parts.method,
            query: Query::parse(raw_query),
            headers: parts.headers,
            body: TimedBody::new(body, body_timeout),
            max_body,
        })
    }

    /// The body as JSON (content type, size and syntax checked).
    pub async fn json(self) -> Result<Value> {
        read_json(&self.headers, self.body, self.max_body).await
    }

    /// The body as bytes, size checked and `Content-Encoding` undone.
    pub async fn bytes(self) -> Result<Bytes> {
        body::read_request(&self.headers, self.body, self.max_body).await
    }

    /// The body for forwarding as it comes, bounded to the size limit.
    ///
    /// A body without `Content-Length`, or with one of at most [`UPLOAD_PREFETCH`] bytes, is
    /// first read up to that size. One that ends there (most do) is sent whole, with its
    /// length; one over the limit there, or cut short (a stall, a disconnect), is refused
    /// before the backend sees a byte, since a backend may store what it got of an upload cut
    /// short (PouchDB Server does). A longer one streams on; [`Upload::cut`] says whether the
    /// limit (413) or a stall (408) cut it off, and the backend then sees a failed upload.
    pub async fn upload(self) -> Result<Upload> {
        use http_body_util::BodyExt;
        let limit = self.max_body;
        let cut = Arc::new(Cut {
            limit,
            too_large: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
        });
        let mut body = self.body;
        let mut prefix = bytes::BytesMut::new();
        let announced = self
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_none_or(|n| n <= UPLOAD_PREFETCH) {
            let prefetch = UPLOAD_PREFETCH.min(limit.saturating_add(1));
            while (prefix.len() as u64) < prefetch {
                match body.frame().await {
                    None => {
                        let whole = prefix.freeze();
                        return Ok(Upload {
                            length: Some(whole.len() as u64),
                            body: body::full(whole),
                            cut,
                            progress: Arc::default(),
                        });
                    }
                    Some(Err(e)) => return Err(body::read_error(&e, limit)),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            prefix.extend_from_slice(&data);
                        }
                    }
                }
            }
            if prefix.len() as u64 > limit {
                return Err(Error::TooLarge(format!(
                    "the request body is larger than {limit} bytes"
                )));
            }
        }
        let rest_limit = usize::try_from(limit - prefix.len() as u64).unwrap_or(usize::MAX);
        let flag = Arc::clone(&cut);
        let rest = http_body_util::Limited::new(body, rest_limit).map_err(move |e| {
            if e.is::<http_body_util::LengthLimitError>() {
                flag.too_large.store(true, Ordering::Relaxed);
            } else if e.is::<body::BodyTimeout>() {
                flag.timed_out.store(true, Ordering::Relaxed);
            }
            e
        });
        let head = futures_util::stream::iter(
            (!prefix.is_empty()).then(|| Ok(hyper::body::Frame::data(prefix.freeze()))),
        );
        let tail = http_body_util::BodyStream::new(rest);
        let progress = Arc::new(crate::backend::Progress::default());
        let moved = Arc::clone(&progress);
        let stream = futures_util::StreamExt::inspect(
            futures_util::StreamExt::chain(head, tail),
            move |_| moved.tick(),
        );
        Ok(Upload {
            body: body::boxed(http_body_util::StreamBody::new(stream)),
            length: None,
            cut,
            progress,
        })
    }
}

/// How much of a body without `Content-Length` is read before anything is forwarded.
pub const UPLOAD_PREFETCH: u64 = 1024 * 1024;

/// A request body ready to forward; see [`Req::upload`].
pub struct Upload {
    pub body: body::Body,
    /// Known when the whole body was read before forwarding.
    pub length: Option<u64>,
    /// Whether the stream was cut off, and why.
    pub cut: Arc<Cut>,
    /// When the backend last took a piece of it.
    pub progress: Arc<crate::backend::Progress>,
}

/// Why a streamed upload was cut off, if it was.
#[derive(Debug)]
pub struct Cut {
    limit: u64,
    too_large: AtomicBool,
    timed_out: AtomicBool,
}

impl Cut {
    /// The client's error when the stream was cut off: 413 or 408.
    pub fn error(&self) -> Option<Error> {
        if self.too_large.load(Ordering::Relaxed) {
            Some(Error::TooLarge(format!(
                "the request body is larger than {} bytes",
                self.limit
            )))
        } else if self.timed_out.load(Ordering::Relaxed) {
            Some(Error::RequestTimeout(
                "the request body stopped arriving".into(),
            ))
        } else {
            None
        }
    }
}

/// A decoded query string.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Query {
        Query(
            url::form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key).map(|v| parse_bool(key, v)).transpose()
    }

    pub fn flag(&self, key: &str) -> Result<bool> {
        Ok(self.bool(key)?.unwrap_or(false))
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Error::bad_request(format!(
                        "Invalid value for {key}: must be a non-negative integer"
                    ))
                })
            })
            .transpose()
    }

    /// A JSON-valued parameter (`startkey`, `keys`, `open_revs`, ...).
    pub fn json(&self, key: &str) -> Result<Option<Value>> {
        self.get(key)
            .map(|v| {
                serde_json::from_str(v).map_err(|_| {
                    Error::bad_request(format!("Invalid JSON in query parameter {key}"))
                })
            })
            .transpose()
    }
}

pub fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::bad_request(format!(
            "Invalid boolean parameter {key}: must be true or false"
        ))),
    }
}

/// A JSON body member or query parameter read as a boolean, whichever is given.
pub fn bool_of(v: &Value, key: &str) -> Result<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) => parse_bool(key, s).map(Some),
        _ => Err(Error::bad_request(format!("{key} must be a boolean"))),
    }
}

/// Request bodies of at least this many bytes are parsed, checked and rebuilt on the blocking
/// pool: that work is linear, but on a large body it would still hold a runtime thread (and
/// every connection waiting on it) for milliseconds.
pub const OFFLOAD_BYTES: usize = 256 * 1024;

/// Runs `f`, pure work over a request body of `len` bytes, on the blocking pool when the body
/// is large, else right here.
pub async fn offload<T, F>(len: usize, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    if len < OFFLOAD_BYTES {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("parsing a request body failed: {e}")))?
}

/// The `(backing id, revision)` pairs among `revs()` (revisions per backing id) that the
/// documents' revision trees lack. Asked before a `latest=true` read of given revisions:
/// PouchDB Server's process dies on such a read of a revision its tree lacks, taking every
/// user down. CouchDB answers those reads itself, so it is not asked (the set is empty, and
/// `revs` is not built).
pub async fn unknown_revs(
    st: &State,
    revs: impl FnOnce() -> Map<String, Value>,
) -> Result<HashSet<(String, String)>> {
    if st.backend.is_couchdb().await {
        return Ok(HashSet::new());
    }
    let revs = revs();
    if revs.is_empty() {
        return Ok(HashSet::new());
    }
    let url = st.backend.db_url("/_revs_diff");
    let mut unknown = HashSet::new();
    for chunk in map_chunks(revs, REVS_DIFF_CHUNK) {
        let (_, answer) = st
            .backend
            .json(Method::POST, &url, Some(&Value::Object(chunk)))
            .await?;
        if let Value::Object(ids) = answer {
            for (id, diff) in ids {
                for rev in diff["missing"].as_array().into_iter().flatten() {
                    if let Some(rev) = rev.as_str() {
                        unknown.insert((id.clone(), rev.to_owned()));
                    }
                }
            }
        }
    }
    Ok(unknown)
}

/// Document ids per backend `_revs_diff` request.
pub const REVS_DIFF_CHUNK: usize = 1000;

/// `map` split into maps of at most `n` members, in order: a keys list forwarded in bounded
/// backend requests.
pub fn map_chunks(map: Map<String, Value>, n: usize) -> Vec<Map<String, Value>> {
    let mut out: Vec<Map<String, Value>> = Vec::new();
    for (k, v) in map {
        match out.last_mut() {
            Some(last) if last.len() < n => {
                last.insert(k, v);
            }
            _ => out.push(Map::from_iter([(k, v)])),
        }
    }
    out
}

/// Copies the named headers from a backend response onto ours.
pub fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, names: &[http::HeaderName]) {
    for name in names {
        for v in from.get_all(name) {
            to.append(name.clone(), v.clone());
        }
    }
}

/// A random 32-hex-digit id, as CouchDB generates them.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// CouchDB's 405 for a method an endpoint does not serve.
pub fn only(method: &Method, allowed: &[Method]) -> Result<()> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(not_allowed(allowed))
    }
}

/// The 405 error naming the methods an endpoint serves.
pub fn not_allowed(allowed: &[Method]) -> Error {
    let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    Error::MethodNotAllowed(format!("Only {} allowed", names.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_split_into_bounded_chunks_in_order() {
        let map: Map<String, Value> = (0..5).map(|i| (format!("k{i}"), Value::from(i))).collect();
        let chunks = map_chunks(map.clone(), 2);
        assert_eq!(chunks.iter().map(Map::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(chunks.into_iter().flatten().collect::<Map<_, _>>(), map);
        assert!(map_chunks(Map::new(), 2).is_empty());
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse("a=1&b=%22x%22&a=2&flag=true&bad=yes");
        assert_eq!(q.get("a"), Some("2"));
        assert_eq!(q.json("b").unwrap(), Some(Value::String("x".into())));
        assert_eq!(q.bool("flag").unwrap(), Some(true));
        assert!(q.bool("bad").is_err());
        assert!(q.u64("a").unwrap() == Some(2));
        assert!(Query::parse("since[]=1").get("since").is_none());
    }

    #[test]
    fn methods() {
        assert!(only(&Method::GET, &[Method::GET]).is_ok());
        let e = only(&Method::PATCH, &[Method::GET, Method::HEAD]).unwrap_err();
        assert_eq!(e.status(), 405);
        assert_eq!(e.reason(), "Only GET,HEAD allowed");
    }
}
