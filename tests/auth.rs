//! Authentication end to end, through the couchgate binary over a real backend: every token
//! algorithm and key source (PEM, JWK and JWKS files, a JWKS URL served here with key
//! rotation), every rejection reason, sessions and their precedence, feeds ending when their
//! token expires, Basic auth against the backend's `_users`, failure limits, and roles.

mod support;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Answer, Backend, Client, Gate, SECRET};
use Algorithm::*;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// The signing key for `alg`: a fixture file name, or the HMAC secret itself.
fn encoding_key(alg: Algorithm, key: &str) -> EncodingKey {
    let pem = || std::fs::read(fixture(key)).unwrap();
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => EncodingKey::from_rsa_pem(&pem()),
        ES256 | ES384 => EncodingKey::from_ec_pem(&pem()),
        EdDSA => EncodingKey::from_ed_pem(&pem()),
        _ => Ok(EncodingKey::from_secret(key.as_bytes())),
    }
    .unwrap()
}

fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(String::from);
    jsonwebtoken::encode(&h, claims, &encoding_key(alg, key)).unwrap()
}

/// The public JWK of a fixture key, limited to `alg`.
fn jwk(alg: Algorithm, key: &str, kid: &str) -> Value {
    let mut j = Jwk::from_encoding_key(&encoding_key(alg, key), alg).unwrap();
    j.common.key_id = Some(kid.into());
    serde_json::to_value(j).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn bearer(gate: &Gate, token: &str) -> Client {
    Client::new(&gate.url, Some(token.to_owned()))
}

/// A 401 naming `reason`, without the token in it.
fn refused(a: &Answer, reason: &str, token: &str, ctx: &str) {
    assert_eq!(a.status, 401, "{ctx}: {}", a.body);
    assert_eq!(a.body["error"], "unauthorized", "{ctx}");
    assert_eq!(a.body["reason"], reason, "{ctx}");
    let text = String::from_utf8_lossy(&a.bytes);
    for piece in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!text.contains(piece), "{ctx}: the answer echoes the token");
    }
}

#[tokio::test]
async fn every_algorithm_with_keys_from_pem_jwk_and_jwks_files() {
    let backend = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let jwk_file = dir.path().join("ec256.jwk.json");
    std::fs::write(&jwk_file, jwk(ES256, "ec256.key.pem", "ec-1").to_string()).unwrap();
    let jwks_file = dir.path().join("ed.jwks.json");
    let set = json!({"keys": [jwk(EdDSA, "ed25519.key.pem", "ed-1")]});
    std::fs::write(&jwks_file, set.to_string()).unwrap();
    let files = format!(
        "{},{},{},{}",
        fixture("rsa1.pub.pem"),
        jwk_file.display(),
        fixture("ec384.pub.pem"),
        jwks_file.display()
    );
    // Gate::start adds --jwt-secret: several keys of every kind at once.
    let gate = Gate::start(&backend, &["--jwt-public-key", &files]);
    let cases: Vec<(Algorithm, &str, Option<&str>)> = vec![
        (RS256, "rsa1.key.pem", None),
        (RS384, "rsa1.key.pem", None),
        (RS512, "rsa1.key.pem", None),
        (PS256, "rsa1.key.pem", None),
        (PS384, "rsa1.key.pem", None),
        (PS512, "rsa1.key.pem", None),
        (ES256, "ec256.key.pem", Some("ec-1")),
        (ES384, "ec384.key.pem", None),
        (EdDSA, "ed25519.key.pem", Some("ed-1")),
        (HS256, SECRET, None),
        (HS384, SECRET, None),
        (HS512, SECRET, None),
    ];
    for (alg, key, kid) in cases {
        let user = format!("user-{alg:?}").to_lowercase();
        let t = sign(alg, key, kid, &json!({"sub": user, "exp": now() + 600}));
        let c = bearer(&gate, &t);
        let s = c.get("/_session").await.ok();
        assert_eq!(s["userCtx"]["name"], user.as_str(), "{alg:?}");
        c.create_db("notes").await;
        assert_eq!(c.put("/notes/d", json!({})).await.status, 201, "{alg:?}");
    }
    // A key that is not configured, and keys used for the wrong algorithm, are refused.
    let claims = json!({"sub": "x", "exp": now() + 600});
    let other = sign(RS256, "rsa2.key.pem", None, &claims);
    let why = "token signature does not match";
    refused(
        &bearer(&gate, &other).get("/_session").await,
        why,
        &other,
        "rsa2",
    );
    let p384_as_es256 = sign(ES384, "ec384.key.pem", Some("ec-1"), &claims);
    let a = bearer(&gate, &p384_as_es256).get("/_session").await;
    refused(
        &a,
        "token algorithm not accepted",
        &p384_as_es256,
        "ES384 for ec-1",
    );
}

/// Every reason a token is refused, with 401 and a reason that never repeats the token.
#[tokio::test]
async fn every_rejection_reason() {
    let backend = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let jwks_file = dir.path().join("keys.json");
    let set = json!({"keys": [jwk(RS256, "rsa1.key.pem", "r1")]});
    std::fs::write(&jwks_file, set.to_string()).unwrap();
    let gate = Gate::start_with_args(
        &backend,
        &[
            "--jwt-public-key",
            &format!("{},{}", jwks_file.display(), fixture("ec256.pub.pem")),
            "--jwt-issuer",
            "https://idp.test/,https://other-idp.test/",
            "--jwt-audience",
            "app",
            "--jwt-leeway-secs",
            "5",
            "--seq-secret",
            "rejection-reasons-seq-secret",
        ],
    );
    let good = json!({"sub": "ann", "exp": now() + 600, "iss": "https://idp.test/", "aud": "app"});
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let rs = |claims: &Value| sign(RS256, "rsa1.key.pem", Some("r1"), claims);
    let ok = rs(&good);
    assert_eq!(
        bearer(&gate, &ok).get("/_session").await.ok()["userCtx"]["name"],
        "ann"
    );
    let second_issuer = rs(&with("iss", json!("https://other-idp.test/")));
    assert_eq!(
        bearer(&gate, &second_issuer).get("/_session").await.status,
        200
    );
    let ec = sign(ES256, "ec256.key.pem", None, &good);
    assert_eq!(bearer(&gate, &ec).get("/_session").await.status, 200);

    let parts: Vec<&str> = ok.split('.').collect();
    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    let tampered_sig = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        sig.iter().collect::<String>()
    );
    let tampered_claims = format!(
        "{}.{}.{}",
        parts[0],
        b64(with("sub", json!("bob")).to_string().as_bytes()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    // HMAC keyed with the public key: the classic algorithm confusion.
    let public_pem = std::fs::read_to_string(fixture("rsa1.pub.pem")).unwrap();
    let confused = sign(HS256, &public_pem, None, &good);
    let confused_kid = sign(HS256, &public_pem, Some("r1"), &good);
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            rs(&with("exp", json!(now() - 60))),
            "token expired",
        ),
        (
            "not yet valid",
            rs(&with("nbf", json!(now() + 600))),
            "token not valid yet (nbf)",
        ),
        (
            "iat ahead",
            rs(&with("iat", json!(now() + 600))),
            "token issued in the future (iat)",
        ),
        (
            "wrong aud",
            rs(&with("aud", json!("other"))),
            "token audience not accepted",
        ),
        (
            "wrong iss",
            rs(&with("iss", json!("https://evil.test/"))),
            "token issuer not accepted",
        ),
        ("no exp", rs(&no_exp), "token has no `exp` claim"),
        (
            "no user",
            rs(&with("sub", json!(null))),
            "token has no user name in claim `sub`",
        ),
        (
            "unknown kid",
            sign(RS256, "rsa2.key.pem", Some("r9"), &good),
            "token key id (kid) unknown",
        ),
        (
            "right kid, other key",
            sign(RS256, "rsa2.key.pem", Some("r1"), &good),
            "token signature does not match",
        ),
        (
            "alg outside the JWK's",
            sign(PS256, "rsa1.key.pem", Some("r1"), &good),
            "token algorithm not accepted",
        ),
        ("alg none", none, "token algorithm not accepted"),
        (
            "HMAC with the public key",
            confused,
            "token algorithm not accepted",
        ),
        (
            "HMAC with the public key, kid",
            confused_kid,
            "token algorithm not accepted",
        ),
        (
            "tampered signature",
            tampered_sig,
            "token signature does not match",
        ),
        (
            "tampered claims",
            tampered_claims,
            "token signature does not match",
        ),
        ("malformed", "abc.def".into(), "malformed token"),
        ("garbage", "!!!".into(), "malformed token"),
        (
            "oversized",
            format!("{}.{}.{}", parts[0], "a".repeat(17_000), parts[2]),
            "token too large",
        ),
    ];
    for (what, token, reason) in &cases {
        let a = bearer(&gate, token).get("/notes").await;
        refused(&a, reason, token, what);
        assert!(a.headers.contains_key("www-authenticate"), "{what}");
    }
}

/// A JWKS endpoint served by the test, whose keys can be swapped.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(keys: Value) -> JwksServer {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let keys = Arc::new(Mutex::new(keys));
    let hits = Arc::new(AtomicUsize::new(0));
    let (k, h) = (Arc::clone(&keys), Arc::clone(&hits));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (k, h) = (Arc::clone(&k), Arc::clone(&h));
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let body = k.lock().unwrap().to_string();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .header("cache-control", "public, max-age=3600")
                                .body(Full::new(bytes::Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    JwksServer { url, keys, hits }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_key_rotation_and_rate_limited_refresh() {
    let backend = Backend::start();
    let idp = jwks_server(json!({"keys": [
        jwk(RS256, "rsa1.key.pem", "k1"),
        // Unusable entries are skipped, not fatal.
        {"kty": "oct", "k": b64(SECRET.as_bytes()), "kid": "hmac"},
        {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
    ]}))
    .await;
    let gate = Gate::start_with_args(
        &backend,
        &[
            "--jwks-url",
            &idp.url,
            "--jwt-issuer",
            "https://idp.test/",
            "--jwt-audience",
            "app",
            "--jwks-min-refresh-secs",
            "300",
            "--seq-secret",
            "jwks-rotation-seq-secret",
        ],
    );
    let claims = |user: &str| json!({"sub": user, "exp": now() + 600, "iss": "https://idp.test/", "aud": "app"});
    let k1 = sign(RS256, "rsa1.key.pem", Some("k1"), &claims("ann"));
    assert_eq!(
        bearer(&gate, &k1).get("/_session").await.ok()["userCtx"]["name"],
        "ann"
    );
    assert_eq!(idp.hits.load(Ordering::SeqCst), 1, "one fetch at start-up");
    // The provider rotates to a new key: the first token naming it triggers a fetch.
    *idp.keys.lock().unwrap() = json!({"keys": [jwk(EdDSA, "ed25519.key.pem", "k2")]});
    let k2 = sign(EdDSA, "ed25519.key.pem", Some("k2"), &claims("bob"));
    assert_eq!(
        bearer(&gate, &k2).get("/_session").await.ok()["userCtx"]["name"],
        "bob"
    );
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
    // The withdrawn key stops working at once, even for a token verified before.
    let a = bearer(&gate, &k1).get("/_session").await;
    refused(&a, "token key id (kid) unknown", &k1, "withdrawn k1");
    // Unknown kids do not refetch more than once per --jwks-min-refresh-secs.
    for i in 0..5 {
        let t = sign(
            RS256,
            "rsa2.key.pem",
            Some(&format!("k-new-{i}")),
            &claims("x"),
        );
        refused(
            &bearer(&gate, &t).get("/_session").await,
            "token key id (kid) unknown",
            &t,
            "new kid",
        );
    }
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2, "rate-limited");
    // Still rate-limited for the next unknown kid (that a symmetric key published at a URL is
    // never loaded is unit-tested in auth::keys).
    *idp.keys.lock().unwrap() =
        json!({"keys": [{"kty": "oct", "k": b64(SECRET.as_bytes()), "kid": "hmac"}]});
    let hs = sign(HS256, SECRET, Some("hmac"), &claims("eve"));
    let a = bearer(&gate, &hs).get("/_session").await;
    refused(&a, "token key id (kid) unknown", &hs, "hmac");
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2, "still rate-limited");
}

fn cookie_of(a: &Answer) -> String {
    let set = a.headers["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

async fn with_cookie(c: &Client, method: Method, path: &str, cookie: &str) -> Answer {
    c.send(
        c.request(method, path)
            .header("cookie", cookie)
            .json(&json!({})),
    )
    .await
}

#[tokio::test]
async fn sessions_and_their_precedence() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let anon = gate.anonymous();
    let alice = gate.client("alice");
    alice.create_db("notes").await;

    // A session from the Authorization header, and one from {"token": ...}.
    let a = alice.post("/_session", json!({})).await;
    assert_eq!(a.body, json!({"ok": true, "name": "alice", "roles": []}));
    let cookie = cookie_of(&a);
    let a = anon
        .post("/_session", json!({"token": support::token("bob", 3600)}))
        .await;
    assert_eq!(a.body["name"], "bob");
    let bob_cookie = cookie_of(&a);

    let s = with_cookie(&anon, Method::GET, "/_session", &cookie)
        .await
        .ok();
    assert_eq!(s["userCtx"]["name"], "alice");
    assert_eq!(s["info"]["authenticated"], "cookie");
    let put = anon
        .request(Method::PUT, "/notes/by-cookie")
        .header("cookie", &cookie);
    assert_eq!(anon.send(put.json(&json!({"v": 1}))).await.status, 201);
    assert_eq!(alice.get("/notes/by-cookie").await.ok()["v"], 1);

    // An explicit Authorization header wins over the cookie, good or bad.
    let r = alice
        .request(Method::GET, "/_session")
        .header("cookie", &bob_cookie);
    assert_eq!(alice.send(r).await.ok()["userCtx"]["name"], "alice");
    let bad = Client::new(&gate.url, Some("not-a-token".into()));
    let a = with_cookie(&bad, Method::GET, "/notes/by-cookie", &cookie).await;
    a.error(401, "unauthorized");
    let basic = anon
        .request(Method::GET, "/notes/by-cookie")
        .header("cookie", &cookie)
        .header("authorization", "Basic YWxpY2U6eA==");
    anon.send(basic).await.error(401, "unauthorized");

    // A forged or foreign cookie is refused; DELETE ends the session.
    let forged = format!("{}x", cookie);
    with_cookie(&anon, Method::GET, "/_session", &forged)
        .await
        .error(401, "unauthorized");
    let a = anon.delete("/_session").await;
    assert_eq!(a.body["ok"], true);
    assert!(a.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // Sessions need credentials: no token, no password, no session.
    anon.post("/_session", json!({}))
        .await
        .error(400, "bad_request");
    anon.post("/_session", json!({"token": "x.y.z"}))
        .await
        .error(401, "unauthorized");
    anon.post("/_session", json!({"name": "a", "password": "b"}))
        .await
        .error(401, "unauthorized");
    // A session opened with a token ends when the token does.
    let short = anon
        .post("/_session", json!({"token": support::token("carl", 100)}))
        .await;
    let max_age: u64 = short.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((100..=132).contains(&max_age), "{max_age}");
}

/// Reads a streamed answer to its end; its text and how long it took.
async fn read_feed(c: &Client, path: &str) -> (u16, String, Duration) {
    let start = Instant::now();
    let mut resp = c.request(Method::GET, path).send().await.unwrap();
    let status = resp.status().as_u16();
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = resp.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the feed did not end");
    (status, text, start.elapsed())
}

#[tokio::test]
async fn live_feeds_end_when_their_token_expires() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &["--jwt-leeway-secs", "0"]);
    gate.client("ann").create_db("notes").await;
    let ttl = 3;
    for feed in [
        "continuous&heartbeat=500",
        "eventsource&heartbeat=500",
        "longpoll&timeout=60000",
    ] {
        let token = support::token("ann", ttl);
        let c = Client::new(&gate.url, Some(token));
        let put = c.put("/notes/doc", json!({"feed": feed})).await;
        assert!(put.status.is_success() || put.status == 409);
        let (status, text, took) =
            read_feed(&c, &format!("/notes/_changes?since=now&feed={feed}")).await;
        assert_eq!(status, 200, "{feed}");
        assert!(
            took >= Duration::from_secs(ttl as u64 - 1),
            "{feed} ended early: {took:?}"
        );
        assert!(
            took < Duration::from_secs(ttl as u64 + 10),
            "{feed} ended late: {took:?}"
        );
        if !feed.starts_with("eventsource") {
            assert!(text.contains("last_seq"), "{feed}: {text}");
        }
        // The next request with that token is refused.
        c.get("/notes/_changes?feed=longpoll&since=now")
            .await
            .error(401, "unauthorized");
    }
}

/// Creates a user in the backend's `_users` database.
async fn backend_user(backend: &Backend, name: &str, password: &str, roles: Value) {
    let admin = Client::new(&backend.url, None);
    let a = admin
        .put(
            &format!("/_users/org.couchdb.user:{name}"),
            json!({"name": name, "password": password, "roles": roles, "type": "user"}),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.body);
}

fn basic(gate: &Gate, name: &str, password: &str) -> BasicClient {
    BasicClient {
        c: gate.anonymous(),
        name: name.into(),
        password: password.into(),
    }
}

struct BasicClient {
    c: Client,
    name: String,
    password: String,
}

impl BasicClient {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut r = self
            .c
            .request(method, path)
            .basic_auth(&self.name, Some(&self.password));
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.c.send(r).await
    }
}

/// Existing CouchDB users move behind couchgate unchanged: Basic auth and name/password
/// sessions, checked by the backend (PouchDB Server, or the CouchDB of COUCHDB_URL).
#[tokio::test]
async fn basic_auth_and_password_sessions_against_the_backend_users() {
    let backend = Backend::start();
    let gate = Gate::start(
        &backend,
        &[
            "--basic-auth",
            "--shared-identities",
            "--auth-failures-per-user",
            "3",
            "--auth-failures-per-address",
            "8",
        ],
    );
    let name = format!("u{}", support::unique_db().replace('-', "_"));
    backend_user(&backend, &name, "correct horse", json!(["reader"])).await;

    let ann = basic(&gate, &name, "correct horse");
    let s = ann.send(Method::GET, "/_session", None).await.ok();
    assert_eq!(s["userCtx"]["name"], name.as_str());
    assert_eq!(s["userCtx"]["roles"], json!(["reader"]));
    assert_eq!(s["info"]["authenticated"], "default");
    assert_eq!(ann.send(Method::PUT, "/notes", None).await.status, 201);
    assert_eq!(
        ann.send(Method::PUT, "/notes/a", Some(json!({"v": 1})))
            .await
            .status,
        201
    );
    // The same user with a token (user claim = the CouchDB name) sees the same database.
    assert_eq!(gate.client(&name).get("/notes/a").await.ok()["v"], 1);

    // name/password sessions, JSON or form-encoded.
    let anon = gate.anonymous();
    let a = anon
        .post(
            "/_session",
            json!({"name": name, "password": "correct horse"}),
        )
        .await;
    assert_eq!(a.body["name"], name.as_str());
    let cookie = cookie_of(&a);
    let s = with_cookie(&anon, Method::GET, "/_session", &cookie)
        .await
        .ok();
    assert_eq!(s["userCtx"]["name"], name.as_str());
    let form = anon
        .request(Method::POST, "/_session")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name={name}&password=correct+horse"));
    assert_eq!(anon.send(form).await.ok()["name"], name.as_str());

    // Wrong passwords: 401, then 429 with Retry-After, even for the right password.
    let wrong = basic(&gate, &name, "wrong");
    for _ in 0..3 {
        wrong
            .send(Method::GET, "/notes/a", None)
            .await
            .error(401, "unauthorized");
    }
    let a = wrong.send(Method::GET, "/notes/a", None).await;
    a.error(429, "too_many_requests");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=61).contains(&retry), "{retry}");
    ann.send(Method::GET, "/notes/a", None)
        .await
        .error(429, "too_many_requests");
    anon.post(
        "/_session",
        json!({"name": name, "password": "correct horse"}),
    )
    .await
    .error(429, "too_many_requests");
    // Tokens are not affected; other names fail per address until that limit is reached.
    assert_eq!(gate.client(&name).get("/notes/a").await.status, 200);
    for i in 0..5 {
        basic(&gate, &format!("nobody{i}"), "x")
            .send(Method::GET, "/_session", None)
            .await
            .error(401, "unauthorized");
    }
    basic(&gate, "nobody-else", "x")
        .send(Method::GET, "/_session", None)
        .await
        .error(429, "too_many_requests");
    assert_eq!(gate.client("zed").get("/_session").await.status, 200);
}

#[tokio::test]
async fn service_role_acts_for_users_and_read_only_role_only_reads() {
    let backend = Backend::start();
    let gate = Gate::start(
        &backend,
        &["--service-role", "svc", "--read-only-role", "viewer"],
    );
    let with_roles = |user: &str, roles: Value| {
        let t = support::token_with(
            json!({"sub": user, "exp": now() + 600, "roles": roles}),
            SECRET,
        );
        Client::new(&gate.url, Some(t))
    };
    let bob = gate.client("bob");
    bob.create_db("notes").await;
    let svc = with_roles("app-server", json!(["svc"]));
    let as_bob = |m: Method, p: &str| svc.request(m, p).header("X-Couchgate-User", "bob");
    let a = svc
        .send(as_bob(Method::PUT, "/notes/from-app").json(&json!({"v": 1})))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(bob.get("/notes/from-app").await.ok()["v"], 1);
    let s = svc.send(as_bob(Method::GET, "/_session")).await.ok();
    assert_eq!(s["userCtx"]["name"], "bob");
    // Without the role, the header is refused, not ignored.
    let eve = gate.client("eve");
    let r = eve
        .request(Method::GET, "/notes/from-app")
        .header("X-Couchgate-User", "bob");
    eve.send(r).await.error(403, "forbidden");

    // Read-only: reads (including the POST reads) work, every write is 403.
    let viewer = with_roles("bob", json!(["viewer"]));
    assert_eq!(viewer.get("/notes/from-app").await.status, 200);
    assert_eq!(viewer.get("/notes").await.status, 200);
    let reads = [
        ("/notes/_all_docs", json!({"keys": ["from-app"]})),
        ("/notes/_changes", json!({})),
        ("/notes/_bulk_get", json!({"docs": [{"id": "from-app"}]})),
        ("/notes/_revs_diff", json!({"from-app": ["1-abc"]})),
    ];
    for (path, body) in reads {
        let a = viewer.post(path, body).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    let writes: Vec<(Method, &str)> = vec![
        (Method::PUT, "/notes/x"),
        (Method::DELETE, "/notes/from-app"),
        (Method::POST, "/notes/_bulk_docs"),
        (Method::POST, "/notes"),
        (Method::PUT, "/notes/_local/cp"),
        (Method::PUT, "/notes/x/att.txt"),
        (Method::DELETE, "/notes"),
        (Method::PUT, "/other"),
        (Method::POST, "/notes/_ensure_full_commit"),
    ];
    for (m, path) in writes {
        let a = viewer
            .send(viewer.request(m.clone(), path).json(&json!({"docs": []})))
            .await;
        assert_eq!(a.status, 403, "{m} {path}: {}", a.body);
    }
    assert_eq!(bob.get("/notes").await.ok()["doc_count"], 1);
}
