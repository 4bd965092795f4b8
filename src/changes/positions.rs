//! The sequences couchgate hands to clients as `seq`, `last_seq` and `update_seq`: positions in
//! one namespace's own history, never the shared database's.
//!
//! A token reads like CouchDB 2+'s `N-opaque`:
//! - `N` is the namespace's own update count as the changes index counts it (see
//!   [`super::index`]): it does not move while the namespace is untouched, whatever other users
//!   write, and apps may read it for progress as they read CouchDB's.
//! - `opaque` is `base64url(AES-SIV(index identity, N))` with the namespace's partition as
//!   associated data, under a key every instance of a deployment derives from the same secret.
//!   Its length is fixed, so it grows with nothing; it opens only for the namespace it was
//!   issued in, so two users' tokens never compare, and a client can neither read nor forge one.
//!
//! A token names the index that issued it. The same index resumes right after it; any other
//! (another instance, an index rebuilt after its data was lost) replays the namespace from its
//! start, which costs the namespace's own documents and never skips a change. Text that is no
//! token of ours but looks like a sequence (another deployment's, CouchDB's own, a number)
//! replays from the start too; text that is no sequence of any kind is refused, as CouchDB
//! refuses it.

use aes_siv::aead::{Aead, KeyInit, Payload};
use aes_siv::{Aes256SivAead, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha512};

/// Bytes of an index identity.
pub const INDEX_ID_LEN: usize = 8;

/// The identity of one changes index: random, kept as long as its data is.
pub type IndexId = [u8; INDEX_ID_LEN];

/// The sealed layout's version byte.
const VERSION: u8 = 2;

/// A point in one namespace's history as one index numbers it: after the change numbered `n`
/// (0 is the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub index: IndexId,
    pub n: u64,
}

/// Where a client wants a feed to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// From the beginning.
    Zero,
    /// From the current end of the feed.
    Now,
    /// After this position (a token of ours, for this namespace; maybe of another index).
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
        h.update(b"couchgate sequence token key v2\0");
        h.update(secret);
        SeqCodec {
            cipher: Aes256SivAead::new(&h.finalize()),
        }
    }

    /// The token of a position in the namespace `partition`.
    pub fn seal(&self, partition: &str, pos: Position) -> String {
        let mut plain = [0u8; 1 + INDEX_ID_LEN + 8];
        plain[0] = VERSION;
        plain[1..1 + INDEX_ID_LEN].copy_from_slice(&pos.index);
        plain[1 + INDEX_ID_LEN..].copy_from_slice(&pos.n.to_be_bytes());
        format!("{}-{}", pos.n, self.encrypt(partition, &plain))
    }

    /// `plain` sealed for `partition` (the namespace is the associated data), in base64url.
    fn encrypt(&self, partition: &str, plain: &[u8]) -> String {
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::default(),
                Payload {
                    msg: plain,
                    aad: partition.as_bytes(),
                },
            )
            .expect("AES-SIV encryption of an in-memory buffer cannot fail");
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// What [`SeqCodec::encrypt`] sealed for `partition`, if `opaque` is that.
    fn decrypt(&self, partition: &str, opaque: &str) -> Option<Vec<u8>> {
        let sealed = URL_SAFE_NO_PAD.decode(opaque).ok()?;
        self.cipher
            .decrypt(
                &Nonce::default(),
                Payload {
                    msg: &sealed,
                    aad: partition.as_bytes(),
                },
            )
            .ok()
    }

    /// The position inside a token of ours for `partition`, if it is one (and its `N` is the
    /// one sealed inside).
    pub fn open(&self, partition: &str, token: &str) -> Option<Position> {
        let (n, opaque) = token.split_once('-')?;
        let plain = self.decrypt(partition, opaque)?;
        if plain.len() != 1 + INDEX_ID_LEN + 8 || plain[0] != VERSION {
            return None;
        }
        let index = plain[1..1 + INDEX_ID_LEN].try_into().ok()?;
        let sealed_n = u64::from_be_bytes(plain[1 + INDEX_ID_LEN..].try_into().ok()?);
        (n.parse::<u64>().ok()? == sealed_n).then_some(Position { index, n: sealed_n })
    }

    /// Seals `plain` (another opaque value of a namespace, such as a Mango bookmark) for
    /// `partition`; `kind` keeps the kinds apart (it is never a sequence's version byte).
    pub fn seal_opaque(&self, partition: &str, kind: u8, plain: &[u8]) -> String {
        debug_assert_ne!(kind, VERSION);
        let mut msg = Vec::with_capacity(plain.len() + 1);
        msg.push(kind);
        msg.extend_from_slice(plain);
        self.encrypt(partition, &msg)
    }

    /// What [`SeqCodec::seal_opaque`] sealed for `partition` with `kind`, if `token` is that.
    pub fn open_opaque(&self, partition: &str, kind: u8, token: &str) -> Option<Vec<u8>> {
        let plain = self.decrypt(partition, token)?;
        match plain.split_first() {
            Some((k, rest)) if *k == kind => Some(rest.to_vec()),
            _ => None,
        }
    }

    /// Interprets a client's `since` in `partition`. `None` is text that is no sequence of
    /// any kind.
    pub fn since(&self, partition: &str, raw: &str) -> Option<Since> {
        Some(match raw {
            "now" => Since::Now,
            "0" | "" => Since::Zero,
            s => match self.open(partition, s) {
                Some(p) => Since::At(p),
                None if looks_like_a_sequence(s) => Since::Zero,
                None => return None,
            },
        })
    }
}

/// Whether text could be a sequence from somewhere: a number, CouchDB's `N-opaque`, or an
/// older couchgate token (base64url, at least the size of AES-SIV's tag).
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

    const IX: IndexId = *b"indexid1";

    #[test]
    fn tokens_read_like_couchdb_and_round_trip_across_codecs() {
        let a = SeqCodec::new(b"s");
        let b = SeqCodec::new(b"s");
        let pos = Position { index: IX, n: 17 };
        let t = a.seal("u.d.e", pos);
        assert!(t.starts_with("17-"), "{t}");
        assert_eq!(b.open("u.d.e", &t), Some(pos));
        assert_eq!(a.seal("u.d.e", pos), t, "deterministic");
        let long = a.seal(
            "u.d.e",
            Position {
                index: IX,
                n: 1 << 40,
            },
        );
        assert_eq!(
            long.len() - (1u64 << 40).to_string().len(),
            t.len() - 2,
            "the opaque part has one length whatever the position"
        );
    }

    #[test]
    fn opaque_tokens_open_only_in_their_namespace_and_kind() {
        let c = SeqCodec::new(b"k");
        let t = c.seal_opaque("p", 0xb0, b"bookmark");
        assert_eq!(c.open_opaque("p", 0xb0, &t).unwrap(), b"bookmark");
        assert_eq!(c.open_opaque("q", 0xb0, &t), None);
        assert_eq!(c.open_opaque("p", 0xb1, &t), None);
        assert_eq!(c.open("p", &format!("1-{t}")), None);
        assert_eq!(SeqCodec::new(b"other").open_opaque("p", 0xb0, &t), None);
    }

    #[test]
    fn a_token_opens_only_in_its_own_namespace() {
        let a = SeqCodec::new(b"s");
        let pos = Position { index: IX, n: 3 };
        let mine = a.seal("u.d.e", pos);
        let theirs = a.seal("v.d.e", pos);
        assert_ne!(mine, theirs, "equal positions of two users do not compare");
        assert_eq!(a.open("v.d.e", &mine), None);
        assert_eq!(a.since("v.d.e", &mine), Some(Since::Zero));
    }

    #[test]
    fn foreign_tampered_or_garbage_since() {
        let a = SeqCodec::new(b"s");
        let other = SeqCodec::new(b"t");
        let pos = Position { index: IX, n: 5 };
        let since = |s: &str| a.since("p", s).expect("a sequence");
        assert_eq!(since(&other.seal("p", pos)), Since::Zero);
        assert_eq!(since("12-g1AAAA"), Since::Zero);
        assert_eq!(since("12"), Since::Zero);
        assert_eq!(since("now"), Since::Now);
        assert_eq!(since("0"), Since::Zero);
        assert_eq!(a.since("p", "bogus"), None, "not a sequence of any kind");
        let good = a.seal("p", pos);
        assert_eq!(since(&good), Since::At(pos));
        let renumbered = good.replacen("5-", "6-", 1);
        assert_eq!(since(&renumbered), Since::Zero, "N is sealed too");
        let mut tampered = good.into_bytes();
        let last = tampered.len() - 3;
        tampered[last] ^= 1;
        assert_eq!(since(&String::from_utf8(tampered).unwrap()), Since::Zero);
    }
}
