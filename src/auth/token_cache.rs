//! Verified bearer tokens, remembered by digest until they expire, so a token is checked once.
//! Shared by the JWT verifier and the JWKS refresher (which clears it when keys change).

use super::Identity;
use dashmap::DashMap;

/// Most verified tokens remembered.
const CACHE_ENTRIES: usize = 50_000;

/// Verified tokens by SHA-256, with the second (Unix time) from which they are refused.
#[derive(Debug, Default)]
pub struct TokenCache {
    map: DashMap<[u8; 32], (Identity, u64)>,
}

impl TokenCache {
    pub fn get(&self, digest: &[u8; 32], now: u64) -> Option<Identity> {
        let hit = self.map.get(digest)?;
        let (identity, until) = hit.value();
        (now < *until).then(|| identity.clone())
    }

    pub fn insert(&self, digest: [u8; 32], identity: Identity, until: u64, now: u64) {
        if self.map.len() >= CACHE_ENTRIES {
            self.map.retain(|_, (_, u)| *u >= now);
            if self.map.len() >= CACHE_ENTRIES {
                self.map.clear();
            }
        }
        self.map.insert(digest, (identity, until));
    }

    pub fn clear(&self) {
        self.map.clear();
    }
}
