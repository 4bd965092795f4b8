//! The sequence tokens couchgate hands to clients as `seq`, `last_seq` and `update_seq`.
//!
//! A backend sequence must never reach a client as it is: CouchDB's `"12-g1AA..."` and PouchDB
//! Server's integers count every change of the *shared* database, so they would let a user count
//! other users' writes. couchgate therefore wraps each backend sequence with deterministic
//! authenticated encryption (AES-SIV) under a key every instance of a deployment derives from the
//! same secret: any instance, before or after a restart, can open a token issued by another,
//! and a client can neither read nor forge one.
//!
//! A token seals a [`Position`]: the backend sequence from which replaying is safe and, when the
//! position came from this instance's changes index, the index's identity and ordinal, which let
//! that index answer in time proportional to the rows returned.
//!
//! Backend sequences stay opaque JSON values: they are stored and sent back verbatim, never
//! parsed, compared or incremented. A `since` that is not a token of ours (another deployment's,
//! a tampered one, garbage) falls back to the beginning of the feed: replaying is always safe for
//! replication, skipping never is.

use aes_siv::aead::{Aead, KeyInit};
use aes_siv::{Aes256SivAead, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha512};

/// A point in a namespace's changes feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// A backend sequence at or before this point: replaying the backend feed from it covers
    /// everything after the point.
    #[serde(rename = "b")]
    pub backend: Value,
    /// The changes index this point came from, and its ordinal there.
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub index: Option<(String, u64)>,
}

impl Position {
    /// A position known only by its backend sequence.
    pub fn backend(seq: Value) -> Position {
        Position {
            backend: seq,
            index: None,
        }
    }
}

/// Where a client wants a feed to start.
#[derive(Debug, Clone, PartialEq)]
pub enum Since {
    /// From the beginning.
    Zero,
    /// From the current end of the feed.
    Now,
    /// After this position.
    At(Position),
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

    /// The token for a backend sequence alone.
    pub fn seal(&self, backend_seq: &Value) -> String {
        self.seal_position(&Position::backend(backend_seq.clone()))
    }

    /// The token for a position.
    pub fn seal_position(&self, pos: &Position) -> String {
        let plain = serde_json::to_string(pos).expect("a Position always serialises");
        let sealed = self
            .cipher
            .encrypt(&Nonce::default(), plain.as_bytes())
            .expect("AES-SIV encryption of an in-memory buffer cannot fail");
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The position inside a token of ours, if it is one.
    pub fn open(&self, token: &str) -> Option<Position> {
        let sealed = URL_SAFE_NO_PAD.decode(token).ok()?;
        let plain = self
            .cipher
            .decrypt(&Nonce::default(), sealed.as_slice())
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// Interprets a client's `since`, from a query string (raw text) or a JSON body (value).
    /// A position couchgate cannot open (another secret, a backend's own sequence, a number)
    /// replays from the start, which never skips a change; `None` is text that is no sequence
    /// of any kind, which CouchDB refuses too.
    pub fn since(&self, raw: &Value) -> Option<Since> {
        Some(match raw {
            Value::Null => Since::Zero,
            Value::String(s) if s == "now" => Since::Now,
            Value::String(s) if s == "0" || s.is_empty() => Since::Zero,
            Value::String(s) => match self.open(s) {
                Some(p) => Since::At(p),
                None if looks_like_a_sequence(s) => Since::Zero,
                None => return None,
            },
            _ => Since::Zero,
        })
    }
}

/// Whether text could be a sequence from somewhere: a number, CouchDB's `N-opaque`, or a
/// sealed token (base64url, at least the size of AES-SIV's tag).
fn looks_like_a_sequence(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if digits(s) || s.split_once('-').is_some_and(|(n, _)| digits(n)) {
        return true;
    }
    URL_SAFE_NO_PAD.decode(s).is_ok_and(|b| b.len() >= 16)
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
            assert_eq!(b.open(&t), Some(Position::backend(seq.clone())));
            assert_eq!(a.seal(&seq), t, "deterministic");
            assert!(!t.contains("12-g1"), "the backend sequence is not readable");
        }
    }

    #[test]
    fn foreign_or_garbage_since_replays_from_zero() {
        let a = SeqCodec::new(b"s");
        let other = SeqCodec::new(b"t");
        let t = other.seal(&json!(5));
        let since = |v: Value| a.since(&v).expect("a sequence");
        assert_eq!(since(json!(t)), Since::Zero);
        assert_eq!(since(json!("12-g1AAAA")), Since::Zero);
        assert_eq!(since(json!("12")), Since::Zero);
        assert_eq!(since(json!(12)), Since::Zero);
        assert_eq!(since(json!({"x": 1})), Since::Zero);
        assert_eq!(since(json!("now")), Since::Now);
        assert_eq!(since(json!("0")), Since::Zero);
        assert_eq!(a.since(&json!("bogus")), None, "not a sequence of any kind");
        let mut tampered = a.seal(&json!(5)).into_bytes();
        tampered[3] ^= 1;
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(since(json!(tampered)), Since::Zero);
        assert_eq!(
            since(json!(a.seal(&json!(5)))),
            Since::At(Position::backend(json!(5)))
        );
        let indexed = Position {
            backend: json!("3-x"),
            index: Some(("idx".into(), 42)),
        };
        assert_eq!(a.open(&a.seal_position(&indexed)), Some(indexed));
    }
}
