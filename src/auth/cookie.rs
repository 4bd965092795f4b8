//! CouchDB-style sessions: the `AuthSession` cookie. It carries the user, roles and expiry,
//! signed with HMAC-SHA256; nothing is stored server-side, so every instance with the same key
//! accepts it. A session is renewed (a fresh cookie in the response) once less than half its
//! lifetime is left, never beyond its limit.
//!
//! Every session is bounded by what opened it:
//! - a token session by the token's own expiry, a hard limit (`l`);
//! - a password session by the account it was opened for: the cookie carries a *credential
//!   stamp* (`s`, a keyed hash of the `_users` document's password hash and salt, so nothing
//!   secret travels) and the time it was last checked (`c`). Once that is older than the
//!   re-check period, [`super::Authenticator`] re-reads the account and ends the session when
//!   the account is gone, its password changed or its roles differ ([`Session::stamp`]).
//!
//! A cookie bounded by neither is refused.

use super::{AuthMethod, Identity};
use crate::config::{Config, SameSite};
use crate::error::{Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const COOKIE: &str = "AuthSession";
/// Cookies larger than this are not issued (browsers keep about 4 KiB).
const MAX_COOKIE_BYTES: usize = 3800;

#[derive(Clone, Serialize, Deserialize)]
struct Payload {
    /// User.
    u: String,
    /// Roles.
    r: Vec<String>,
    /// Expiry: refused from this second (Unix time) on.
    e: u64,
    /// The latest a renewal may reach, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<u64>,
    /// Credential stamp of a password session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// When the stamp was last found current, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<u64>,
}

/// A checked session cookie: who it names, and what still has to be confirmed.
#[derive(Debug)]
pub struct Session {
    payload: Payload,
    /// Whether the answer should carry a renewed cookie.
    renew: bool,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("u", &self.u)
            .field("e", &self.e)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn user(&self) -> &str {
        &self.payload.u
    }

    pub fn roles(&self) -> &[String] {
        &self.payload.r
    }

    /// The credential stamp of a password session, when it is due to be checked again at
    /// `now` (last checked `period` seconds ago or earlier); `None` for token sessions and
    /// for stamps checked recently.
    pub fn stamp_due(&self, now: u64, period: u64) -> Option<&str> {
        let stamp = self.payload.s.as_deref()?;
        let checked = self.payload.c.unwrap_or(0);
        (now.saturating_sub(checked) >= period).then_some(stamp)
    }
}

/// Issues and checks session cookies.
pub struct Sessions {
    key: [u8; 32],
    ttl: u64,
    same_site: SameSite,
    secure: bool,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length")
}

impl Sessions {
    pub fn new(config: &Config) -> Sessions {
        let material = match &config.auth.session_secret {
            Some(s) => Some(s.as_bytes().to_vec()),
            None if has_secret(config) => Some(config.seq_secret()),
            None => None,
        };
        let key = match material {
            Some(m) => {
                let mut h = mac(&m);
                h.update(b"couchgate AuthSession v1");
                h.finalize().into_bytes().into()
            }
            None => {
                tracing::warn!(
                    "no secret configured: session cookies use a random key and end with this \
                     process (set --session-secret)"
                );
                let mut k = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut k);
                k
            }
        };
        Sessions {
            key,
            ttl: config.auth.session_ttl.as_secs(),
            same_site: config.auth.same_site,
            secure: config.tls.is_some() || config.auth.same_site == SameSite::None,
        }
    }

    /// A `Set-Cookie` value opening a session for `who`, which lasts the session lifetime but
    /// never beyond `limit`. `account`: the fingerprint of the account a password session was
    /// opened for (see [`super::basic::Account`]); a session needs it or a limit.
    pub fn open(
        &self,
        who: &Identity,
        limit: Option<u64>,
        account: Option<&[u8; 32]>,
        now: u64,
    ) -> Result<String> {
        let payload = Payload {
            u: who.user.clone(),
            r: who.roles.clone(),
            e: self.expiry(limit, now),
            l: limit,
            s: account.map(|a| self.stamp(a)),
            c: account.map(|_| now),
        };
        if payload.l.is_none() && payload.s.is_none() {
            return Err(Error::Internal(
                "a session needs a limit or an account".into(),
            ));
        }
        self.issue(&payload, now)
    }

    /// The stamp of an account fingerprint: keyed, so a cookie reveals nothing of it.
    pub fn stamp(&self, account: &[u8; 32]) -> String {
        let mut h = mac(&self.key);
        h.update(b"credential stamp\0");
        h.update(account);
        B64.encode(&h.finalize().into_bytes()[..16])
    }

    fn expiry(&self, limit: Option<u64>, now: u64) -> u64 {
        limit.map_or(now + self.ttl, |l| l.min(now + self.ttl))
    }

    /// The identity of a session whose stamp (if any) has been found current at `now`
    /// (`confirmed`), with a renewed cookie when it is due or the check time must be kept.
    pub fn identity(&self, session: Session, confirmed: bool, now: u64) -> Result<Identity> {
        let Session { payload: p, renew } = session;
        let renewed_cookie = if renew || confirmed {
            let e = if renew { self.expiry(p.l, now) } else { p.e };
            let c = if confirmed { Some(now) } else { p.c };
            Some(self.issue(&Payload { e, c, ..p.clone() }, now)?)
        } else {
            None
        };
        Ok(Identity {
            user: p.u,
            roles: p.r,
            method: AuthMethod::Cookie,
            expires: Some(p.e),
            service: None,
            renewed_cookie,
        })
    }

    fn issue(&self, payload: &Payload, now: u64) -> Result<String> {
        let e = payload.e;
        let body = B64.encode(serde_json::to_vec(payload)?);
        let mut h = mac(&self.key);
        h.update(body.as_bytes());
        let value = format!("{body}.{}", B64.encode(h.finalize().into_bytes()));
        if value.len() > MAX_COOKIE_BYTES {
            return Err(Error::bad_request(
                "the identity has too many roles to fit a session cookie",
            ));
        }
        Ok(self.set_cookie(&value, e.saturating_sub(now)))
    }

    /// A `Set-Cookie` value ending the session.
    pub fn close(&self) -> String {
        self.set_cookie("", 0)
    }

    fn set_cookie(&self, value: &str, max_age: u64) -> String {
        let same_site = match self.same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{COOKIE}={value}; Version=1; Path=/; Max-Age={max_age}; HttpOnly; \
             SameSite={same_site}{secure}"
        )
    }

    /// The session of a cookie in `headers`, signature and expiry checked; `Ok(None)` when
    /// there is none. Its stamp, if due, is for the caller to check before
    /// [`identity`](Self::identity).
    pub fn check(&self, headers: &HeaderMap, now: u64) -> Result<Option<Session>> {
        let Some(value) = find_cookie(headers) else {
            return Ok(None);
        };
        let bad = || Error::Unauthorized("session cookie invalid or expired".into());
        let (body, sig) = value.split_once('.').ok_or_else(bad)?;
        let sig = B64.decode(sig).map_err(|_| bad())?;
        let mut h = mac(&self.key);
        h.update(body.as_bytes());
        h.verify_slice(&sig).map_err(|_| bad())?;
        let p: Payload = B64
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(bad)?;
        // Bounded by neither a token nor an account: a cookie of an older version.
        if now >= p.e || (p.l.is_none() && p.s.is_none()) {
            return Err(bad());
        }
        let renewable = p.l.is_none_or(|l| l > p.e);
        let renew = renewable && p.e - now < self.ttl / 2;
        Ok(Some(Session { payload: p, renew }))
    }
}

/// Whether anything secret (beyond public keys) is configured to derive the cookie key from.
fn has_secret(config: &Config) -> bool {
    config.seq_secret.is_some()
        || config.jwt_key.is_some()
        || config
            .couchdb_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| u.password().is_some())
}

/// The `AuthSession` value among the request's cookies.
pub(crate) fn find_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use clap::Parser;

    fn sessions(extra: &[&str]) -> Sessions {
        let mut args = vec!["couchgate", "--session-secret", "0123456789abcdef0123"];
        args.extend_from_slice(extra);
        Sessions::new(&Config::from_args(Args::try_parse_from(args).unwrap()).unwrap())
    }

    fn ann(expires: Option<u64>) -> Identity {
        Identity {
            user: "ann".into(),
            roles: vec!["r".into()],
            method: AuthMethod::Jwt,
            expires,
            service: None,
            renewed_cookie: None,
        }
    }

    fn request_with(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("a=b; {pair}").parse().unwrap(),
        );
        h
    }

    /// The identity of the cookie in `headers`, its stamp taken as current.
    fn who(s: &Sessions, headers: &HeaderMap, now: u64) -> Result<Option<Identity>> {
        s.check(headers, now)?
            .map(|session| s.identity(session, false, now))
            .transpose()
    }

    const ACCOUNT: [u8; 32] = [7; 32];

    #[test]
    fn a_session_names_its_user_until_it_expires() {
        let s = sessions(&[]);
        let c = s.open(&ann(None), None, Some(&ACCOUNT), 1000).unwrap();
        assert!(c.contains("Max-Age=600") && c.contains("HttpOnly") && !c.contains("Secure"));
        let who = who(&s, &request_with(&c), 1100).unwrap().unwrap();
        assert_eq!((who.user.as_str(), who.roles.len()), ("ann", 1));
        assert_eq!(who.method, AuthMethod::Cookie);
        assert_eq!(who.expires, Some(1600));
        assert!(
            who.renewed_cookie.is_none(),
            "young sessions are not renewed"
        );
        let old = self::who(&s, &request_with(&c), 1400).unwrap().unwrap();
        let renewed = old.renewed_cookie.expect("renewed past half its life");
        let who = self::who(&s, &request_with(&renewed), 1900)
            .unwrap()
            .unwrap();
        assert_eq!(who.expires, Some(2000));
        assert!(s.check(&request_with(&c), 1600).is_err(), "expired");
        assert!(s.check(&HeaderMap::new(), 1000).unwrap().is_none());
    }

    #[test]
    fn a_password_session_is_due_for_a_check_each_period() {
        let s = sessions(&[]);
        let c = s.open(&ann(None), None, Some(&ACCOUNT), 1000).unwrap();
        let session = s.check(&request_with(&c), 1059).unwrap().unwrap();
        assert_eq!(session.stamp_due(1059, 60), None, "checked 59 s ago");
        let session = s.check(&request_with(&c), 1060).unwrap().unwrap();
        assert_eq!(
            session.stamp_due(1060, 60),
            Some(s.stamp(&ACCOUNT).as_str())
        );
        assert_ne!(s.stamp(&ACCOUNT), s.stamp(&[8; 32]));
        // Once confirmed, the cookie records the check and is not due again for a period.
        let confirmed = s.identity(session, true, 1060).unwrap();
        let again = request_with(&confirmed.renewed_cookie.unwrap());
        let session = s.check(&again, 1119).unwrap().unwrap();
        assert_eq!(session.stamp_due(1119, 60), None);
        assert_eq!(session.user(), "ann");
        assert_eq!(session.roles(), ["r"]);
        // The stamp is keyed: nothing of the account is in the cookie.
        assert!(!c.contains(&B64.encode(ACCOUNT)));
    }

    #[test]
    fn a_session_needs_a_bound() {
        let s = sessions(&[]);
        assert!(s.open(&ann(None), None, None, 1000).is_err());
        // A cookie bounded by neither token nor account (older versions issued them).
        let body = B64.encode(br#"{"u":"ann","r":[],"e":2000}"#);
        let mut h = mac(&s.key);
        h.update(body.as_bytes());
        let value = format!("{body}.{}", B64.encode(h.finalize().into_bytes()));
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("{COOKIE}={value}").parse().unwrap(),
        );
        assert_eq!(s.check(&headers, 1000).unwrap_err().status(), 401);
    }

    #[test]
    fn a_token_session_never_outlives_its_token() {
        let s = sessions(&[]);
        let c = s.open(&ann(Some(1200)), Some(1200), None, 1000).unwrap();
        assert!(c.contains("Max-Age=200"));
        let who = who(&s, &request_with(&c), 1150).unwrap().unwrap();
        assert_eq!(who.expires, Some(1200));
        assert!(who.renewed_cookie.is_none(), "nothing left to renew");
        let session = s.check(&request_with(&c), 1150).unwrap().unwrap();
        assert_eq!(session.stamp_due(1150, 0), None, "no account to check");
    }

    #[test]
    fn forged_or_foreign_cookies_are_refused() {
        let s = sessions(&[]);
        let c = s.open(&ann(None), None, Some(&ACCOUNT), 1000).unwrap();
        let value = c
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("AuthSession=");
        let (body, sig) = value.split_once('.').unwrap();
        let forged_body = B64.encode(br#"{"u":"bob","r":[],"e":99999}"#);
        for bad in [
            format!("AuthSession={forged_body}.{sig}"),
            format!("AuthSession={body}.{}", B64.encode([0u8; 32])),
            "AuthSession=garbage".to_string(),
        ] {
            let mut h = HeaderMap::new();
            h.insert(http::header::COOKIE, bad.parse().unwrap());
            assert_eq!(s.check(&h, 1000).unwrap_err().status(), 401, "{bad}");
        }
        let other = Sessions::new(
            &Config::from_args(
                Args::try_parse_from(["couchgate", "--session-secret", "another-secret-0123"])
                    .unwrap(),
            )
            .unwrap(),
        );
        assert!(other.check(&request_with(&c), 1000).is_err());
        assert!(s.close().contains("Max-Age=0"));
    }
}
