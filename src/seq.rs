//! The sequence tokens couchgate hands to clients as `seq`, `last_seq` and `update_seq`.
//!
//! A backend sequence must never reach a client as it is: CouchDB's `"12-g1AA..."` and PouchDB
//! Server's integers count every change of the *shared* database, so they would let a user count
//! other users' writes. couchgate therefore wraps each backend sequence with deterministic
//! authenticated encryption (AES-SIV) under a key every instance of a deployment derives from the
//! same secret: any instance, before or after a restart, can open a token issued by another,
//! and a client can neither read nor forge one.
//!
//! Backend sequences stay opaque JSON values: they are stored and sent back verbatim, never
//! parsed, compared or incremented. A `since` that is not a token of ours (another deployment's,
//! a tampered one, garbage) falls back to the beginning of the feed: replaying is always safe for
//! replication, skipping never is.

use aes_siv::aead::{Aead, KeyInit};
use aes_siv::{Aes256SivAead, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha512};

/// Where a client wants a feed to start.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// From the beginning.
    Zero,
    /// From the current end of the feed.
    Now,
    /// After this backend sequence.
    Backend(Value),
}

/// Seals and opens sequence tokens.
pub struct SeqCodec {
    cipher: Aes256SivAead,
}

impl std::fmt::Debug for SeqCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeqCodec")
    }
}

impl SeqCodec {
    /// A codec whose key is derived from `secret`; equal secrets give interchangeable tokens.
    pub fn new(secret: &[u8]) -> Self {
        let mut h = Sha512::new();
        h.update(b"couchgate sequence token key v1\0");
        h.update(secret);
        let key = h.finalize();
        SeqCodec {
            cipher: Aes256SivAead::new(&key),
        }
    }

    /// The token for a backend sequence.
    pub fn seal(&self, backend_seq: &Value) -> String {
        let plain = backend_seq.to_string();
        let sealed = self
            .cipher
            .encrypt(&Nonce::default(), plain.as_bytes())
            .expect("AES-SIV encryption of an in-memory buffer cannot fail");
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The backend sequence inside a token of ours, if it is one.
    pub fn open(&self, token: &str) -> Option<Value> {
        let sealed = URL_SAFE_NO_PAD.decode(token).ok()?;
        let plain = self
            .cipher
            .decrypt(&Nonce::default(), sealed.as_slice())
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// Interprets a client's `since`, from a query string (raw text) or a JSON body (value).
    pub fn since(&self, raw: &Value) -> Since {
        match raw {
            Value::Null => Since::Zero,
            Value::String(s) if s == "now" => Since::Now,
            Value::String(s) if s == "0" || s.is_empty() => Since::Zero,
            Value::String(s) => self.open(s).map_or(Since::Zero, Since::Backend),
            _ => Since::Zero,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_round_trip_across_codecs_with_the_same_secret() {
        let a = SeqCodec::new(b"s");
        let b = SeqCodec::new(b"s");
        for seq in [json!(17), json!("12-g1AAAAFTeJzLYWBg4M"), json!([3, "x"])] {
            let t = a.seal(&seq);
            assert_eq!(b.open(&t), Some(seq.clone()));
            assert_eq!(a.seal(&seq), t, "deterministic");
            assert!(!t.contains("12-g1"), "the backend sequence is not readable");
        }
    }

    #[test]
    fn foreign_or_garbage_since_replays_from_zero() {
        let a = SeqCodec::new(b"s");
        let other = SeqCodec::new(b"t");
        let t = other.seal(&json!(5));
        assert_eq!(a.since(&json!(t)), Since::Zero);
        assert_eq!(a.since(&json!("12-g1AAAA")), Since::Zero);
        assert_eq!(a.since(&json!(12)), Since::Zero);
        assert_eq!(a.since(&json!({"x": 1})), Since::Zero);
        assert_eq!(a.since(&json!("now")), Since::Now);
        assert_eq!(a.since(&json!("0")), Since::Zero);
        let mut tampered = a.seal(&json!(5)).into_bytes();
        tampered[3] ^= 1;
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(a.since(&json!(tampered)), Since::Zero);
        assert_eq!(a.since(&json!(a.seal(&json!(5)))), Since::Backend(json!(5)));
    }
}
