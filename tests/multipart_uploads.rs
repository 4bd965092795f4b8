//! Multipart document uploads (`PUT /{db}/{id}` with `multipart/related`, as CouchDB's
//! replicator and nano send them) of more than a megabyte, which stream to a CouchDB backend
//! as they arrive (other backends get them whole): the data arrives untouched, and a body
//! found wrong part-way, or cut off by its client, is refused with nothing written.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{Backend, Client, Gate};
use tokio::io::AsyncWriteExt;

/// Data that holds what a careless reader would take for framing (the client's boundary
/// without its leading CRLF, blank lines), over a megabyte.
fn awkward(len: usize) -> Vec<u8> {
    let mut v = b"--MiXeD-b0undary\r\n\r\n\r\n--".to_vec();
    v.extend((0..len).map(|i| (i * 31 % 251) as u8));
    v
}

const BOUNDARY: &str = "MiXeD-b0undary";

/// A `multipart/related` body: the document, then one part per attachment data.
fn body(doc: &Value, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut v = format!("--{BOUNDARY}\r\nContent-Type: application/json\r\n\r\n{doc}").into_bytes();
    for (name, data) in parts {
        v.extend_from_slice(
            format!(
                "\r\n--{BOUNDARY}\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        v.extend_from_slice(data);
    }
    v.extend_from_slice(format!("\r\n--{BOUNDARY}--").as_bytes());
    v
}

fn follows(atts: &[(&str, usize)]) -> Value {
    let mut m = serde_json::Map::new();
    for (name, len) in atts {
        m.insert(
            (*name).to_owned(),
            json!({"follows": true, "length": len, "content_type": "application/octet-stream"}),
        );
    }
    Value::Object(m)
}

fn ctype() -> String {
    format!("multipart/related; boundary=\"{BOUNDARY}\"")
}

/// A backend, a couchgate in front of it (with `extra` flags), and alice with her `notes`.
async fn world(extra: &[&str]) -> (Backend, Gate, Client) {
    let backend = Backend::start();
    let gate = Gate::start(&backend, extra);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    (backend, gate, alice)
}

async fn put(c: &Client, path: &str, body: Vec<u8>) -> support::Answer {
    c.send(
        c.request(Method::PUT, path)
            .header("Content-Type", ctype())
            .body(body),
    )
    .await
}

async fn attachment(c: &Client, path: &str) -> Vec<u8> {
    let a = c.get(path).await;
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    a.bytes
}

/// No document of the shared database has `id` (the client's) in its backing id.
async fn nothing_written(gate: &Gate, c: &Client, id: &str) {
    c.get(&format!("/notes/{id}")).await.error(404, "not_found");
    let all = gate.backing().get("/_all_docs").await.ok();
    for row in all["rows"].as_array().unwrap() {
        let backing = row["id"].as_str().unwrap();
        assert!(!backing.ends_with(id), "{backing} was written");
    }
}

#[tokio::test]
async fn large_attachments_arrive_whole_and_untouched() {
    let (_backend, _gate, alice) = world(&[]).await;
    let big = awkward(3 << 20);
    let small = b"small one".to_vec();
    let doc = json!({"title": "two", "_attachments": follows(&[("big.bin", big.len()), ("small.txt", small.len())])});
    let a = put(
        &alice,
        "/notes/doc",
        body(&doc, &[("big.bin", &big), ("small.txt", &small)]),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["id"], "doc");
    assert_eq!(attachment(&alice, "/notes/doc/big.bin").await, big);
    assert_eq!(attachment(&alice, "/notes/doc/small.txt").await, small);
    let read = alice.get("/notes/doc").await.ok();
    assert_eq!(read["title"], "two");
    assert_eq!(read["_attachments"]["big.bin"]["length"], big.len());

    // A replicated revision with its history, sent chunked (no Content-Length).
    let doc = json!({
        "_id": "repl", "_rev": "2-bbbb", "_revisions": {"start": 2, "ids": ["bbbb", "aaaa"]},
        "_attachments": follows(&[("big.bin", big.len())]),
    });
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body(&doc, &[("big.bin", &big)])
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let a = alice
        .send(
            alice
                .request(Method::PUT, "/notes/repl?new_edits=false")
                .header("Content-Type", ctype())
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let read = alice.get("/notes/repl?revs=true").await.ok();
    assert_eq!(read["_rev"], "2-bbbb");
    assert_eq!(read["_revisions"]["ids"], json!(["bbbb", "aaaa"]));
    assert_eq!(attachment(&alice, "/notes/repl/big.bin").await, big);
}

#[tokio::test]
async fn a_wrong_large_body_is_refused_and_nothing_is_written() {
    let (_backend, gate, alice) = world(&[]).await;
    let big = awkward(2 << 20);
    let n = big.len();
    let doc = |atts: &[(&str, usize)]| json!({"_attachments": follows(atts)});
    let cut = {
        let mut b = body(&doc(&[("a.bin", n)]), &[("a.bin", &big)]);
        b.truncate(b.len() - 40);
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "shorter",
            body(&doc(&[("a.bin", n + 1)]), &[("a.bin", &big)]),
            "attachment shorter than expected",
        ),
        (
            "longer",
            body(&doc(&[("a.bin", n - 1)]), &[("a.bin", &big)]),
            "attachment longer than expected",
        ),
        (
            "lacking",
            body(&doc(&[("a.bin", n), ("b.bin", 3)]), &[("a.bin", &big)]),
            "multipart/related body lacks the data of attachment b.bin",
        ),
        (
            "extra",
            body(&doc(&[("a.bin", n)]), &[("a.bin", &big), ("b.bin", b"abc")]),
            "multipart/related body has a part that is no attachment with `follows: true`",
        ),
        (
            "renamed",
            body(&doc(&[("a.bin", n)]), &[("other.bin", &big)]),
            "multipart/related part other.bin is not the attachment with `follows: true` expected there (a.bin)",
        ),
        ("cut", cut, "malformed multipart/related body"),
    ];
    for (id, bytes, reason) in cases {
        let a = put(&alice, &format!("/notes/{id}"), bytes).await;
        a.error(400, "bad_request");
        assert_eq!(a.body["reason"], reason, "{id}");
        nothing_written(&gate, &alice, id).await;
    }
}

#[tokio::test]
async fn a_client_that_goes_away_mid_upload_leaves_nothing_written() {
    let (_backend, gate, alice) = world(&[]).await;
    let big = awkward(4 << 20);
    let bytes = body(
        &json!({"_attachments": follows(&[("a.bin", big.len())])}),
        &[("a.bin", &big)],
    );
    let addr = alice.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /notes/gone HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
        alice.token.as_deref().unwrap(),
        ctype(),
        bytes.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // All but the last bytes of the attachment: the document and most data have gone by.
    tcp.write_all(&bytes[..bytes.len() - 1000]).await.unwrap();
    tcp.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(tcp);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    nothing_written(&gate, &alice, "gone").await;
    // couchgate and the backend go on serving.
    let a = put(
        &alice,
        "/notes/after",
        body(
            &json!({"_attachments": follows(&[("a.bin", 3)])}),
            &[("a.bin", b"abc")],
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

/// A body sent as these pieces, `gap` apart.
fn apart(pieces: Vec<Vec<u8>>, gap: std::time::Duration) -> reqwest::Body {
    let stream = futures_util::stream::unfold(
        (pieces.into_iter(), true),
        move |(mut rest, first)| async move {
            let next = rest.next()?;
            if !first {
                tokio::time::sleep(gap).await;
            }
            Some((Ok::<_, std::io::Error>(next), (rest, false)))
        },
    );
    reqwest::Body::wrap_stream(stream)
}

/// A body that arrives in `pieces` pieces, `gap` apart.
fn paced(bytes: Vec<u8>, pieces: usize, gap: std::time::Duration) -> reqwest::Body {
    let size = bytes.len().div_ceil(pieces);
    apart(bytes.chunks(size).map(<[u8]>::to_vec).collect(), gap)
}

#[tokio::test]
async fn an_upload_slower_than_the_backend_timeout_still_lands() {
    // The backend timeout bounds waiting for the backend, not the client's upload.
    let (_backend, _gate, alice) = world(&["--backend-timeout-secs", "1"]).await;
    let big = awkward(2 << 20);
    let gap = std::time::Duration::from_millis(200);
    let doc = json!({"_attachments": follows(&[("a.bin", big.len())])});
    let a = alice
        .send(
            alice
                .request(Method::PUT, "/notes/slow")
                .header("Content-Type", ctype())
                .body(paced(body(&doc, &[("a.bin", &big)]), 15, gap)),
        )
        .await;
    assert_eq!(a.status, 201, "multipart: {}", a.body);
    assert_eq!(attachment(&alice, "/notes/slow/a.bin").await, big);
    let rev = a.body["rev"].as_str().unwrap().to_owned();
    let a = alice
        .send(
            alice
                .request(Method::PUT, &format!("/notes/slow/raw.bin?rev={rev}"))
                .header("Content-Type", "application/octet-stream")
                .body(paced(big.clone(), 15, gap)),
        )
        .await;
    assert_eq!(a.status, 201, "attachment: {}", a.body);
    assert_eq!(attachment(&alice, "/notes/slow/raw.bin").await, big);
}

/// A body sent as two pieces, the second `gap` after the first.
fn two_pieces(bytes: Vec<u8>, at: usize, gap: std::time::Duration) -> reqwest::Body {
    let (a, b) = bytes.split_at(at);
    apart(vec![a.to_vec(), b.to_vec()], gap)
}

#[tokio::test]
async fn a_bad_tail_that_arrives_after_the_data_writes_nothing() {
    // CouchDB commits a document once it has the JSON and every attachment's `length` bytes,
    // without waiting for the closing delimiter: a tail found wrong only after all the data
    // went by must still leave nothing written.
    let (_backend, gate, alice) = world(&[]).await;
    let big = awkward(2 << 20);
    let n = big.len();
    let data_end = |bytes: &[u8]| {
        let at = bytes
            .windows(big.len())
            .position(|w| w == big.as_slice())
            .unwrap();
        at + big.len()
    };
    let delimiter = format!("\r\n--{BOUNDARY}").len();
    let extra = body(
        &json!({"_attachments": follows(&[("a.bin", n)])}),
        &[("a.bin", &big), ("b.bin", b"abc")],
    );
    // All the data and the delimiter after it: the error shows with the next bytes.
    let extra_at = data_end(&extra) + delimiter;
    let mut longer_data = big.clone();
    longer_data.extend_from_slice(b"zz");
    let longer = body(
        &json!({"_attachments": follows(&[("a.bin", n + 1)])}),
        &[("a.bin", &longer_data)],
    );
    // Exactly `length` bytes of data and what cannot yet be told from a delimiter.
    let longer_at = data_end(&longer) - longer_data.len() + n + 1 + delimiter - 1;
    let after_empty = body(
        &json!({"_attachments": follows(&[("a.bin", n), ("z.bin", 0)])}),
        &[("a.bin", &big), ("z.bin", b""), ("x.bin", b"x")],
    );
    // All of a.bin, and the empty z.bin's part up to the delimiter that ends it.
    let after_empty_at = data_end(&after_empty) + 2 * delimiter + 55;
    let cases = [
        (
            "tail-extra",
            extra,
            extra_at,
            "multipart/related body has a part that is no attachment with `follows: true`",
        ),
        (
            "tail-longer",
            longer,
            longer_at,
            "attachment longer than expected",
        ),
        (
            "tail-after-empty",
            after_empty,
            after_empty_at,
            "multipart/related body has a part that is no attachment with `follows: true`",
        ),
    ];
    for (id, bytes, at, reason) in cases {
        let a = alice
            .send(
                alice
                    .request(Method::PUT, &format!("/notes/{id}"))
                    .header("Content-Type", ctype())
                    .body(two_pieces(bytes, at, std::time::Duration::from_millis(700))),
            )
            .await;
        a.error(400, "bad_request");
        assert_eq!(a.body["reason"], reason, "{id}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        nothing_written(&gate, &alice, id).await;
    }
}
