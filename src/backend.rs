//! The pooled HTTP client towards the backing CouchDB and its shared database.
//!
//! Credentials come from the configured URL, are sent as a precomputed `Authorization` header and
//! never logged. Every request has a deadline for the backend's response head; failures become
//! 503 (unreachable), 504 (too slow) or 502 (not speaking CouchDB), and CouchDB errors are
//! passed on with their status.

use crate::body::{self, Body};
use crate::config::Config;
use crate::error::{Error, Result};
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Everything but RFC 3986 unreserved characters is escaped in path segments and query values.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The reason given for URLs too long for CouchDB.
pub const URL_TOO_LONG: &str = "the request URL is too long";

/// Longest request target (path and query) couchgate accepts: CouchDB's own HTTP layer reads
/// request lines of at most 8 KiB.
pub const MAX_URL_BYTES: usize = 8150;

/// Most bytes of a backend JSON answer couchgate will buffer.
const MAX_JSON_RESPONSE: u64 = 512 * 1024 * 1024;

pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The path segment(s) of a backing document id: `_local/` and `_design/` keep their slash,
/// as CouchDB routes them by it.
pub fn encode_doc_id(id: &str) -> String {
    for prefix in ["_local/", "_design/"] {
        if let Some(rest) = id.strip_prefix(prefix) {
            return format!("{prefix}{}", encode_component(rest));
        }
    }
    encode_component(id)
}

/// Builds a query string from pairs, escaping each value.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(&encode_component(k));
        out.push('=');
        out.push_str(&encode_component(&v));
    }
    out
}

/// An HTTP(S) connector trusting the system's root certificates, with a connect timeout.
pub fn https_connector() -> Result<HttpsConnector<HttpConnector>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| Error::Internal(format!("loading TLS roots: {e}")))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The backing CouchDB.
#[derive(Clone)]
pub struct Backend {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// Scheme, authority and base path, without credentials and trailing slash.
    base: String,
    /// URL path of the shared database, with leading slash.
    db_path: String,
    auth: Option<HeaderValue>,
    timeout: Duration,
    /// Whether the backend is CouchDB itself; see [`Backend::is_couchdb`].
    couchdb: std::sync::Arc<std::sync::OnceLock<bool>>,
    /// Whether the shared database is partitioned; see [`Backend::is_partitioned`].
    partitioned: std::sync::Arc<std::sync::OnceLock<bool>>,
    /// Create the shared database partitioned (`--partitioned`).
    create_partitioned: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").finish_non_exhaustive()
    }
}

impl Backend {
    pub fn new(url: &str, config: &Config) -> Result<Backend> {
        let mut url = url::Url::parse(url).map_err(|_| Error::bad_request("bad backend URL"))?;
        let auth = if url.username().is_empty() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let user = decode(url.username());
            let pass = decode(url.password().unwrap_or(""));
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|_| Error::bad_request("bad backend credentials"))?;
            value.set_sensitive(true);
            Some(value)
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let base = url.as_str().trim_end_matches('/').to_string();

        let connector = https_connector()?;
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.backend_pool_idle)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Backend {
            client,
            base,
            db_path: format!("/{}", encode_component(&config.database)),
            auth,
            timeout: config.backend_timeout,
            couchdb: Default::default(),
            partitioned: Default::default(),
            create_partitioned: config.partitioned,
        })
    }

    /// Whether the backend is CouchDB itself (its welcome says so), learnt from its first
    /// answer. Other CouchDB-compatible servers (PouchDB Server) get some requests checked
    /// against the database first; a backend that has not answered yet counts as one of them.
    pub async fn is_couchdb(&self) -> bool {
        if let Some(known) = self.couchdb.get() {
            return *known;
        }
        match self.json(Method::GET, &self.server_url("/"), None).await {
            Ok((_, welcome)) => *self.couchdb.get_or_init(|| welcome["couchdb"] == "Welcome"),
            Err(_) => false,
        }
    }

    /// Whether the shared database is a partitioned one (its `props` say so), learnt once.
    pub async fn is_partitioned(&self) -> Result<bool> {
        if let Some(known) = self.partitioned.get() {
            return Ok(*known);
        }
        let (_, info) = self.json(Method::GET, &self.db_url(""), None).await?;
        Ok(*self
            .partitioned
            .get_or_init(|| info["props"]["partitioned"] == true))
    }

    /// The usual deadline for a response head.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// URL of `path` (starting with `/`, already escaped) inside the shared database.
    pub fn db_url(&self, path: &str) -> String {
        [self.base.as_str(), self.db_path.as_str(), path].concat()
    }

    /// URL of a server-level path (starting with `/`, already escaped).
    pub fn server_url(&self, path: &str) -> String {
        [self.base.as_str(), path].concat()
    }

    /// A request builder with credentials set.
    pub fn request(&self, method: Method, url: &str) -> http::request::Builder {
        let mut b = Request::builder().method(method).uri(url);
        if let Some(auth) = &self.auth {
            b = b.header(header::AUTHORIZATION, auth.clone());
        }
        b
    }

    /// Sends a request whose body streams from a client: however long the upload takes, it
    /// fails only once `progress` has seen no piece of the body taken, and then no answer,
    /// for `timeout`.
    pub async fn send_streamed(
        &self,
        req: Request<Body>,
        progress: &Progress,
        timeout: Duration,
    ) -> Result<Response<Incoming>> {
        // Bounded by the watchdog below rather than by a total.
        let send = self.send(req, Duration::from_secs(365 * 24 * 3600));
        tokio::pin!(send);
        loop {
            let idle = progress.idle();
            if idle >= timeout {
                return Err(Error::BackendTimeout(format!(
                    "the backend took no part of the upload, and gave no answer, for {} s",
                    timeout.as_secs()
                )));
            }
            if let Ok(answer) = tokio::time::timeout(timeout - idle, &mut send).await {
                return answer;
            }
        }
    }

    /// Sends a request and waits at most `timeout` for the response head.
    pub async fn send(&self, req: Request<Body>, timeout: Duration) -> Result<Response<Incoming>> {
        crate::access_log::note_upstream();
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(Error::BackendTimeout(format!(
                "the backend did not answer within {} s",
                timeout.as_secs()
            ))),
            Ok(Err(e)) if e.is_connect() => Err(Error::BackendUnavailable(
                "the backend database server cannot be reached".into(),
            )),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "backend request failed");
                Err(Error::BadGateway("the backend connection failed".into()))
            }
            // CouchDB's HTTP layer refuses a request line longer than it reads (about 8 KiB)
            // with a bare 400, before any CouchDB code runs: the client's URL was too long.
            Ok(Ok(resp))
                if resp.status() == StatusCode::BAD_REQUEST
                    && !resp.headers().contains_key(header::CONTENT_TYPE) =>
            {
                Err(Error::bad_request(URL_TOO_LONG))
            }
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Sends a JSON request (or none) and reads a JSON answer; CouchDB errors become [`Error`].
    pub async fn json(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        self.json_with_timeout(method, url, body, self.timeout)
            .await
    }

    pub async fn json_with_timeout(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(StatusCode, Value)> {
        let (status, value) = self.json_any_status(method, url, body, timeout).await?;
        if status.is_success() {
            Ok((status, value))
        } else {
            Err(backend_error(status, &value))
        }
    }

    /// Like [`Backend::json`], but a CouchDB error answer is returned as it is.
    pub async fn json_any_status(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(StatusCode, Value)> {
        let body =
            body.map(|v| serde_json::to_vec(v).expect("a serde_json::Value always serialises"));
        let (status, bytes) = self.exchange(method, url, body, timeout).await?;
        Ok((status, parse_json(&bytes)?))
    }

    /// Sends a JSON text (or no body) and returns the text of a successful answer, unparsed,
    /// for a caller that rewrites it without building a tree; CouchDB errors become [`Error`].
    pub async fn json_text(&self, method: Method, url: &str, body: Vec<u8>) -> Result<Bytes> {
        let (status, bytes) = self.exchange(method, url, Some(body), self.timeout).await?;
        if !status.is_success() {
            return Err(backend_error(status, &parse_json(&bytes)?));
        }
        Ok(bytes)
    }

    /// One JSON request and its whole answer.
    async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes)> {
        let mut b = self
            .request(method, url)
            .header(header::ACCEPT, "application/json");
        let body = match body {
            Some(text) => {
                b = b.header(header::CONTENT_TYPE, "application/json");
                body::full(text)
            }
            None => body::empty(),
        };
        let req = b
            .body(body)
            .map_err(|e| Error::Internal(format!("building a backend request: {e}")))?;
        let resp = self.send(req, timeout).await?;
        let status = resp.status();
        Ok((status, self.read(resp.into_body(), timeout).await?))
    }

    /// Reads a whole backend body, bounded in size and time.
    pub async fn read(&self, body: Incoming, timeout: Duration) -> Result<Bytes> {
        self.read_capped(body, timeout, MAX_JSON_RESPONSE)
            .await?
            .ok_or_else(|| Error::BadGateway("the backend answer is too large".into()))
    }

    /// Reads a whole backend body of at most `cap` bytes in `timeout`; `None` when it is
    /// longer.
    pub async fn read_capped(
        &self,
        body: Incoming,
        timeout: Duration,
        cap: u64,
    ) -> Result<Option<Bytes>> {
        match tokio::time::timeout(timeout, body::read_limited(body, cap)).await {
            Err(_) => Err(Error::BackendTimeout(
                "the backend stopped sending its answer".into(),
            )),
            Ok(Err(Error::TooLarge(_))) => Ok(None),
            Ok(Err(_)) => Err(Error::BadGateway("the backend answer was cut off".into())),
            Ok(Ok(b)) => Ok(Some(b)),
        }
    }

    /// Creates the shared database unless it exists. A backend that is down, slow or failing
    /// (a backend fault, not a refusal) is retried with backoff for up to `wait`: a CouchDB
    /// still starting beside couchgate, or a loaded one, is not a reason to exit.
    pub async fn ensure_database(&self, wait: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        loop {
            let create = if self.create_partitioned {
                self.db_url("?partitioned=true")
            } else {
                self.db_url("")
            };
            let e = match self.json(Method::PUT, &create, None).await {
                Ok(_) => return Ok(()),
                Err(e) if e.status() == StatusCode::PRECONDITION_FAILED => return Ok(()),
                Err(e) => e,
            };
            let now = tokio::time::Instant::now();
            if e.fault() != crate::error::Fault::Backend || now + pause > deadline {
                return Err(e);
            }
            tracing::warn!(error = %e.reason(), retry_in = ?pause, "backend not ready");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// When a streamed request body last moved: each piece the backend takes is a
/// [`Progress::tick`] (see [`Backend::send_streamed`]).
#[derive(Debug)]
pub struct Progress {
    start: std::time::Instant,
    /// Milliseconds from `start` to the last tick.
    last: std::sync::atomic::AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            start: std::time::Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Progress {
    pub fn tick(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since the last tick.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Most bytes of one backend `_changes` page of several rows: a larger answer is asked again
/// with half the rows, down to a single row (which may take up to [`MAX_JSON_RESPONSE`]).
pub const FEED_PAGE_BYTES: u64 = 16 * 1024 * 1024;

/// One page of a backend `_changes` answer: its rows, the sequence it ends at, and how many
/// rows were asked for (fewer rows than that: the feed had no more).
#[derive(Debug)]
pub struct ChangesPage<R> {
    pub rows: Vec<R>,
    pub last_seq: Value,
    pub asked: usize,
}

impl<R> ChangesPage<R> {
    /// Whether the page reaches the feed's end (it was not cut at the page size): it holds
    /// every change committed before it was asked for.
    pub fn is_last(&self) -> bool {
        self.rows.len() < self.asked
    }
}

/// A backend `_changes` answer, read into rows of the caller's choosing.
#[derive(Deserialize)]
struct FeedAnswer<R> {
    results: Vec<R>,
    #[serde(default)]
    last_seq: Value,
}

/// One row of the shared feed, read without parsing what belongs to others: a filter looks at
/// the `id` of every row and parses `changes` only of its own.
#[derive(Debug, Deserialize)]
pub struct FeedRow {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub seq: Value,
    #[serde(default)]
    pub deleted: bool,
    pub changes: Option<Box<serde_json::value::RawValue>>,
}

impl Backend {
    /// Reads one page of at most `limit` rows of the shared database's `_changes` after
    /// `since` (an opaque backend sequence, sent back exactly as the backend gave it), with
    /// further query parameters. Rows are read as `R`, with serde_json's own nesting limit:
    /// `R` must not parse documents (use [`FeedRow`] or ask for no documents).
    pub async fn changes_page<R: serde::de::DeserializeOwned>(
        &self,
        since: &Value,
        limit: usize,
        params: &[(&str, String)],
        doc_ids: Option<&Value>,
        timeout: Duration,
    ) -> Result<ChangesPage<R>> {
        let since_text = match since {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut limit = limit.max(1);
        loop {
            let mut q = vec![("since", since_text.clone()), ("limit", limit.to_string())];
            q.extend(params.iter().cloned());
            let (method, body) = match doc_ids {
                Some(ids) => {
                    q.push(("filter", "_doc_ids".into()));
                    let body = serde_json::to_vec(&serde_json::json!({ "doc_ids": ids }))?;
                    (Method::POST, body::full(body))
                }
                None => (Method::GET, body::empty()),
            };
            let url = self.db_url(&format!("/_changes{}", query_string(q)));
            let mut b = self
                .request(method.clone(), &url)
                .header(header::ACCEPT, "application/json");
            if method == Method::POST {
                b = b.header(header::CONTENT_TYPE, "application/json");
            }
            let req = b
                .body(body)
                .map_err(|e| Error::Internal(format!("building a backend request: {e}")))?;
            let resp = self.send(req, timeout).await?;
            let status = resp.status();
            let cap = if limit == 1 {
                MAX_JSON_RESPONSE
            } else {
                FEED_PAGE_BYTES
            };
            let Some(bytes) = self.read_capped(resp.into_body(), timeout, cap).await? else {
                limit /= 2;
                continue;
            };
            if !status.is_success() {
                return Err(backend_error(status, &parse_json(&bytes)?));
            }
            let answer: FeedAnswer<R> = serde_json::from_slice(&bytes)
                .map_err(|_| Error::BadGateway("_changes answer without results".into()))?;
            let last_seq = Some(answer.last_seq)
                .filter(|v| !v.is_null())
                .unwrap_or_else(|| since.clone());
            return Ok(ChangesPage {
                rows: answer.results,
                last_seq,
                asked: limit,
            });
        }
    }
}

/// A backend answer as JSON, as deep as a stored document inside an answer's envelope gets.
pub fn parse_json(bytes: &[u8]) -> Result<Value> {
    crate::json::parse_within(bytes, crate::json::BACKEND_MAX_DEPTH)
        .map_err(|_| Error::BadGateway("the backend answered something that is not JSON".into()))
}

/// The [`Error`] for a backend's non-success answer.
pub fn backend_error(status: StatusCode, body: &Value) -> Error {
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or(match status.as_u16() {
            400 => "bad_request",
            404 => "not_found",
            409 => "conflict",
            412 => "precondition_failed",
            413 => "too_large",
            415 => "bad_content_type",
            416 => "requested_range_not_satisfiable",
            _ => "unknown_error",
        })
        .to_owned();
    let reason = body
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match status.as_u16() {
        503 => Error::BackendUnavailable(format!("the backend is unavailable: {reason}")),
        504 => Error::BackendTimeout(format!("the backend timed out: {reason}")),
        s if s >= 500 => Error::BadGateway(format!("the backend failed: {error}: {reason}")),
        // Authentication problems are couchgate's own configuration, not the client's.
        401 | 403 if error == "unauthorized" || error == "forbidden" => {
            tracing::error!(%status, "the backend refused couchgate's credentials");
            Error::BadGateway("the backend refused couchgate's credentials".into())
        }
        _ => Error::Backend {
            status,
            error,
            reason,
        },
    }
}

/// The backend query parameters asking for document bodies and their parts, shared by
/// `_all_docs`, `_changes` and the batched reads behind them.
pub fn doc_flags(
    include_docs: bool,
    conflicts: bool,
    attachments: bool,
    att_encoding_info: bool,
) -> Vec<(&'static str, String)> {
    [
        ("include_docs", include_docs),
        ("conflicts", conflicts),
        ("attachments", attachments),
        ("att_encoding_info", att_encoding_info),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| (name, "true".to_owned()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_escaped_as_one_segment() {
        assert_eq!(encode_doc_id("a.b:_design/x y"), "a.b%3A_design%2Fx%20y");
        assert_eq!(encode_doc_id("_local/p:a/b"), "_local/p%3Aa%2Fb");
        assert_eq!(query_string([("k", "\"a&b\"".into())]), "?k=%22a%26b%22");
    }

    #[test]
    fn backend_errors_map_by_status() {
        let e = backend_error(
            StatusCode::CONFLICT,
            &json!({"error":"conflict","reason":"r"}),
        );
        assert_eq!((e.status().as_u16(), e.name()), (409, "conflict"));
        let e = backend_error(StatusCode::INTERNAL_SERVER_ERROR, &json!({}));
        assert_eq!(e.status().as_u16(), 502);
        let e = backend_error(StatusCode::UNAUTHORIZED, &json!({"error":"unauthorized"}));
        assert_eq!(e.status().as_u16(), 502);
    }
}
