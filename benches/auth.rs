//! What authenticating one request costs couchgate's CPU, in steady state (the key is known,
//! no network): `Authenticator::authenticate` on the request headers, for a bearer token of
//! each key type that was verified before (the usual case: a client sends the same token on
//! every request), for a session cookie, and, for comparison, a first sight of each token (the
//! full signature check). Run: `cargo bench --bench auth`.

use clap::Parser;
use couchgate::auth::Authenticator;
use couchgate::backend::Backend;
use couchgate::config::{Args, Config};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "bench-secret-0123456789abcdef0123";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn authenticator() -> Authenticator {
    let keys = ["rsa1.pub.pem", "ec256.pub.pem", "ed25519.pub.pem"]
        .map(fixture)
        .join(",");
    let args = Args::try_parse_from([
        "couchgate",
        "--couchdb-url",
        "http://127.0.0.1:9",
        "--jwt-secret",
        SECRET,
        "--jwt-public-key",
        &keys,
    ])
    .expect("bench arguments");
    let config = Config::from_args(args).expect("bench configuration");
    let backend = Backend::new("http://127.0.0.1:9", &config).expect("backend client");
    Authenticator::new(&config, &backend).expect("authenticator")
}

fn token(alg: Algorithm, serial: u64) -> String {
    let pem = |f: &str| std::fs::read(fixture(f)).expect("fixture");
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem("rsa1.key.pem")),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem("ec256.key.pem")),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem("ed25519.key.pem")),
        _ => Ok(EncodingKey::from_secret(SECRET.as_bytes())),
    }
    .expect("signing key");
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "sub": "user-with-a-realistic-name@example.com", "exp": now + 3600, "iat": now,
        "iss": "https://idp.example/", "aud": "app", "serial": serial,
        "_couchdb.roles": ["member", "editor"],
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("token")
}

fn headers(name: http::HeaderName, value: String) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, value.parse().expect("header value"));
    h
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let auth = authenticator();
    let mut steady = c.benchmark_group("steady state (token seen before)");
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let h = headers(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token(alg, 0)),
        );
        rt.block_on(auth.authenticate(&h, None)).expect("valid");
        steady.bench_function(format!("{alg:?}"), |b| {
            b.iter(|| rt.block_on(auth.authenticate(&h, None)).expect("valid"))
        });
    }
    let who = rt
        .block_on(auth.verify_token(&token(Algorithm::HS256, 0)))
        .expect("valid");
    let cookie = rt.block_on(auth.open_session(&who, jsonwebtoken::get_current_timestamp()));
    let cookie = cookie.expect("cookie");
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let h = headers(http::header::COOKIE, pair);
    steady.bench_function("AuthSession cookie", |b| {
        b.iter(|| rt.block_on(auth.authenticate(&h, None)).expect("valid"))
    });
    steady.finish();

    let mut first = c.benchmark_group("first sight (full signature check)");
    first.sample_size(20);
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let mut serial = 1;
        first.bench_function(format!("{alg:?}"), |b| {
            b.iter_batched(
                || {
                    serial += 1;
                    headers(
                        http::header::AUTHORIZATION,
                        format!("Bearer {}", token(alg, serial)),
                    )
                },
                |h| rt.block_on(auth.authenticate(&h, None)).expect("valid"),
                BatchSize::SmallInput,
            )
        });
    }
    first.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
