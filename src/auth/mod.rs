//! Authentication: every request carries its own credentials, `Authorization: Bearer <JWT>`.
//!
//! There is no session state that could stand in for a request's credentials (Envoy's shared
//! cookie jar let one user read another's data). A token must be signed with the configured
//! key, carry `exp`, satisfy `nbf`/`iat` within the leeway, match the configured `iss`/`aud`, and
//! name the user in the configured claim. Rejections say which check failed and never echo the
//! token.

use crate::config::{Config, JwtKey};
use crate::error::{Error, Result};
use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Tokens longer than this are refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub roles: Vec<String>,
}

/// Validates bearer tokens.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
    user_claim: String,
    leeway: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the authenticator from the configured key.
    pub fn new(config: &Config, key: &JwtKey) -> Result<Self> {
        let (key, algorithms) = match key {
            JwtKey::Hmac(secret) => (
                DecodingKey::from_secret(secret),
                vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            ),
            JwtKey::PublicPem(pem) => public_key(pem)?,
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = config.jwt_leeway.as_secs();
        validation.validate_nbf = true;
        match &config.jwt_audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.jwt_issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        Ok(Authenticator {
            key,
            validation,
            user_claim: config.jwt_user_claim.clone(),
            leeway: config.jwt_leeway.as_secs(),
        })
    }

    /// The caller's identity, from the request's `Authorization` header.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity> {
        let header = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
            Error::Unauthorized("authentication required: no bearer token".into())
        })?;
        let header = header
            .to_str()
            .map_err(|_| Error::Unauthorized("malformed Authorization header".into()))?;
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Error::Unauthorized(
                    "only `Authorization: Bearer <token>` is accepted".into(),
                ))
            }
        };
        self.verify(token)
    }

    /// Verifies one token.
    pub fn verify(&self, token: &str) -> Result<Identity> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::Unauthorized("token too large".into()));
        }
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|e| Error::Unauthorized(rejection(e.kind()).into()))?;
        let claims = data.claims;
        if let Some(iat) = claims.get("iat") {
            let iat = iat
                .as_u64()
                .ok_or_else(|| Error::Unauthorized("token claim `iat` is not a number".into()))?;
            if iat > jsonwebtoken::get_current_timestamp() + self.leeway {
                return Err(Error::Unauthorized(
                    "token issued in the future (iat)".into(),
                ));
            }
        }
        let user = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized(format!(
                    "token has no user name in claim `{}`",
                    self.user_claim
                ))
            })?
            .to_owned();
        let roles = claims
            .get("_couchdb.roles")
            .or_else(|| claims.get("roles"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Identity { user, roles })
    }
}

fn public_key(pem: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>)> {
    use Algorithm::*;
    if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        return Ok((k, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        return Ok((k, vec![ES256, ES384]));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        return Ok((k, vec![EdDSA]));
    }
    Err(Error::BadRequest(
        "--jwt-public-key is not an RSA, EC or Ed25519 public key in PEM".into(),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use clap::Parser;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn auth(extra: &[&str]) -> Authenticator {
        let mut args = vec!["couchgate", "--jwt-secret", SECRET];
        args.extend_from_slice(extra);
        let cfg = Config::from_args(Args::try_parse_from(args).unwrap()).unwrap();
        Authenticator::new(&cfg, cfg.jwt_key.as_ref().unwrap()).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn token(claims: Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn reason(a: &Authenticator, t: &str) -> String {
        let e = a.verify(t).unwrap_err();
        assert_eq!(e.status(), 401);
        e.reason()
    }

    #[test]
    fn accepts_a_good_token() {
        let a = auth(&[]);
        let t = token(
            json!({"sub": "ann", "exp": now() + 60, "_couchdb.roles": ["r"]}),
            SECRET,
        );
        assert_eq!(
            a.verify(&t).unwrap(),
            Identity {
                user: "ann".into(),
                roles: vec!["r".into()]
            }
        );
    }

    #[test]
    fn says_why_a_token_is_refused() {
        let a = auth(&["--jwt-issuer", "me", "--jwt-audience", "app"]);
        let ok = json!({"sub": "ann", "exp": now() + 60, "iss": "me", "aud": "app"});
        let with = |k: &str, v: Value| {
            let mut c = ok.clone();
            c[k] = v;
            c
        };
        assert_eq!(
            reason(&a, &token(with("exp", json!(now() - 3600)), SECRET)),
            "token expired"
        );
        assert_eq!(
            reason(&a, &token(with("nbf", json!(now() + 3600)), SECRET)),
            "token not valid yet (nbf)"
        );
        assert_eq!(
            reason(&a, &token(with("iat", json!(now() + 3600)), SECRET)),
            "token issued in the future (iat)"
        );
        assert_eq!(
            reason(&a, &token(with("iss", json!("you")), SECRET)),
            "token issuer not accepted"
        );
        assert_eq!(
            reason(&a, &token(with("aud", json!("other")), SECRET)),
            "token audience not accepted"
        );
        assert_eq!(
            reason(&a, &token(ok.clone(), "another secret, long enough")),
            "token signature does not match"
        );
        let mut no_exp = ok.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            reason(&a, &token(no_exp, SECRET)),
            "token has no `exp` claim"
        );
        assert_eq!(
            reason(&a, &token(with("sub", json!("")), SECRET)),
            "token has no user name in claim `sub`"
        );
        assert_eq!(reason(&a, "not.a.token"), "malformed token");
        assert_eq!(
            reason(&a, &"a".repeat(MAX_TOKEN_BYTES + 1)),
            "token too large"
        );
        // alg "none" is never accepted
        let none = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&ok.to_string())
        );
        assert!(a.verify(&none).is_err());
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn header_forms() {
        let a = auth(&[]);
        let mut h = HeaderMap::new();
        assert!(a
            .authenticate(&h)
            .unwrap_err()
            .reason()
            .contains("no bearer"));
        h.insert("authorization", "Basic YTpi".parse().unwrap());
        assert!(a.authenticate(&h).unwrap_err().reason().contains("Bearer"));
        let t = token(json!({"sub": "ann", "exp": now() + 60}), SECRET);
        h.insert("authorization", format!("bearer {t}").parse().unwrap());
        assert_eq!(a.authenticate(&h).unwrap().user, "ann");
    }

    #[test]
    fn custom_user_claim() {
        let a = auth(&["--jwt-user-claim", "email"]);
        let t = token(
            json!({"sub": "1", "email": "a@b", "exp": now() + 60}),
            SECRET,
        );
        assert_eq!(a.verify(&t).unwrap().user, "a@b");
    }
}
