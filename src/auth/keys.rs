//! Token verification keys: parsing PEM, JWK and JWKS into [`Key`]s, each with the algorithms
//! it may verify. The allow-list of a key follows from its type (RSA: RS*/PS*, EC P-256: ES256,
//! EC P-384: ES384, Ed25519: EdDSA, symmetric: HS*), narrowed by its JWK `alg` and by
//! `--jwt-algorithms`; so `none` is never accepted and an HMAC is never checked with a public key.

use crate::error::{Error, Result};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// HMAC keys shorter than this are refused.
pub const MIN_HMAC_BYTES: usize = 16;

use Algorithm::*;
const RSA: &[Algorithm] = &[RS256, RS384, RS512, PS256, PS384, PS512];
const HMAC: &[Algorithm] = &[HS256, HS384, HS512];
/// Every algorithm couchgate verifies.
pub const ALL: &[Algorithm] = &[
    RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512,
];

/// One verification key.
pub struct Key {
    /// `kid`, when the key has one.
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// The shared checks (`exp`, `iss`, `aud`, leeway) with this key's allowed algorithms.
    pub validation: Validation,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A key allowed `algorithms ∩ allowed`; `None` when that is empty.
    pub fn new(
        kid: Option<String>,
        key: DecodingKey,
        algorithms: &[Algorithm],
        allowed: &[Algorithm],
        base: &Validation,
    ) -> Option<Key> {
        let algorithms: Vec<Algorithm> = algorithms
            .iter()
            .copied()
            .filter(|a| allowed.contains(a))
            .collect();
        if algorithms.is_empty() {
            return None;
        }
        let mut validation = base.clone();
        validation.algorithms = algorithms;
        Some(Key {
            kid,
            key,
            validation,
        })
    }

    pub fn allows(&self, alg: Algorithm) -> bool {
        self.validation.algorithms.contains(&alg)
    }
}

/// A key as parsed, before the shared checks are attached.
pub struct Parsed {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// Keys in a file: a PEM public key, a JWK or a JWKS (`what` names it in errors).
pub fn parse_file(bytes: &[u8], what: &str) -> Result<Vec<Parsed>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::bad_request(format!("{what}: not a text file")))?
        .trim();
    if text.starts_with('{') {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_request(format!("{what}: invalid JSON: {e}")))?;
        let keys = if value.get("keys").is_some() {
            parse_jwks(&value, true)
        } else {
            vec![parse_jwk(&value, true).map_err(|e| Error::bad_request(format!("{what}: {e}")))?]
        };
        if keys.is_empty() {
            return Err(Error::bad_request(format!("{what}: no usable key")));
        }
        return Ok(keys);
    }
    parse_pem(text.as_bytes()).map(|k| vec![k]).ok_or_else(|| {
        Error::bad_request(format!(
            "{what} is not an RSA, EC (P-256, P-384) or Ed25519 public key in PEM, a JWK or a JWKS"
        ))
    })
}

/// The usable keys of a JWKS; keys couchgate cannot use (encryption keys, other curves, and
/// symmetric keys unless `symmetric`) are skipped.
pub fn parse_jwks(set: &Value, symmetric: bool) -> Vec<Parsed> {
    set.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|k| match parse_jwk(k, symmetric) {
            Ok(p) => Some(p),
            Err(why) => {
                tracing::debug!(kid = ?k.get("kid"), %why, "JWKS key skipped");
                None
            }
        })
        .collect()
}

fn parse_jwk(value: &Value, symmetric: bool) -> std::result::Result<Parsed, String> {
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|e| format!("bad JWK: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key".into());
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => vec![EdDSA],
        AlgorithmParameters::OctetKey(p) => {
            if !symmetric {
                return Err("a symmetric key from a JWKS URL".into());
            }
            let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.value.trim_end_matches('='))
                .map_err(|_| "bad symmetric key".to_string())?
                .len();
            if len < MIN_HMAC_BYTES {
                return Err("symmetric key shorter than 16 bytes".into());
            }
            HMAC.to_vec()
        }
        _ => return Err("unsupported key type".into()),
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(a) => {
            let a = serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str()?.parse::<Algorithm>().ok())
                .ok_or_else(|| "unsupported `alg`".to_string())?;
            if !by_type.contains(&a) {
                return Err("`alg` does not match the key type".into());
            }
            vec![a]
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("bad key material: {e}"))?;
    Ok(Parsed {
        kid: jwk.common.key_id,
        key,
        algorithms,
    })
}

fn parse_pem(pem: &[u8]) -> Option<Parsed> {
    let parsed = |key, algorithms: &[Algorithm]| Parsed {
        kid: None,
        key,
        algorithms: algorithms.to_vec(),
    };
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Some(parsed(k, RSA));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        // The curve's OID in the SubjectPublicKeyInfo decides the one algorithm.
        const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        let der = pem_der(pem)?;
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        return if has(P256) {
            Some(parsed(k, &[ES256]))
        } else if has(P384) {
            Some(parsed(k, &[ES384]))
        } else {
            None
        };
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        return Some(parsed(k, &[EdDSA]));
    }
    None
}

/// The DER bytes of the first PEM block.
fn pem_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwks_keys_get_the_algorithms_of_their_type() {
        let set = json!({"keys": [
            {"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY", "kid": "h"},
            {"kty": "oct", "k": "c2hvcnQ", "kid": "short"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "e"},
            {"kty": "OKP", "crv": "Ed25519", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "alg": "RS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "weird"},
        ]});
        let keys = parse_jwks(&set, true);
        let got: Vec<(Option<String>, Vec<Algorithm>)> =
            keys.into_iter().map(|k| (k.kid, k.algorithms)).collect();
        assert_eq!(
            got,
            vec![
                (Some("h".into()), HMAC.to_vec()),
                (Some("e".into()), vec![EdDSA])
            ]
        );
        assert_eq!(parse_jwks(&set, false).len(), 1, "no HMAC keys from a URL");
    }

    #[test]
    fn files_that_are_not_keys_are_refused() {
        assert!(parse_file(b"hello", "f").is_err());
        assert!(parse_file(b"{\"keys\": []}", "f").is_err());
        assert!(parse_file(b"{\"kty\": \"RSA\"}", "f").is_err());
    }
}
