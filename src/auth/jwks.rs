//! Keys published at a JWKS URL: fetched over HTTPS (rustls), kept in memory, refreshed in the
//! background as the answer's `Cache-Control: max-age` asks (within bounds), and at once when a
//! token names an unknown `kid` (at most once per `--jwks-min-refresh-secs`). A failed fetch
//! keeps the keys already known. When the key set changes, verified tokens are forgotten, so a
//! withdrawn key stops working at once.

use super::keys::{parse_jwks, Key};
use super::token_cache::TokenCache;
use crate::body::{self, Body};
use crate::error::{Error, Result};
use http::{header, HeaderMap, Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, Validation};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Largest JWKS document read.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// Time a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds of the background refresh interval, and its value when the answer says nothing.
const MIN_PERIOD: Duration = Duration::from_secs(60);
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_PERIOD: Duration = Duration::from_secs(3600);
/// Wait before retrying a failed background fetch.
const RETRY: Duration = Duration::from_secs(30);

/// The keys of one JWKS URL.
pub struct Jwks {
    url: String,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    keys: RwLock<Arc<Vec<Arc<Key>>>>,
    /// Digest of the last key set loaded, to notice changes.
    loaded: Mutex<Option<[u8; 32]>>,
    base: Validation,
    allowed: Vec<Algorithm>,
    min_refresh: Duration,
    last_kid_refresh: Mutex<Option<Instant>>,
    /// Held while fetching: one fetch at a time, and a way to wait for the current one.
    fetching: Arc<tokio::sync::Mutex<()>>,
    tokens: Arc<TokenCache>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    pub fn new(
        url: &str,
        base: &Validation,
        allowed: &[Algorithm],
        min_refresh: Duration,
        tokens: Arc<TokenCache>,
    ) -> Result<Jwks> {
        let connector = crate::backend::https_connector()?;
        Ok(Jwks {
            url: url.to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            keys: RwLock::new(Arc::new(Vec::new())),
            loaded: Mutex::new(None),
            base: base.clone(),
            allowed: allowed.to_vec(),
            min_refresh,
            last_kid_refresh: Mutex::new(None),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            tokens,
        })
    }

    /// The keys known now.
    pub fn keys(&self) -> Arc<Vec<Arc<Key>>> {
        Arc::clone(
            &self
                .keys
                .read()
                .expect("never poisoned: no panics under the lock"),
        )
    }

    /// Keeps the keys fresh for as long as the runtime runs. The first fetch holds the fetch
    /// lock from now on, so a request arriving meanwhile waits for it.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let mut first = Arc::clone(&self.fetching).try_lock_owned().ok();
        tokio::spawn(async move {
            loop {
                let fetched = match first.take() {
                    Some(guard) => me.fetch_locked(guard).await,
                    None => me.fetch().await,
                };
                let wait = match fetched {
                    Ok(max_age) => period(max_age),
                    Err(e) => {
                        tracing::warn!(url = %me.url, error = %e.reason(), "cannot fetch JWKS keys");
                        RETRY
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// For a token whose `kid` is unknown: fetches again unless that was done less than
    /// `min_refresh` ago, in which case it waits for a fetch in progress, if any. Before the
    /// first successful fetch, it first waits for the one in progress.
    pub async fn refresh_for_unknown_kid(&self) {
        if !self.ever_loaded() {
            drop(self.fetching.lock().await);
            if self.ever_loaded() {
                return;
            }
        }
        let allowed = {
            let mut last = self
                .last_kid_refresh
                .lock()
                .expect("never poisoned: no panics under the lock");
            match *last {
                Some(t) if t.elapsed() < self.min_refresh => false,
                _ => {
                    *last = Some(Instant::now());
                    true
                }
            }
        };
        if allowed {
            if let Err(e) = self.fetch().await {
                tracing::warn!(url = %self.url, error = %e.reason(), "cannot fetch JWKS keys");
            }
        } else {
            drop(self.fetching.lock().await);
        }
    }

    fn ever_loaded(&self) -> bool {
        self.loaded
            .lock()
            .expect("never poisoned: no panics under the lock")
            .is_some()
    }

    /// Fetches the key set; the answer's `max-age`, if it gives one.
    async fn fetch(&self) -> Result<Option<Duration>> {
        let guard = Arc::clone(&self.fetching).lock_owned().await;
        self.fetch_locked(guard).await
    }

    async fn fetch_locked(
        &self,
        _one_at_a_time: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<Option<Duration>> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(&self.url)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("couchgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(body::empty())
            .map_err(|_| Error::Internal("bad JWKS URL".into()))?;
        let resp = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| Error::BackendTimeout("the JWKS URL did not answer in time".into()))?
            .map_err(|e| Error::BackendUnavailable(format!("JWKS request failed: {e}")))?;
        if resp.status() != StatusCode::OK {
            return Err(Error::BadGateway(format!(
                "the JWKS URL answered {}",
                resp.status()
            )));
        }
        let max_age = max_age(resp.headers());
        let bytes = tokio::time::timeout(
            FETCH_TIMEOUT,
            body::read_limited(resp.into_body(), MAX_JWKS_BYTES),
        )
        .await
        .map_err(|_| Error::BackendTimeout("the JWKS answer took too long".into()))?
        .map_err(|_| Error::BadGateway("the JWKS answer is too large or cut off".into()))?;
        let set: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| Error::BadGateway("the JWKS answer is not JSON".into()))?;
        let Some(list) = set.get("keys").filter(|k| k.is_array()) else {
            return Err(Error::BadGateway("the JWKS answer has no `keys`".into()));
        };
        let digest: [u8; 32] = Sha256::digest(list.to_string().as_bytes()).into();
        let mut loaded = self
            .loaded
            .lock()
            .expect("never poisoned: no panics under the lock");
        if *loaded != Some(digest) {
            let keys: Vec<Arc<Key>> = parse_jwks(&set, false)
                .into_iter()
                .filter_map(|p| Key::new(p.kid, p.key, &p.algorithms, &self.allowed, &self.base))
                .map(Arc::new)
                .collect();
            tracing::info!(url = %self.url, keys = keys.len(), "JWKS keys loaded");
            *self
                .keys
                .write()
                .expect("never poisoned: no panics under the lock") = Arc::new(keys);
            *loaded = Some(digest);
            self.tokens.clear();
        }
        Ok(max_age)
    }
}

/// `max-age` of a `Cache-Control` header (`no-cache`/`no-store`: zero).
pub fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let cc = headers.get(header::CACHE_CONTROL)?.to_str().ok()?;
    for d in cc.split(',').map(str::trim) {
        if d.eq_ignore_ascii_case("no-cache") || d.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
    }
    cc.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|v| v.trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The background refresh interval for an answer's `max-age`.
pub fn period(max_age: Option<Duration>) -> Duration {
    max_age
        .unwrap_or(DEFAULT_PERIOD)
        .clamp(MIN_PERIOD, MAX_PERIOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_headers_set_the_refresh_period() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CACHE_CONTROL, v.parse().unwrap());
            m
        };
        assert_eq!(
            max_age(&h("public, max-age=7200")),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(max_age(&h("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(&HeaderMap::new()), None);
        assert_eq!(period(Some(Duration::from_secs(7200))).as_secs(), 7200);
        assert_eq!(period(Some(Duration::from_secs(15))), MIN_PERIOD);
        assert_eq!(period(Some(Duration::from_secs(1 << 30))), MAX_PERIOD);
        assert_eq!(period(None), DEFAULT_PERIOD);
    }
}
