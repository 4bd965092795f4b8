//! Authentication and the role rules: who is calling, and what their roles let them do.
//!
//! Credentials, in order of precedence (an explicit `Authorization` header always decides on
//! its own, even beside a valid cookie):
//! - `Authorization: Bearer <JWT>` ([`jwt`]), verified with static keys ([`keys`]) or keys
//!   from JWKS URLs ([`jwks`]);
//! - `Authorization: Basic`, when enabled, checked by the backend's `_users` ([`basic`]);
//! - the `AuthSession` cookie of a CouchDB-style session ([`cookie`]). A session opened with
//!   a password is checked against the account's `_users` document again once per
//!   `--basic-auth-cache-secs`, and ends (401) when the account is gone, its password changed
//!   or its roles differ; a session opened with a token ends with the token.
//!
//! Failed password checks are rate-limited per address and per name ([`limiter`]); tokens and
//! cookies are signed and cannot be guessed, so their failures are not counted and a client
//! with a bad token never locks others out. Rejections say which check failed and never echo
//! the credential.

pub mod basic;
pub mod cookie;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod limiter;
pub mod token_cache;

pub use limiter::ClientAddr;

use crate::backend::Backend;
use crate::config::Config;
use crate::error::{Error, Result};
use base64::Engine;
use http::HeaderMap;
use std::net::IpAddr;

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    Cookie,
    Password,
}

impl AuthMethod {
    /// The name CouchDB's `_session` gives it.
    pub fn couchdb_name(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::Cookie => "cookie",
            AuthMethod::Password => "default",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub roles: Vec<String>,
    pub method: AuthMethod,
    /// The second (Unix time) from which the credential is refused, if it expires.
    pub expires: Option<u64>,
    /// The service acting for `user` through the act-as header.
    pub service: Option<String>,
    /// A `Set-Cookie` value renewing the caller's session, to send with the answer.
    pub renewed_cookie: Option<String>,
}

/// Authenticates requests and applies the role rules.
#[derive(Debug)]
pub struct Authenticator {
    jwt: Option<jwt::JwtVerifier>,
    passwords: Option<basic::Passwords>,
    sessions: cookie::Sessions,
    limiter: limiter::Limiter,
    service_role: Option<String>,
    act_as_header: http::HeaderName,
    read_only_role: Option<String>,
}

fn unauthorized(reason: &str) -> Error {
    Error::Unauthorized(reason.into())
}

impl Authenticator {
    pub fn new(config: &Config, backend: &Backend) -> Result<Self> {
        let jwt = jwt::JwtVerifier::new(config)?;
        let passwords = config
            .auth
            .basic
            .then(|| basic::Passwords::new(backend.clone(), config.auth.basic_cache));
        if jwt.is_none() && passwords.is_none() {
            return Err(Error::bad_request(
                "no way to authenticate: give --jwt-secret, --jwt-public-key, --jwks-url or \
                 --basic-auth",
            ));
        }
        Ok(Authenticator {
            jwt,
            passwords,
            sessions: cookie::Sessions::new(config),
            limiter: limiter::Limiter::new(
                config.auth.failures_per_address,
                config.auth.failures_per_user,
            ),
            service_role: config.auth.service_role.clone(),
            act_as_header: config.auth.act_as_header.clone(),
            read_only_role: config.auth.read_only_role.clone(),
        })
    }

    /// Starts the background work (JWKS fetching); inside a tokio runtime.
    pub fn start(&self) {
        if let Some(j) = &self.jwt {
            j.start();
        }
    }

    pub fn sessions(&self) -> &cookie::Sessions {
        &self.sessions
    }

    /// The caller's identity from the request's credentials.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Identity> {
        if let Some(header) = headers.get(http::header::AUTHORIZATION) {
            let header = header
                .to_str()
                .map_err(|_| unauthorized("malformed Authorization header"))?;
            let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
            let value = value.trim();
            if scheme.eq_ignore_ascii_case("bearer") {
                return self.verify_token(value).await;
            }
            if scheme.eq_ignore_ascii_case("basic") && self.passwords.is_some() {
                let (name, password) = basic_credentials(value)?;
                return self.check_password(&name, &password, peer).await;
            }
            return Err(unauthorized(if self.passwords.is_some() {
                "only `Authorization: Bearer <token>` or `Basic` is accepted"
            } else {
                "only `Authorization: Bearer <token>` is accepted"
            }));
        }
        let now = jsonwebtoken::get_current_timestamp();
        match self.sessions.check(headers, now)? {
            Some(session) => self.session_identity(session, now).await,
            None => Err(unauthorized(
                "authentication required: no bearer token or session",
            )),
        }
    }

    /// The identity of a session, once its account (if it was opened with a password and
    /// last checked a period ago) is found unchanged.
    async fn session_identity(&self, session: cookie::Session, now: u64) -> Result<Identity> {
        let period = self.passwords.as_ref().map_or(0, |p| p.ttl().as_secs());
        let Some(stamp) = session.stamp_due(now, period) else {
            return self.sessions.identity(session, false, now);
        };
        let ended = || unauthorized("session ended: the account changed or is gone");
        let passwords = self.passwords.as_ref().ok_or_else(ended)?;
        let current = passwords.account(session.user()).await?;
        match current {
            Some(a)
                if self.sessions.stamp(&a.fingerprint) == stamp && a.has_roles(session.roles()) =>
            {
                self.sessions.identity(session, true, now)
            }
            _ => Err(ended()),
        }
    }

    /// A `Set-Cookie` value opening a session for `who`. A token session ends with the token;
    /// a password session is tied to the account's `_users` document, or, for a user the
    /// backend knows without one (a server admin), lasts one re-check period.
    pub async fn open_session(&self, who: &Identity, now: u64) -> Result<String> {
        match (&self.passwords, who.method) {
            (Some(p), AuthMethod::Password) => match p.account(&who.user).await? {
                Some(a) => self.sessions.open(who, None, Some(&a.fingerprint), now),
                None => {
                    let limit = now + p.ttl().as_secs().max(1);
                    self.sessions.open(who, Some(limit), None, now)
                }
            },
            _ => self.sessions.open(who, who.expires, None, now),
        }
    }

    /// Whether a request carries credentials of any kind (good or bad).
    pub fn presents_credentials(headers: &HeaderMap) -> bool {
        headers.contains_key(http::header::AUTHORIZATION) || cookie::find_cookie(headers).is_some()
    }

    /// Verifies a bearer token.
    pub async fn verify_token(&self, token: &str) -> Result<Identity> {
        match &self.jwt {
            Some(j) => j.verify(token).await,
            None => Err(unauthorized("tokens are not accepted by this server")),
        }
    }

    /// Checks a name and password, within the failure limits.
    pub async fn check_password(
        &self,
        name: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Identity> {
        let Some(p) = &self.passwords else {
            return Err(unauthorized(
                "names and passwords are not accepted by this server",
            ));
        };
        self.limiter.check(peer, name)?;
        match p.check(name, password).await {
            Ok((user, roles)) => {
                self.limiter.succeeded(name);
                Ok(Identity {
                    user,
                    roles,
                    method: AuthMethod::Password,
                    expires: None,
                    service: None,
                    renewed_cookie: None,
                })
            }
            Err(e) => {
                if matches!(e, Error::Unauthorized(_)) {
                    self.limiter.failed(peer, name);
                }
                Err(e)
            }
        }
    }

    /// Applies the act-as header: a member of the service role becomes the user it names
    /// (keeping its own roles and expiry); anyone else sending it is refused.
    pub fn act_as(&self, who: Identity, headers: &HeaderMap) -> Result<Identity> {
        let Some(target) = headers.get(&self.act_as_header) else {
            return Ok(who);
        };
        let allowed = self
            .service_role
            .as_ref()
            .is_some_and(|r| who.roles.contains(r));
        if !allowed {
            return Err(Error::Forbidden(format!(
                "only the service role may use the {} header",
                self.act_as_header
            )));
        }
        let target = target
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::bad_request(format!("the {} header names no user", self.act_as_header))
            })?;
        tracing::info!(service = %who.user, user = %target, "service acting for a user");
        Ok(Identity {
            user: target.to_owned(),
            service: Some(who.user),
            ..who
        })
    }

    /// Refuses a write by a member of the read-only role.
    pub fn may_write(&self, who: &Identity) -> Result<()> {
        match &self.read_only_role {
            Some(r) if who.roles.contains(r) => Err(Error::Forbidden(
                "this user may only read (read-only role)".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Name and password of a Basic credential.
fn basic_credentials(value: &str) -> Result<(String, String)> {
    let bad = || unauthorized("malformed Basic credentials");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (name, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((name.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use clap::Parser;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::{json, Value};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn auth(extra: &[&str]) -> Authenticator {
        let mut args = vec![
            "couchgate",
            "--jwt-secret",
            SECRET,
            "--couchdb-url",
            "http://127.0.0.1:9",
        ];
        args.extend_from_slice(extra);
        let cfg = Config::from_args(Args::try_parse_from(args).unwrap()).unwrap();
        let backend = Backend::new("http://127.0.0.1:9", &cfg).unwrap();
        Authenticator::new(&cfg, &backend).unwrap()
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

    async fn reason(a: &Authenticator, t: &str) -> String {
        let e = a.verify_token(t).await.unwrap_err();
        assert_eq!(e.status(), 401);
        e.reason()
    }

    #[tokio::test]
    async fn accepts_a_good_token() {
        let a = auth(&[]);
        let exp = now() + 60;
        let t = token(
            json!({"sub": "ann", "exp": exp, "_couchdb.roles": ["r"]}),
            SECRET,
        );
        let want = Identity {
            user: "ann".into(),
            roles: vec!["r".into()],
            method: AuthMethod::Jwt,
            expires: Some(exp + 31),
            service: None,
            renewed_cookie: None,
        };
        assert_eq!(a.verify_token(&t).await.unwrap(), want);
        assert_eq!(a.verify_token(&t).await.unwrap(), want, "from the cache");
    }

    #[tokio::test]
    async fn says_why_a_token_is_refused() {
        let a = auth(&["--jwt-issuer", "me", "--jwt-audience", "app"]);
        let ok = json!({"sub": "ann", "exp": now() + 60, "iss": "me", "aud": "app"});
        let with = |k: &str, v: Value| {
            let mut c = ok.clone();
            c[k] = v;
            c
        };
        let cases = [
            (with("exp", json!(now() - 3600)), "token expired"),
            (
                with("nbf", json!(now() + 3600)),
                "token not valid yet (nbf)",
            ),
            (
                with("iat", json!(now() + 3600)),
                "token issued in the future (iat)",
            ),
            (with("iss", json!("you")), "token issuer not accepted"),
            (with("aud", json!("other")), "token audience not accepted"),
            (
                with("sub", json!("")),
                "token has no user name in claim `sub`",
            ),
        ];
        for (claims, why) in cases {
            assert_eq!(reason(&a, &token(claims, SECRET)).await, why);
        }
        assert_eq!(
            reason(&a, &token(ok.clone(), "another secret, long enough")).await,
            "token signature does not match"
        );
        let mut no_exp = ok.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            reason(&a, &token(no_exp, SECRET)).await,
            "token has no `exp` claim"
        );
        assert_eq!(reason(&a, "not.a.token").await, "malformed token");
        assert_eq!(
            reason(&a, &"a".repeat(jwt::MAX_TOKEN_BYTES + 1)).await,
            "token too large"
        );
        let none = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&ok.to_string())
        );
        assert_eq!(reason(&a, &none).await, "token algorithm not accepted");
    }

    fn base64_url(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[tokio::test]
    async fn header_forms() {
        let a = auth(&[]);
        let mut h = HeaderMap::new();
        let why = |r: Result<Identity>| r.unwrap_err().reason();
        assert!(why(a.authenticate(&h, None).await).contains("no bearer"));
        h.insert("authorization", "Basic YTpi".parse().unwrap());
        assert!(why(a.authenticate(&h, None).await).contains("Bearer"));
        let t = token(json!({"sub": "ann", "exp": now() + 60}), SECRET);
        h.insert("authorization", format!("bearer {t}").parse().unwrap());
        assert_eq!(a.authenticate(&h, None).await.unwrap().user, "ann");
    }

    #[tokio::test]
    async fn claims_by_path() {
        let a = auth(&[
            "--jwt-user-claim",
            "user.name",
            "--jwt-roles-claim",
            "https://example.com/roles,realm_access.roles",
        ]);
        let t = token(
            json!({"sub": "1", "user": {"name": "a@b"}, "exp": now() + 60,
                   "realm_access": {"roles": ["x", 1, "y"]}}),
            SECRET,
        );
        let who = a.verify_token(&t).await.unwrap();
        assert_eq!(
            (who.user.as_str(), who.roles),
            ("a@b", vec!["x".into(), "y".into()])
        );
        let t = token(
            json!({"user": {"name": "a@b"}, "exp": now() + 60, "https://example.com/roles": ["z"]}),
            SECRET,
        );
        assert_eq!(a.verify_token(&t).await.unwrap().roles, ["z"]);
    }

    #[tokio::test]
    async fn service_and_read_only_roles() {
        let a = auth(&["--service-role", "svc", "--read-only-role", "ro"]);
        let a = &a;
        let who = |roles: Value| {
            let t = token(
                json!({"sub": "app", "exp": now() + 60, "roles": roles}),
                SECRET,
            );
            async move { a.verify_token(&t).await.unwrap() }
        };
        let mut h = HeaderMap::new();
        h.insert("x-couchgate-user", "bob".parse().unwrap());
        let svc = a.act_as(who(json!(["svc"])).await, &h).unwrap();
        assert_eq!(
            (svc.user.as_str(), svc.service.as_deref()),
            ("bob", Some("app"))
        );
        assert_eq!(
            a.act_as(who(json!([])).await, &h).unwrap_err().status(),
            403
        );
        let plain = a.act_as(who(json!([])).await, &HeaderMap::new()).unwrap();
        assert_eq!(plain.user, "app");
        assert!(a.may_write(&plain).is_ok());
        assert_eq!(
            a.may_write(&who(json!(["ro"])).await).unwrap_err().status(),
            403
        );
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            basic_credentials(&enc("ann:pa:ss")).unwrap(),
            ("ann".into(), "pa:ss".into())
        );
        assert!(basic_credentials(&enc("ann")).is_err());
        assert!(basic_credentials("***").is_err());
    }
}
