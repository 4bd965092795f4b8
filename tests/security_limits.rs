//! Limits an attacker meets, through the couchgate binary over a real backend:
//! - slow clients: header-read, idle and body-read timeouts, and shedding the connection idle
//!   longest at `--max-connections`, while live `_changes` feeds outlast every timeout;
//! - extreme numbers in every numeric token claim, query parameter and header: each gets an
//!   HTTP answer, and nothing overflows;
//! - weak configurations (a sequence secret derivable from public material, any CORS origin
//!   with credentials, two identity sources in one namespace) refuse to start with exit 64.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{shaped, Answer, Backend, Client, Gate, SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any test here waits for something that should happen within its timeouts.
const PATIENCE: Duration = Duration::from_secs(15);

async fn connect(gate: &Gate) -> TcpStream {
    let addr = gate.url.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection; how long that took, or `None` when it was
/// still open after [`PATIENCE`].
async fn closed_after(s: &mut TcpStream) -> Option<(Duration, Vec<u8>)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = PATIENCE.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((start.elapsed(), got)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A raw HTTP/1.1 response: status, lower-cased head and body.
struct Raw {
    status: u16,
    head: String,
    body: Value,
}

/// Reads one response with a `Content-Length` body.
async fn read_response(s: &mut TcpStream) -> Raw {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("no answer in time")
            .expect("read failed");
        assert!(
            n > 0,
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while got.len() < head_end + len {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .expect("body not in time")
            .unwrap();
        assert!(n > 0, "body cut short");
        got.extend_from_slice(&buf[..n]);
    }
    let body = serde_json::from_slice(&got[head_end..head_end + len]).unwrap_or(Value::Null);
    Raw { status, head, body }
}

fn within(d: Duration, lo: f64, hi: f64, what: &str) {
    let s = d.as_secs_f64();
    assert!(
        lo <= s && s <= hi,
        "{what}: {s:.2} s, expected {lo}..{hi} s"
    );
}

/// A client giving up after [`PATIENCE`].
fn quick_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

#[tokio::test]
async fn at_the_connection_cap_the_connection_idle_longest_makes_room() {
    let backend = Backend::start();
    // Timeouts far beyond the test: only shedding can admit the new client.
    let gate = Gate::start(
        &backend,
        &[
            "--max-connections",
            "4",
            "--header-read-timeout-secs",
            "120",
            "--idle-timeout-secs",
            "120",
        ],
    );
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&gate).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: couchgate\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    let start = Instant::now();
    let r = quick_client()
        .get(format!("{}/", gate.url))
        .send()
        .await
        .expect("a real client is served while half-open connections hold every slot");
    assert_eq!(r.status(), 200);
    within(start.elapsed(), 0.0, 10.0, "served");
    // The oldest of them (connections are accepted in order) was closed for it.
    assert!(
        closed_after(&mut stalled[0]).await.is_some(),
        "the connection idle longest is closed"
    );
}

#[tokio::test]
async fn incomplete_request_heads_are_cut_at_the_header_read_timeout() {
    let backend = Backend::start();
    let gate = Gate::start(
        &backend,
        &[
            "--header-read-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "60",
        ],
    );
    let mut silent = connect(&gate).await;
    let mut half = connect(&gate).await;
    half.write_all(b"GET / HTTP/1.1\r\nHost: couchgate\r\nX-A: ")
        .await
        .unwrap();
    // A head that keeps trickling in is cut all the same.
    let trickle = connect(&gate).await;
    let (mut trickle_read, mut trickle_write) = trickle.into_split();
    let writer = tokio::spawn(async move {
        for b in b"GET / HTTP/1.1\r\nHost: couchgate\r\nX-Slow: 0123456789012345678901234567890" {
            if trickle_write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    for (what, s) in [("silent", &mut silent), ("half a head", &mut half)] {
        let (after, _) = closed_after(s)
            .await
            .unwrap_or_else(|| panic!("{what}: still open"));
        within(after, 0.0, 5.0, what);
    }
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let cut = tokio::time::timeout(PATIENCE, trickle_read.read(&mut buf)).await;
    assert!(
        matches!(cut, Ok(Ok(0)) | Ok(Err(_))),
        "a trickling head is cut: {cut:?}"
    );
    within(start.elapsed(), 0.0, 5.0, "trickling head");
    writer.abort();
    // The same couchgate serves a complete request at once.
    let r = quick_client()
        .get(format!("{}/", gate.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn kept_alive_connections_close_after_the_idle_timeout_not_the_header_timeout() {
    let backend = Backend::start();
    let gate = Gate::start(
        &backend,
        &[
            "--header-read-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "3",
        ],
    );
    let mut s = connect(&gate).await;
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: couchgate\r\n\r\n")
            .await
            .unwrap();
        let r = read_response(&mut s).await;
        assert_eq!((r.status, &r.body["couchdb"]), (200, &json!("Welcome")));
    }
    let (after, _) = closed_after(&mut s).await.expect("idle connection closed");
    within(after, 2.5, 8.0, "idle keep-alive connection");
}

/// The start of a request whose body never finishes; `/_session` gets no token, so that it
/// reads its body.
fn stalled_upload(
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    chunked: bool,
) -> String {
    let length = if path.contains("streamed") {
        4 << 20
    } else {
        100
    };
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n\r\n10\r\n{\"a\":\"0123456789".to_owned()
    } else {
        format!("Content-Length: {length}\r\n\r\n{{\"a\":\"0123456789")
    };
    let auth = if path == "/_session" {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    format!(
        "{method} {path} HTTP/1.1\r\nHost: couchgate\r\n{auth}Content-Type: {content_type}\r\n\
         {framing}"
    )
}

#[tokio::test]
async fn stalled_request_bodies_get_408_after_the_body_read_timeout() {
    let backend = Backend::start();
    let gate = Gate::start(
        &backend,
        &[
            "--body-read-timeout-secs",
            "1",
            "--header-read-timeout-secs",
            "60",
            "--idle-timeout-secs",
            "60",
        ],
    );
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let token = alice.token.clone().unwrap();
    let json = "application/json";
    let octets = "application/octet-stream";
    let cases = [
        ("PUT", "/notes/doc", json, false),
        ("PUT", "/notes/doc", json, true),
        ("POST", "/notes/_bulk_docs", json, false),
        ("POST", "/notes/_changes", json, false),
        // Attachments stream to the backend as they come (with a length) or after a prefetch.
        ("PUT", "/notes/att-doc/a.bin", octets, false),
        ("PUT", "/notes/att-doc/a.bin", octets, true),
        // One too long to read before forwarding streams on, and is cut there.
        ("PUT", "/notes/att-streamed/a.bin", octets, false),
        ("POST", "/_session", json, false),
    ];
    for (method, path, ct, chunked) in cases {
        let what = format!("{method} {path} chunked={chunked}");
        let mut s = connect(&gate).await;
        let start = Instant::now();
        s.write_all(stalled_upload(method, path, &token, ct, chunked).as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut s).await;
        assert_eq!(r.status, 408, "{what}: {}", r.body);
        assert_eq!(r.body["error"], "request_timeout", "{what}");
        assert!(r.body["reason"].is_string(), "{what}");
        assert!(r.head.contains("connection: close"), "{what}: {}", r.head);
        within(start.elapsed(), 0.9, 8.0, &what);
    }
    // Nothing of the cut uploads was stored (but PouchDB Server keeps what it was sent of a
    // streamed one; CouchDB does not).
    let streamed = (!backend.is_pouchdb_server()).then_some("att-streamed");
    for id in ["doc", "att-doc"].into_iter().chain(streamed) {
        let a = alice.get(&format!("/notes/{id}?attachments=true")).await;
        assert_eq!(a.status, 404, "{id}: {}", a.body);
    }
    // A body that keeps coming, in pieces each within the timeout, is read whole.
    let mut s = connect(&gate).await;
    let body = br#"{"slow": "but steady, and longer than one timeout in all"}"#;
    s.write_all(
        format!(
            "PUT /notes/steady HTTP/1.1\r\nHost: couchgate\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for piece in body.chunks(body.len() / 4 + 1) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.write_all(piece).await.unwrap();
    }
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn live_feeds_outlast_the_idle_header_and_body_timeouts() {
    let backend = Backend::start();
    let gate = Gate::start(
        &backend,
        &[
            "--header-read-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "1",
            "--body-read-timeout-secs",
            "1",
            "--jwt-leeway-secs",
            "0",
        ],
    );
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    for (what, query, wait) in [
        ("longpoll", "feed=longpoll&since=now&timeout=3000", 3.0),
        ("continuous", "feed=continuous&since=now&timeout=2500", 2.5),
    ] {
        let start = Instant::now();
        let a = alice.get(&format!("/notes/_changes?{query}")).await;
        assert_eq!(a.status, 200, "{what}: {}", a.body);
        let text = String::from_utf8_lossy(&a.bytes);
        assert!(
            text.contains("\"last_seq\""),
            "{what} ended early: {text:?}"
        );
        within(start.elapsed(), wait - 0.2, wait + 5.0, what);
    }
    // A feed kept open by heartbeats runs until its token expires (no leeway here: in 3-4 s).
    let short = Client::new(&gate.url, Some(support::token("alice", 3)));
    let start = Instant::now();
    let a = short
        .get("/notes/_changes?feed=continuous&since=now&heartbeat=400")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let text = String::from_utf8_lossy(&a.bytes);
    assert!(text.starts_with("\n\n"), "heartbeats: {text:?}");
    assert!(text.contains("\"last_seq\""), "{text:?}");
    within(start.elapsed(), 2.0, 9.0, "heartbeat feed");
}

#[tokio::test]
async fn connections_serving_a_live_feed_are_never_shed() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &["--max-connections", "1"]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let token = alice.token.clone().unwrap();
    let mut feed = connect(&gate).await;
    feed.write_all(
        format!(
            "GET /notes/_changes?feed=longpoll&since=now&timeout=2500 HTTP/1.1\r\n\
             Host: couchgate\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The answer's head comes at once; its body when the longpoll ends.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = feed.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let started = Instant::now();
    let other = async {
        let r = quick_client()
            .get(format!("{}/", gate.url))
            .send()
            .await
            .expect("served once the feed ends");
        (r.status(), started.elapsed())
    };
    let rest = async {
        while !got.ends_with(b"0\r\n\r\n") {
            let n = feed.read(&mut buf).await.unwrap();
            assert!(n > 0, "the feed was cut");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let ((status, waited), text) = tokio::join!(other, rest);
    assert!(text.contains("\"last_seq\""), "{text}");
    assert_eq!(status, 200);
    within(waited, 1.5, 10.0, "the new client waited for the feed");
}

// --- numbers ---

/// Values at and beyond every integer and float limit, as JSON text.
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "9007199254740992",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e19",
    "1e400",
    "-1e400",
    "\"abc\"",
];

/// An HS256 token over claims given as JSON text (which may hold numbers serde cannot).
fn raw_token(claims: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let message = format!("{}.{}", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(claims));
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
        .unwrap();
    format!("{message}.{sig}")
}

/// Sends a request and asserts an HTTP answer: a success, or a CouchDB-shaped error that is
/// not couchgate's own failure.
async fn answered(r: reqwest::RequestBuilder, what: &str) -> Answer {
    let resp = r
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer ({e})"));
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{what}: answer cut ({e})"))
        .to_vec();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let a = Answer {
        status,
        headers,
        body,
        bytes,
    };
    if !a.status.is_success() {
        shaped(&a, what);
        assert_ne!(
            a.body["error"], "internal_server_error",
            "{what}: {}",
            a.body
        );
    }
    a
}

#[tokio::test]
async fn extreme_numbers_in_claims_and_parameters_get_answers() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let rev = alice.put("/notes/d", json!({"v": 1})).await.ok()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let att = alice
        .request(Method::PUT, &format!("/notes/d/a.txt?rev={rev}"))
        .header("content-type", "text/plain")
        .body("0123456789");
    assert_eq!(alice.send(att).await.status, 201);
    let later = jsonwebtoken::get_current_timestamp() + 3600;

    // Every numeric claim.
    for v in EXTREMES {
        for claims in [
            format!(r#"{{"sub":"alice","exp":{v}}}"#),
            format!(r#"{{"sub":"alice","exp":{later},"nbf":{v}}}"#),
            format!(r#"{{"sub":"alice","exp":{later},"iat":{v}}}"#),
            format!(r#"{{"sub":{v},"exp":{later}}}"#),
        ] {
            let c = Client::new(&gate.url, Some(raw_token(&claims)));
            for path in [
                "/notes",
                "/notes/_changes",
                "/notes/_changes?feed=longpoll",
                "/notes/_changes?feed=continuous&timeout=10",
                "/notes/_changes?feed=eventsource&timeout=10",
                "/_session",
            ] {
                answered(
                    c.request(Method::GET, path),
                    &format!("{claims} GET {path}"),
                )
                .await;
            }
            let what = format!("{claims} POST /_session");
            let s = answered(c.request(Method::POST, "/_session"), &what).await;
            // A session opened with the token ends no later than it.
            if let Some(cookie) = s.headers.get("set-cookie") {
                let pair = cookie
                    .to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .to_owned();
                let anon = gate.anonymous();
                let r = anon
                    .request(Method::GET, "/notes/_changes?feed=continuous&timeout=10")
                    .header("cookie", pair);
                answered(r, &format!("{what}, then its cookie")).await;
            }
        }
    }

    // Every numeric query parameter, and numbers in JSON bodies and headers.
    for v in EXTREMES {
        let text = v.trim_matches('"');
        let e = support::enc(text);
        let mut gets: Vec<String> = ["since", "limit", "seq_interval", "descending"]
            .iter()
            .flat_map(|k| {
                [
                    format!("/notes/_changes?{k}={e}"),
                    format!("/notes/_changes?feed=longpoll&{k}={e}"),
                ]
            })
            .collect();
        for k in ["timeout", "heartbeat"] {
            // Live feeds with a change to send answer at once, whatever they would wait.
            gets.push(format!("/notes/_changes?feed=longpoll&{k}={e}"));
            gets.push(format!("/notes/_changes?{k}={e}"));
        }
        for k in [
            "limit",
            "skip",
            "startkey",
            "endkey",
            "key",
            "start_key",
            "end_key",
        ] {
            gets.push(format!("/notes/_all_docs?{k}={e}"));
        }
        gets.push(format!("/notes/_all_docs?keys=%5B{}%5D", support::enc(v)));
        for k in ["rev", "revs", "revs_info", "latest", "local_seq"] {
            gets.push(format!("/notes/d?{k}={e}"));
        }
        for k in ["open_revs", "atts_since"] {
            gets.push(format!("/notes/d?{k}=%5B{}%5D", support::enc(v)));
        }
        gets.push(format!("/notes/d/a.txt?rev={e}"));
        gets.push(format!("/_uuids?count={e}"));
        for path in &gets {
            answered(alice.request(Method::GET, path), &format!("GET {path}")).await;
        }
        for (path, body) in [
            ("/notes/_all_docs", format!(r#"{{"limit":{v}}}"#)),
            ("/notes/_all_docs", format!(r#"{{"skip":{v}}}"#)),
            ("/notes/_all_docs", format!(r#"{{"keys":[{v}]}}"#)),
            (
                "/notes/_changes?filter=_doc_ids",
                format!(r#"{{"doc_ids":[{v}]}}"#),
            ),
            ("/notes/_revs_diff", format!(r#"{{"d":[{v}]}}"#)),
            (
                "/notes/_bulk_get",
                format!(r#"{{"docs":[{{"id":"d","rev":{v}}}]}}"#),
            ),
            ("/notes/_bulk_docs", format!(r#"{{"docs":[{{"n":{v}}}]}}"#)),
        ] {
            let r = alice
                .request(Method::POST, path)
                .header("content-type", "application/json")
                .body(body.clone());
            answered(r, &format!("POST {path} {body}")).await;
        }
        for range in [
            format!("bytes={text}-{text}"),
            format!("bytes=0-{text}"),
            format!("bytes=-{text}"),
        ] {
            let r = alice
                .request(Method::GET, "/notes/d/a.txt")
                .header("range", &range);
            let a = answered(r, &format!("Range: {range}")).await;
            assert!(a.status.as_u16() < 500, "Range: {range}: {}", a.status);
        }
        // Content-Length: the HTTP layer answers what it cannot use (400, or 431 beyond what
        // it counts), couchgate a length over --max-body-bytes (413) or no body (400).
        let mut s = connect(&gate).await;
        s.write_all(
            format!(
                "PUT /notes/big HTTP/1.1\r\nHost: couchgate\r\nAuthorization: Bearer {}\r\n\
                  Content-Type: application/json\r\nConnection: close\r\n\
                 Content-Length: {text}\r\n\r\n",
                alice.token.as_deref().unwrap()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (_, got) = closed_after(&mut s).await.expect("answered and closed");
        let head = String::from_utf8_lossy(&got);
        assert!(
            ["HTTP/1.1 400", "HTTP/1.1 413", "HTTP/1.1 431"]
                .iter()
                .any(|s| head.starts_with(s)),
            "Content-Length: {text}: {head}"
        );
    }
    let a = alice.get("/").await;
    assert_eq!(a.body["couchdb"], "Welcome", "still serving");
}

// --- configuration ---

/// Runs couchgate with `args`; asserts it refuses to start with exit code 64 and says why,
/// naming `option`.
fn refuses(args: &[&str], option: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_couchgate"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database",
            &support::unique_db(),
        ])
        .args(args)
        .env("COUCHGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.starts_with("couchgate listening") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{args:?}: couchgate started");
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
    assert!(stderr.contains(option), "{args:?}: {stderr}");
    assert!(
        !stderr.contains(SECRET),
        "{args:?}: the secret is not printed"
    );
}

/// A command line couchgate cannot read exits 64 (EX_USAGE), as bad configuration read from
/// a file does, naming what is wrong; `--help` and `--version` exit 0.
#[test]
fn unreadable_command_lines_exit_64() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_couchgate"));
        c.args(args).env("COUCHGATE_LOG", "warn");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // (arguments, environment, the option the message must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--listen", "nonsense"], &[], "--listen"),
        (&["--listen", "localhost:5985"], &[], "--listen"),
        (&[], &[("COUCHGATE_LISTEN", "nonsense")], "--listen"),
        (
            &["--session-same-site", "bogus"],
            &[],
            "--session-same-site",
        ),
        (&["--max-body-bytes", "lots"], &[], "--max-body-bytes"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
        (&["--partitioned", "perhaps"], &[], "--partitioned"),
    ];
    for (args, env, option) in cases {
        let out = run(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(option), "{args:?} {env:?}: {stderr}");
    }
    for flag in ["--help", "--version"] {
        let out = run(&[flag], &[]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(!out.stdout.is_empty(), "{flag} prints");
    }
}

#[test]
fn weak_configurations_refuse_to_start() {
    let backend = Backend::start();
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ec256.pub.pem");
    // A backend URL without credentials: nothing secret is left to derive the key of
    // sequence tokens from, so anyone could open and forge them.
    let mut public = url::Url::parse(&backend.url).unwrap();
    let _ = public.set_username("");
    let _ = public.set_password(None);
    let public = public.as_str().trim_end_matches('/').to_owned();
    refuses(
        &["--couchdb-url", &public, "--jwt-public-key", pem],
        "--seq-secret",
    );
    refuses(
        &[
            "--couchdb-url",
            &public,
            "--jwt-public-key",
            pem,
            "--seq-secret",
            "short",
        ],
        "--seq-secret",
    );
    let url = backend.url.as_str();
    refuses(
        &[
            "--couchdb-url",
            url,
            "--jwt-secret",
            SECRET,
            "--cors-origins",
            "*",
            "--cors-credentials",
        ],
        "--cors-credentials",
    );
    refuses(
        &["--couchdb-url", url, "--jwt-secret", SECRET, "--basic-auth"],
        "--shared-identities",
    );
}

#[tokio::test]
async fn explicit_choices_make_those_configurations_start() {
    let backend = Backend::start();
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ec256.pub.pem");
    if backend.is_pouchdb_server() {
        let gate = Gate::start_with_args(
            &backend,
            &[
                "--jwt-public-key",
                pem,
                "--seq-secret",
                "a real secret, 16+ bytes",
            ],
        );
        assert_eq!(gate.anonymous().get("/").await.body["couchdb"], "Welcome");
    }
    let gate = Gate::start(&backend, &["--basic-auth", "--shared-identities"]);
    assert_eq!(
        gate.client("alice").get("/_session").await.ok()["userCtx"]["name"],
        "alice"
    );
    let gate = Gate::start(&backend, &["--cors-origins", "*"]);
    let a = gate
        .anonymous()
        .send(
            gate.anonymous()
                .request(Method::GET, "/")
                .header("origin", "https://x.example"),
        )
        .await;
    assert_eq!(a.headers["access-control-allow-origin"], "*");
    assert!(a.headers.get("access-control-allow-credentials").is_none());
}
