//! Verified bearer tokens, remembered until they expire, so a token is checked once. Shared by
//! the JWT verifier and the JWKS refresher (which clears it when keys change).
//!
//! Keyed by the token itself: a lookup hashes it with the map's keyed hash and compares it
//! byte for byte, a tenth of the work of a SHA-256 digest per request (the profile in
//! `bench/profiles/`), and exact.

use super::Identity;
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most verified tokens remembered.
const CACHE_ENTRIES: usize = 50_000;
/// Most bytes of tokens remembered.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Verified tokens, with the second (Unix time) from which they are refused.
#[derive(Debug, Default)]
pub struct TokenCache {
    map: DashMap<Box<str>, (Identity, u64)>,
    /// Bytes of the tokens in `map` (an estimate under concurrent inserts: it bounds, it
    /// does not account).
    bytes: AtomicUsize,
}

impl TokenCache {
    pub fn get(&self, token: &str, now: u64) -> Option<Identity> {
        let hit = self.map.get(token)?;
        let (identity, until) = hit.value();
        (now < *until).then(|| identity.clone())
    }

    pub fn insert(&self, token: &str, identity: Identity, until: u64, now: u64) {
        let full = |c: &TokenCache| {
            c.map.len() >= CACHE_ENTRIES
                || c.bytes.load(Ordering::Relaxed) + token.len() > CACHE_BYTES
        };
        if full(self) {
            self.map.retain(|_, (_, u)| *u >= now);
            let left: usize = self.map.iter().map(|e| e.key().len()).sum();
            self.bytes.store(left, Ordering::Relaxed);
            if full(self) {
                self.clear();
            }
        }
        if self.map.insert(token.into(), (identity, until)).is_none() {
            self.bytes.fetch_add(token.len(), Ordering::Relaxed);
        }
    }

    pub fn clear(&self) {
        self.map.clear();
        self.bytes.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_remembered_exactly_until_they_expire() {
        let c = TokenCache::default();
        let id = Identity {
            user: "alice".into(),
            roles: vec![],
            method: super::super::AuthMethod::Jwt,
            expires: Some(100),
            service: None,
            renewed_cookie: None,
        };
        c.insert("a.b.c", id, 100, 10);
        assert_eq!(c.get("a.b.c", 99).map(|i| i.user), Some("alice".into()));
        assert!(c.get("a.b.c", 100).is_none(), "expired");
        assert!(c.get("a.b.d", 50).is_none(), "another token");
        c.clear();
        assert!(c.get("a.b.c", 50).is_none());
        assert_eq!(c.bytes.load(Ordering::Relaxed), 0);
    }
}
