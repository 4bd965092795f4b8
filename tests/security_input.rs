//! Input couchgate must check before the backend sees it: `multipart/related` bodies that try
//! to write a backing id couchgate did not choose, inputs that kill or corrupt PouchDB Server
//! (answered with CouchDB's 400 here, the backend still alive after each), and multipart
//! bodies built to make a naive boundary search quadratic.
//!
//! Every test runs against a real backend (PouchDB Server, or `COUCHDB_URL`) through the
//! couchgate binary, and checks the backing database directly where a refusal must have
//! written nothing.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{couch_error, enc, ok, Answer, Backend, Client, Gate};

/// One part of a hand-made multipart body: header lines and the body.
struct Part<'a> {
    headers: &'a [&'a str],
    body: Vec<u8>,
}

fn json_part(doc: &Value) -> Part<'static> {
    Part {
        headers: &["Content-Type: application/json"],
        body: doc.to_string().into_bytes(),
    }
}

fn multipart(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        for h in p.headers {
            out.extend_from_slice(format!("{h}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&p.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--").as_bytes());
    out
}

async fn put_multipart(c: &Client, path: &str, boundary: &str, body: Vec<u8>) -> Answer {
    c.send(
        c.request(Method::PUT, path)
            .header(
                "content-type",
                format!("multipart/related; boundary=\"{boundary}\""),
            )
            .body(body),
    )
    .await
}

/// Every document of the backing database: id -> (rev, body).
async fn backing_docs(gate: &Gate) -> Vec<(String, Value)> {
    let all = ok(
        gate.backing().get("/_all_docs?include_docs=true").await,
        "backing _all_docs",
    );
    all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["doc"].clone()))
        .collect()
}

/// The backing id of the document of `suffix` (`:{client id}`).
fn backing_id(docs: &[(String, Value)], suffix: &str) -> String {
    docs.iter()
        .map(|(id, _)| id)
        .find(|id| id.ends_with(suffix) && !id.starts_with("couchgate:"))
        .unwrap_or_else(|| panic!("no backing id ends with {suffix}"))
        .clone()
}

/// The backend answers, straight and through couchgate: no input has taken it down.
async fn backend_alive(backend: &Backend, c: &Client, what: &str) {
    let direct = Client::new(&backend.url, None).get("/").await;
    assert!(direct.status.is_success(), "{what}: the backend is down");
    let a = c.get("/notes/known").await;
    assert_eq!(
        a.status, 200,
        "{what}: reading through couchgate: {}",
        a.body
    );
    assert_eq!(a.body["v"], 1, "{what}: {}", a.body);
}

#[tokio::test]
async fn multipart_bodies_cannot_write_any_backing_id() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    let bob = gate.client("bob");
    alice.create_db("notes").await;
    bob.create_db("notes").await;
    ok(
        alice.put("/notes/secret", json!({"v": "alice"})).await,
        "alice's doc",
    );
    ok(bob.put("/notes/known", json!({"v": 1})).await, "bob's doc");
    let before = backing_docs(&gate).await;
    let secret = backing_id(&before, ":secret");
    let meta = before
        .iter()
        .map(|(id, _)| id.clone())
        .find(|id| id.starts_with("couchgate:") && id.contains("alice"))
        .expect("alice's database metadata document");

    let evil_ddoc = json!({
        "_id": "_design/evil",
        "validate_doc_update": "function () { throw({forbidden: 'owned'}); }",
    });
    let follows = json!({"_attachments": {"a.txt": {"follows": true, "length": 5}}});
    let a_txt = || Part {
        headers: &["Content-Disposition: attachment; filename=\"a.txt\""],
        body: b"hello".to_vec(),
    };
    let cases: Vec<(&str, Vec<Part>)> = vec![
        (
            "second JSON part with another user's backing id",
            vec![
                json_part(&json!({})),
                json_part(&json!({"_id": secret, "v": "bob"})),
            ],
        ),
        (
            "second JSON part with a backend design document",
            vec![json_part(&json!({})), json_part(&evil_ddoc)],
        ),
        (
            "second JSON part with a metadata document id",
            vec![
                json_part(&json!({})),
                json_part(&json!({"_id": meta, "epoch": "x"})),
            ],
        ),
        (
            "JSON part after the attachment data",
            vec![json_part(&follows), a_txt(), json_part(&evil_ddoc)],
        ),
        (
            "part named as no attachment",
            vec![
                json_part(&follows),
                Part {
                    headers: &[
                        "Content-Disposition: attachment; filename=\"other.txt\"",
                        "Content-Type: application/json",
                    ],
                    body: evil_ddoc.to_string().into_bytes(),
                },
            ],
        ),
        (
            "part for an attachment that is inline, not following",
            vec![
                json_part(&json!({"_attachments": {"a.txt": {"data": "aGVsbG8="}}})),
                a_txt(),
            ],
        ),
        (
            "non-JSON second part",
            vec![
                json_part(&json!({})),
                Part {
                    headers: &["Content-Type: text/plain"],
                    body: b"not json at all {".to_vec(),
                },
            ],
        ),
        (
            "invalid JSON first part",
            vec![Part {
                headers: &["Content-Type: application/json"],
                body: b"{\"_id\": ".to_vec(),
            }],
        ),
        (
            "attachment data shorter than its length",
            vec![
                json_part(&follows),
                Part {
                    headers: &[],
                    body: b"hell".to_vec(),
                },
            ],
        ),
    ];
    for (what, parts) in cases {
        let a = put_multipart(&bob, "/notes/x", "b0undary", multipart("b0undary", &parts)).await;
        couch_error(&a, 400, "bad_request", what);
        backend_alive(&backend, &bob, what).await;
    }
    // A first part that is not JSON: CouchDB's 415.
    let a = put_multipart(
        &bob,
        "/notes/x",
        "b0undary",
        multipart(
            "b0undary",
            &[Part {
                headers: &["Content-Type: text/plain"],
                body: b"{}".to_vec(),
            }],
        ),
    )
    .await;
    couch_error(&a, 415, "bad_content_type", "first part not JSON");

    let after = backing_docs(&gate).await;
    assert_eq!(after, before, "a refused multipart body wrote something");
    assert!(
        !after.iter().any(|(id, _)| id.starts_with("_design/")),
        "a backend design document exists"
    );

    // What is accepted is stored under Bob's id, whatever the JSON part says its `_id` is,
    // with the data of the attachment it names, unnamed parts taken in order as CouchDB does.
    let doc = json!({
        "_id": secret,
        "v": "mp",
        "_attachments": {
            "a.txt": {"follows": true, "length": 5, "content_type": "text/plain"},
            "b.bin": {"follows": true, "length": 3, "content_type": "application/octet-stream"},
        },
    });
    let body = multipart(
        "Mixed.Case-b",
        &[
            json_part(&doc),
            a_txt(),
            Part {
                headers: &[],
                body: vec![0, 13, 10],
            },
        ],
    );
    let a = put_multipart(&bob, "/notes/mp", "Mixed.Case-b", body).await;
    assert_eq!(a.status, 201, "valid multipart PUT: {}", a.body);
    assert_eq!(a.body["id"], "mp");
    let got = bob.get("/notes/mp/a.txt").await;
    assert_eq!(got.bytes, b"hello");
    let b_bin = bob.get("/notes/mp/b.bin").await;
    assert_eq!(b_bin.bytes, vec![0, 13, 10]);
    let after = backing_docs(&gate).await;
    let (_, alice_doc) = after.iter().find(|(id, _)| *id == secret).unwrap();
    assert_eq!(alice_doc["v"], "alice", "alice's document was overwritten");
    assert!(after.iter().any(|(id, _)| id.ends_with(":mp")));
}

#[tokio::test]
async fn crashing_inputs_get_couchdbs_400_and_the_backend_lives() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let c = gate.client("carol");
    c.create_db("notes").await;
    ok(c.put("/notes/known", json!({"v": 1})).await, "known");
    let unknown = "9-00000000000000000000000000000000";
    let before = backing_docs(&gate).await;

    // Writes: (path, body, status, error).
    let writes: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/notes/w1",
            json!({"_attachments": {"x": {"content_type": "text/plain", "data": 5}}}),
            400,
            "bad_request",
        ),
        (
            "/notes/w2",
            json!({"_attachments": {"x": {"follows": true, "length": 1}}}),
            400,
            "bad_request",
        ),
        (
            "/notes/w3",
            json!({"_attachments": {"x": {"content_type": "text/plain", "data": "not base64!!"}}}),
            400,
            "bad_request",
        ),
        (
            "/notes/w4",
            json!({"_attachments": "s"}),
            400,
            "doc_validation",
        ),
        ("/notes/w5", json!({"_foo": 1}), 400, "doc_validation"),
        ("/notes/w6", json!({"_rev_tree": []}), 400, "doc_validation"),
        (
            "/notes/w7?new_edits=false",
            json!({"_rev": "1-abc", "_revisions": "nope"}),
            400,
            "doc_validation",
        ),
        (
            "/notes/w8?new_edits=false",
            json!({"_rev": "1-abc", "_revisions": {"start": 1}}),
            400,
            "doc_validation",
        ),
        (
            "/notes/w9?new_edits=false",
            json!({"_rev": "1-abc", "_revisions": {"start": "x", "ids": ["abc"]}}),
            400,
            "doc_validation",
        ),
        (
            "/notes/w10?new_edits=false",
            json!({"_rev": "1-abc", "_revisions": {"start": 1, "ids": [5]}}),
            400,
            "doc_validation",
        ),
        (
            "/notes/w11?new_edits=false",
            json!({"_rev": "2-abc", "_revisions": {"start": 2, "ids": []}}),
            400,
            "doc_validation",
        ),
        (
            "/notes/w12",
            json!({"_deleted": "yes"}),
            400,
            "doc_validation",
        ),
        ("/notes/w13", json!({"_rev": ""}), 400, "bad_request"),
        ("/notes/w14?rev=abc", json!({}), 400, "bad_request"),
        (
            "/notes/w15?open_revs=notjson",
            json!({}),
            400,
            "bad_request",
        ),
    ];
    for (path, body, status, error) in &writes {
        let a = c.put(path, body.clone()).await;
        couch_error(&a, *status, error, &format!("PUT {path} {body}"));
        backend_alive(&backend, &c, path).await;
    }
    let bulk: Vec<Value> = vec![
        json!({"new_edits": false, "docs": [{"_id": "b1", "_rev": "1-abc", "_revisions": {"start": 1, "ids": "x"}}]}),
        json!({"docs": [{"_id": "b2", "_attachments": {"x": {"data": 5}}}]}),
        json!({"docs": [{"_id": "b3"}, {"_id": "b4", "_attachments": {"x": {"follows": true, "length": 1}}}]}),
        json!({"docs": [{"_id": "b5", "_attachments": {"_x": {"data": "eA=="}}}]}),
    ];
    for body in &bulk {
        let a = c.post("/notes/_bulk_docs", body.clone()).await;
        assert_eq!(a.status, 400, "_bulk_docs {body}: {}", a.body);
        backend_alive(&backend, &c, &format!("_bulk_docs {body}")).await;
    }
    // Multipart: a non-JSON part after the document.
    let a = put_multipart(
        &c,
        "/notes/m1",
        "bnd",
        multipart(
            "bnd",
            &[
                json_part(&json!({})),
                Part {
                    headers: &["Content-Disposition: form-data; name=\"x\""],
                    body: b"{{{".to_vec(),
                },
            ],
        ),
    )
    .await;
    couch_error(&a, 400, "bad_request", "multipart with a non-JSON part");
    backend_alive(&backend, &c, "multipart").await;
    assert_eq!(
        backing_docs(&gate).await,
        before,
        "a refused write wrote something"
    );

    // Reads that name a revision the document lacks, with `latest`.
    let a = c
        .get(&format!("/notes/known?latest=true&rev={unknown}"))
        .await;
    assert_eq!(
        a.status, 200,
        "latest ignores rev, as in CouchDB: {}",
        a.body
    );
    assert_eq!(a.body["v"], 1);
    backend_alive(&backend, &c, "latest=true&rev").await;
    let a = c
        .get(&format!("/notes/known?latest=yes&rev={unknown}"))
        .await;
    couch_error(&a, 404, "not_found", "latest=yes is not latest");
    backend_alive(&backend, &c, "latest=yes").await;
    let a = c
        .send(
            c.request(
                Method::GET,
                &format!(
                    "/notes/known?open_revs={}&latest=true",
                    enc(&json!([unknown]).to_string())
                ),
            )
            .header("accept", "application/json"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!([{"missing": unknown}]));
    backend_alive(&backend, &c, "open_revs&latest").await;
    let known_rev = ok(c.get("/notes/known").await, "known")["_rev"].clone();
    let a = c
        .send(
            c.request(
                Method::GET,
                &format!(
                    "/notes/known?open_revs={}&latest=true",
                    enc(&json!([unknown, known_rev]).to_string())
                ),
            )
            .header("accept", "application/json"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let rows = a.body.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{}", a.body);
    assert!(rows.iter().any(|r| r["ok"]["_rev"] == known_rev));
    assert!(rows.iter().any(|r| r["missing"] == unknown));
    backend_alive(&backend, &c, "open_revs with one unknown").await;
    let a = c
        .post(
            "/notes/_bulk_get?latest=true&revs=true",
            json!({"docs": [{"id": "known", "rev": unknown}, {"id": "known", "rev": known_rev}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(
        results[0]["docs"][0]["error"],
        json!({"id": "known", "rev": unknown, "error": "not_found", "reason": "missing"})
    );
    assert_eq!(results[1]["docs"][0]["ok"]["_rev"], known_rev);
    backend_alive(&backend, &c, "_bulk_get latest").await;

    // Malformed revision lists and items: CouchDB's 400s.
    for (q, reason) in [
        ("open_revs=notjson", "invalid UTF-8 JSON"),
        ("open_revs=%7B%7D", "Invalid list of revisions"),
        ("open_revs=%22x%22", "Invalid list of revisions"),
        ("atts_since=%5B5%5D", "Invalid rev format"),
        ("rev=abc", "Invalid rev format"),
    ] {
        let a = c.get(&format!("/notes/known?{q}")).await;
        couch_error(&a, 400, "bad_request", q);
        assert_eq!(a.body["reason"], reason, "{q}");
        backend_alive(&backend, &c, q).await;
    }
    let a = c
        .post(
            "/notes/_bulk_get",
            json!({"docs": [{"id": "known", "atts_since": [5]}, {"id": "known", "rev": 7}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let results = a.body["results"].as_array().unwrap();
    for r in results {
        assert_eq!(r["docs"][0]["error"]["error"], "bad_request", "{r}");
    }
    let a = c
        .post(
            "/notes/_bulk_get?rev=1-x",
            json!({"docs": [{"id": "known"}]}),
        )
        .await;
    couch_error(&a, 400, "bad_request", "_bulk_get?rev");
    let started = Instant::now();
    let a = c.post("/notes/_bulk_get", json!({"docs": []})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"results": []}));
    assert!(started.elapsed() < Duration::from_secs(5));
    backend_alive(&backend, &c, "_bulk_get docs: []").await;

    // An attachment entry that is not an object is skipped, as CouchDB skips it.
    let a = c
        .put("/notes/skip", json!({"_attachments": {"x": 5}, "v": 2}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let doc = ok(c.get("/notes/skip").await, "skip");
    assert!(doc.get("_attachments").is_none(), "{doc}");
    // And nothing written poisoned the shared feed.
    ok(c.get("/notes/_changes?style=all_docs").await, "_changes");
    ok(
        gate.backing().get("/_changes?style=all_docs").await,
        "backing _changes",
    );
    backend_alive(&backend, &c, "the end").await;
}

/// Builds a multipart PUT of about `2 * half` bytes whose boundary is `k` dashes, with a
/// preamble and attachment data made of near-matches of it (`k - 1` dashes and an `x`): a
/// windowed search compares about `k` bytes at every position of them.
fn adversarial(k: usize, half: usize) -> (String, Vec<u8>) {
    let boundary = "-".repeat(k);
    let near = format!("{}x", "-".repeat(k - 1));
    let preamble = near.repeat(half / near.len());
    let data = near.repeat(half / near.len()).into_bytes();
    let doc = json!({"_attachments": {"big.bin": {"follows": true, "length": data.len()}}});
    let mut body = preamble.into_bytes();
    body.extend(multipart(
        &boundary,
        &[
            json_part(&doc),
            Part {
                headers: &["Content-Disposition: attachment; filename=\"big.bin\""],
                body: data,
            },
        ],
    ));
    (boundary, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_multipart_uploads_never_stall_the_gate() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let c = gate.client("dave");
    c.create_db("notes").await;
    let (boundary, body) = adversarial(16_000, 8 << 20);
    assert!(body.len() > 16 << 20);

    let started = Instant::now();
    let uploads: Vec<_> = (0..2)
        .map(|i| {
            let (c, boundary, body) = (c.clone(), boundary.clone(), body.clone());
            tokio::spawn(async move {
                put_multipart(&c, &format!("/notes/big{i}"), &boundary, body).await
            })
        })
        .collect();
    // `/_up` keeps answering promptly while both are parsed.
    let up = Client::new(&gate.url, None);
    let mut slowest = Duration::ZERO;
    while !uploads.iter().all(|u| u.is_finished()) {
        let t = Instant::now();
        let a = up.get("/_up").await;
        assert_eq!(a.status, 200, "/_up: {}", a.body);
        slowest = slowest.max(t.elapsed());
    }
    let took = started.elapsed();
    println!("uploads took {took:?}, the slowest /_up {slowest:?}");
    assert!(
        slowest < Duration::from_millis(1500),
        "/_up took {slowest:?} during the uploads"
    );
    assert!(took < Duration::from_secs(30), "the uploads took {took:?}");
    for u in uploads {
        let a = u.await.unwrap();
        assert_eq!(a.status, 201, "upload: {}", a.body);
    }
    let att = c.get("/notes/big0/big.bin").await;
    assert_eq!(
        att.status,
        200,
        "{}",
        String::from_utf8_lossy(&att.bytes[..att.bytes.len().min(300)])
    );
    assert_eq!(att.bytes.len(), (8 << 20) / 16_000 * 16_000);
}
