//! Names and passwords (Basic auth and `POST /_session` with `name`/`password`), checked by the
//! backend: couchgate posts them to the backend's own `_session` (without its admin
//! credentials), which checks them against its `_users` database. Successes are remembered
//! briefly under a salted hash of name and password, so a client sending Basic auth on every
//! request costs the backend one check per cache lifetime.

use crate::backend::{self, Backend};
use crate::body;
use crate::error::{Error, Result};
use dashmap::DashMap;
use http::{header, Method, Request, StatusCode};
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// Most successful checks remembered.
const CACHE_ENTRIES: usize = 10_000;

/// Checks names and passwords with the backend.
pub struct Passwords {
    backend: Backend,
    cache: DashMap<[u8; 32], (String, Vec<String>, Instant)>,
    salt: [u8; 32],
    ttl: Duration,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// What a wrong name or password gets; the same for both, as CouchDB does.
pub fn wrong_password() -> Error {
    Error::Unauthorized("Name or password is incorrect.".into())
}

impl Passwords {
    pub fn new(backend: Backend, ttl: Duration) -> Passwords {
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        Passwords {
            backend,
            cache: DashMap::new(),
            salt,
            ttl,
        }
    }

    /// The user's name and roles when the backend accepts the password; `Unauthorized` when it
    /// does not.
    pub async fn check(&self, name: &str, password: &str) -> Result<(String, Vec<String>)> {
        if name.is_empty() {
            return Err(wrong_password());
        }
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let now = Instant::now();
        if let Some(hit) = self.cache.get(&digest) {
            let (user, roles, until) = hit.value();
            if now < *until {
                return Ok((user.clone(), roles.clone()));
            }
        }
        let (user, roles) = self.ask_backend(name, password).await?;
        if self.cache.len() >= CACHE_ENTRIES {
            self.cache.retain(|_, (_, _, until)| *until > now);
            if self.cache.len() >= CACHE_ENTRIES {
                self.cache.clear();
            }
        }
        self.cache
            .insert(digest, (user.clone(), roles.clone(), now + self.ttl));
        Ok((user, roles))
    }

    async fn ask_backend(&self, name: &str, password: &str) -> Result<(String, Vec<String>)> {
        let body = json!({"name": name, "password": password}).to_string();
        // Built by hand: the backend's admin credentials must not go with this request.
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.backend.server_url("/_session"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(body::full(body))
            .map_err(|e| Error::Internal(format!("building a _session request: {e}")))?;
        let timeout = self.backend.timeout();
        let resp = self.backend.send(req, timeout).await?;
        let status = resp.status();
        let bytes = self.backend.read(resp.into_body(), timeout).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(wrong_password());
        }
        let answer = backend::parse_json(&bytes)?;
        if !status.is_success() {
            return Err(backend::backend_error(status, &answer));
        }
        // PouchDB Server in admin party answers some requests for anybody with `name: null`;
        // only an answer naming this very user counts.
        if answer["ok"] != json!(true) || answer["name"].as_str() != Some(name) {
            return Err(wrong_password());
        }
        let roles = answer["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        Ok((name.to_owned(), roles))
    }
}
