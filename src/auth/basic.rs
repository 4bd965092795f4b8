//! Names and passwords (Basic auth and `POST /_session` with `name`/`password`), checked by the
//! backend: couchgate posts them to the backend's own `_session` (without its admin
//! credentials), which checks them against its `_users` database. Successes are remembered
//! briefly under a salted hash of name and password, so a client sending Basic auth on every
//! request costs the backend one check per cache lifetime.
//!
//! Sessions opened with a password are tied to the account's `_users` document
//! ([`Passwords::account`], read with the backend's admin credentials and remembered per name
//! for the same lifetime), so that deleting the account, changing its password or its roles
//! ends them.

use crate::backend::{self, encode_component, Backend};
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

/// A user's account as `_users` holds it now: what identifies its password (a digest of the
/// stored hash, salt and scheme; never sent anywhere) and its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub fingerprint: [u8; 32],
    pub roles: Vec<String>,
}

/// The members of a `_users` document that change with its password (CouchDB's and
/// PouchDB Server's schemes).
const CREDENTIAL_MEMBERS: &[&str] = &[
    "password_scheme",
    "pbkdf2_prf",
    "iterations",
    "derived_key",
    "salt",
    "password_sha",
];

impl Account {
    /// The account a `_users` document describes.
    pub fn of(doc: &Value) -> Account {
        let mut h = Sha256::new();
        h.update(b"couchgate account v1\0");
        let mut any = false;
        for member in CREDENTIAL_MEMBERS {
            if let Some(v) = doc.get(*member) {
                any = true;
                h.update(member.as_bytes());
                h.update([0]);
                h.update(v.to_string().as_bytes());
                h.update([0]);
            }
        }
        if !any {
            // No password hash to go by (a server of another kind): any change of the document
            // counts as a change of the credentials.
            h.update(doc["_rev"].to_string().as_bytes());
        }
        Account {
            fingerprint: h.finalize().into(),
            roles: crate::json::strings(&doc["roles"]),
        }
    }

    /// Whether a session holding `roles` still has exactly the account's roles.
    pub fn has_roles(&self, roles: &[String]) -> bool {
        let mut a: Vec<&String> = self.roles.iter().collect();
        let mut b: Vec<&String> = roles.iter().collect();
        a.sort();
        a.dedup();
        b.sort();
        b.dedup();
        a == b
    }
}

/// Checks names and passwords with the backend.
pub struct Passwords {
    backend: Backend,
    cache: DashMap<[u8; 32], (String, Vec<String>, Instant)>,
    /// Accounts read from `_users` (`None`: there is none), with when they were read.
    accounts: DashMap<String, (Option<Account>, Instant)>,
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
            accounts: DashMap::new(),
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

    /// How long a check is remembered.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The account `name` has in the backend's `_users` now (`None`: it has none), read at
    /// most once per cache lifetime.
    pub async fn account(&self, name: &str) -> Result<Option<Account>> {
        let now = Instant::now();
        if let Some(hit) = self.accounts.get(name) {
            let (account, read) = hit.value();
            if now.duration_since(*read) < self.ttl {
                return Ok(account.clone());
            }
        }
        let url = self.backend.server_url(&format!(
            "/_users/{}",
            encode_component(&format!("org.couchdb.user:{name}"))
        ));
        let account = match self.backend.json(Method::GET, &url, None).await {
            Ok((_, doc)) => Some(Account::of(&doc)),
            Err(e) if e.status() == StatusCode::NOT_FOUND => None,
            Err(e) => return Err(e),
        };
        if self.accounts.len() >= CACHE_ENTRIES {
            self.accounts.clear();
        }
        self.accounts
            .insert(name.to_owned(), (account.clone(), now));
        Ok(account)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_change_with_password_and_roles_only() {
        let doc = json!({
            "_id": "org.couchdb.user:ann", "_rev": "1-a", "name": "ann", "type": "user",
            "roles": ["b", "a"], "password_scheme": "pbkdf2", "iterations": 10,
            "derived_key": "00ff", "salt": "5a17",
        });
        let a = Account::of(&doc);
        assert!(a.has_roles(&["a".into(), "b".into()]));
        assert!(!a.has_roles(&["a".into()]));
        assert!(!a.has_roles(&["a".into(), "b".into(), "svc".into()]));
        let mut edited = doc.clone();
        edited["_rev"] = json!("2-b");
        edited["email"] = json!("ann@example.com");
        assert_eq!(Account::of(&edited), a, "other members do not matter");
        for (member, value) in [("derived_key", json!("00fe")), ("salt", json!("5a18"))] {
            let mut changed = doc.clone();
            changed[member] = value;
            assert_ne!(Account::of(&changed).fingerprint, a.fingerprint, "{member}");
        }
        // Without a password hash, any revision is another account.
        let plain = json!({"_rev": "1-a", "roles": []});
        let mut next = plain.clone();
        next["_rev"] = json!("2-b");
        assert_ne!(
            Account::of(&plain).fingerprint,
            Account::of(&next).fingerprint
        );
    }
}
