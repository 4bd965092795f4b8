//! Bearer JWTs: which key verifies a token (by `kid`, else every key allowed its `alg`), the
//! checks (`exp` required, `nbf`/`iat` within the leeway, `iss`/`aud` when configured), and the
//! identity it carries (user and roles from configurable claims, dotted paths allowed).
//!
//! Verified tokens are remembered by their SHA-256 until they expire, so a client sending the
//! same token again costs a hash and a map lookup instead of a signature check.

use super::jwks::Jwks;
use super::keys::{self, Key};
use super::token_cache::TokenCache;
use super::{AuthMethod, Identity};
use crate::config::{Config, JwtKey};
use crate::error::{Error, Result};
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;
use std::sync::Arc;

/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most keys a token without a usable `kid` is tried against.
const MAX_TRIES: usize = 16;
fn unauthorized(reason: &str) -> Error {
    Error::Unauthorized(reason.into())
}

/// Verifies bearer tokens against static keys and JWKS URLs.
#[derive(Debug)]
pub struct JwtVerifier {
    static_keys: Vec<Arc<Key>>,
    jwks: Vec<Arc<Jwks>>,
    tokens: Arc<TokenCache>,
    user_claim: String,
    roles_claims: Vec<String>,
    leeway: u64,
}

impl JwtVerifier {
    /// `None` when no token key of any kind is configured.
    pub fn new(config: &Config) -> Result<Option<JwtVerifier>> {
        let allowed = config
            .auth
            .algorithms
            .clone()
            .unwrap_or_else(|| keys::ALL.to_vec());
        let mut base = Validation::new(Algorithm::HS256);
        base.set_required_spec_claims(&["exp"]);
        base.leeway = config.jwt_leeway.as_secs();
        base.validate_nbf = true;
        if config.jwt_audiences.is_empty() {
            base.validate_aud = false;
        } else {
            base.set_audience(&config.jwt_audiences);
            base.required_spec_claims.insert("aud".into());
        }
        if !config.jwt_issuers.is_empty() {
            base.set_issuer(&config.jwt_issuers);
            base.required_spec_claims.insert("iss".into());
        }
        let mut parsed = Vec::new();
        if let Some(JwtKey::Hmac(secret)) = &config.jwt_key {
            parsed.push(keys::Parsed {
                kid: None,
                key: DecodingKey::from_secret(secret),
                algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            });
        }
        for f in &config.jwt_key_files {
            let what = format!("--jwt-public-key {}", f.path.display());
            parsed.extend(keys::parse_file(&f.bytes, &what)?);
        }
        let static_keys: Vec<Arc<Key>> = parsed
            .into_iter()
            .filter_map(|p| Key::new(p.kid, p.key, &p.algorithms, &allowed, &base))
            .map(Arc::new)
            .collect();
        if static_keys.is_empty() && config.auth.jwks_urls.is_empty() {
            if config.jwt_key.is_some() || !config.jwt_key_files.is_empty() {
                return Err(Error::bad_request(
                    "no configured token key may verify any of --jwt-algorithms",
                ));
            }
            return Ok(None);
        }
        let tokens = Arc::new(TokenCache::default());
        let jwks = config
            .auth
            .jwks_urls
            .iter()
            .map(|u| {
                Jwks::new(
                    u,
                    &base,
                    &allowed,
                    config.auth.jwks_min_refresh,
                    Arc::clone(&tokens),
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(JwtVerifier {
            static_keys,
            jwks,
            tokens,
            user_claim: config.jwt_user_claim.clone(),
            roles_claims: config.auth.roles_claims.clone(),
            leeway: config.jwt_leeway.as_secs(),
        }))
    }

    /// Starts fetching JWKS keys (inside a tokio runtime).
    pub fn start(&self) {
        for j in &self.jwks {
            j.spawn_refresher();
        }
    }

    /// Verifies one token and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<Identity> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauthorized("token too large"));
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(id) = self.tokens.get(token, now) {
            return Ok(id);
        }
        let header = header(token)?;
        let mut refreshed = false;
        let claims = loop {
            let (kid_known, candidates) = self.candidates(&header);
            let mut signature_failed = false;
            let mut verified = None;
            for key in candidates.iter().take(MAX_TRIES) {
                match jsonwebtoken::decode::<Value>(token, &key.key, &key.validation) {
                    Ok(data) => {
                        verified = Some(data.claims);
                        break;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm
                        ) =>
                    {
                        signature_failed = true
                    }
                    // Claims are checked after the signature: this key signed the token.
                    Err(e) => return Err(unauthorized(rejection(e.kind()))),
                }
            }
            if let Some(claims) = verified {
                break claims;
            }
            // A key the token names but we do not know may have been published since.
            if !kid_known && !refreshed && !self.jwks.is_empty() {
                refreshed = true;
                for j in &self.jwks {
                    j.refresh_for_unknown_kid().await;
                }
                continue;
            }
            return Err(unauthorized(if signature_failed {
                "token signature does not match"
            } else if header.kid.is_some() && !kid_known {
                "token key id (kid) unknown"
            } else {
                "token algorithm not accepted"
            }));
        };
        let identity = self.identity(&claims, now)?;
        let until = identity.expires.unwrap_or(now);
        self.tokens.insert(token, identity.clone(), until, now);
        Ok(identity)
    }

    /// Whether some key has the token's `kid`, and the keys to try: those with that `kid`,
    /// else the keys without one (static keys); every key when the token names none. Only keys
    /// allowed the token's `alg` are tried.
    fn candidates(&self, header: &Header) -> (bool, Vec<Arc<Key>>) {
        let fetched: Vec<Arc<Vec<Arc<Key>>>> = self.jwks.iter().map(|j| j.keys()).collect();
        let all = || {
            self.static_keys
                .iter()
                .chain(fetched.iter().flat_map(|k| k.iter()))
        };
        let allowed = |k: &&Arc<Key>| k.allows(header.alg);
        let Some(kid) = header.kid.as_deref() else {
            return (false, all().filter(allowed).cloned().collect());
        };
        let known = all().any(|k| k.kid.as_deref() == Some(kid));
        let want = |k: &&Arc<Key>| {
            if known {
                k.kid.as_deref() == Some(kid)
            } else {
                k.kid.is_none()
            }
        };
        (known, all().filter(want).filter(allowed).cloned().collect())
    }

    fn identity(&self, claims: &Value, now: u64) -> Result<Identity> {
        if let Some(iat) = claims.get("iat") {
            let iat = iat
                .as_f64()
                .ok_or_else(|| unauthorized("token claim `iat` is not a number"))?;
            if iat > now.saturating_add(self.leeway) as f64 {
                return Err(unauthorized("token issued in the future (iat)"));
            }
        }
        let user = claim(claims, &self.user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized(format!(
                    "token has no user name in claim `{}`",
                    self.user_claim
                ))
            })?
            .to_owned();
        let roles = self
            .roles_claims
            .iter()
            .find_map(|c| claim(claims, c))
            .map(|v| match v {
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => vec![],
            })
            .unwrap_or_default();
        // `exp` is required and checked by now; a fractional one counts down. The token is
        // refused from the second after `exp` + leeway.
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0) as u64;
        Ok(Identity {
            user,
            roles,
            method: AuthMethod::Jwt,
            expires: Some(exp.saturating_add(self.leeway).saturating_add(1)),
            service: None,
            renewed_cookie: None,
        })
    }
}

/// The token's header; an algorithm couchgate does not know (`none`, ...) is named as such.
fn header(token: &str) -> Result<Header> {
    jsonwebtoken::decode_header(token).map_err(|_| {
        let alg = token
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
            .and_then(|h| h.get("alg").map(|a| a.is_string()));
        unauthorized(if alg == Some(true) {
            "token algorithm not accepted"
        } else {
            "malformed token"
        })
    })
}

/// A claim by name, or else by dotted path into nested objects (`realm_access.roles`). The
/// whole name is tried first, as claims such as `_couchdb.roles` or Auth0's
/// `https://example.com/roles` contain dots.
pub fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    if !path.contains('.') {
        return None;
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

fn rejection(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)",
        ErrorKind::InvalidSignature => "token signature does not match",
        ErrorKind::InvalidIssuer => "token issuer not accepted",
        ErrorKind::InvalidAudience => "token audience not accepted",
        ErrorKind::InvalidAlgorithm => "token algorithm not accepted",
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => "token has no `exp` claim",
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => "token has no `iss` claim",
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => "token has no `aud` claim",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        ErrorKind::InvalidClaimFormat(_) => "token claim has the wrong type",
        _ => "malformed token",
    }
}
