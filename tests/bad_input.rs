//! Bad input and backend faults: malformed and mistyped JSON, duplicate keys, reserved ids,
//! oversized bodies, odd query strings and content types, refused endpoints, bad tokens, bad
//! database names and methods; then a backend that fails (500, silence, cut connections,
//! non-JSON, cut bodies) or is down. Every error is CouchDB-shaped (`{"error","reason"}` and
//! nothing else), and after every one of them the same couchgate keeps serving.
//!
//! Faults come from [`fake::Fake`], a scriptable TCP server that passes requests through to a
//! real backend and replaces the answer to chosen requests with a fault.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{couch_error, enc, ok, shaped, Answer, Backend, Client, Gate};

/// `GET /` answers CouchDB's welcome.
async fn welcome(url: &str) {
    let a = Client::new(url, None).get("/").await;
    assert_eq!(a.status, 200, "GET /: {}", a.body);
    assert_eq!(a.body["couchdb"], "Welcome");
}

/// Sends `body` as raw bytes with a content type.
async fn send_raw(c: &Client, method: Method, path: &str, ct: Option<&str>, body: &str) -> Answer {
    let mut r = c.request(method, path).body(body.to_owned());
    if let Some(ct) = ct {
        r = r.header("content-type", ct);
    }
    c.send(r).await
}

/// Asserts a CouchDB error of this status, name and reason whose body is exactly
/// `{"error","reason"}`.
fn couch_error_reason(a: &Answer, status: u16, name: &str, reason: &str, what: &str) {
    couch_error(a, status, name, what);
    assert_eq!(a.body["reason"], reason, "{what}: {}", a.body);
}

/// The backing ids of `user`'s documents in database `db`, found through a marker document.
struct Partition {
    prefix: String,
}

impl Partition {
    /// Writes `marker` and learns the partition from its backing id.
    async fn learn(gate_backing: &Client, c: &Client, db: &str) -> Partition {
        let marker = format!("marker-{}", support::unique_db());
        ok(c.put(&format!("/{db}/{marker}"), json!({})).await, "marker");
        let rows = ok(gate_backing.get("/_all_docs").await, "backing _all_docs");
        let suffix = format!(":{marker}");
        let id = rows["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["id"].as_str())
            .find(|id| id.ends_with(&suffix))
            .expect("the marker is in the backing database")
            .to_owned();
        Partition {
            prefix: id[..id.len() - marker.len()].to_owned(),
        }
    }

    /// Every backing id of the partition (normal and design documents).
    async fn ids(&self, backing: &Client) -> BTreeSet<String> {
        let end = format!("{};", &self.prefix[..self.prefix.len() - 1]);
        let q = format!(
            "/_all_docs?startkey={}&endkey={}",
            enc(&json!(self.prefix).to_string()),
            enc(&json!(end).to_string())
        );
        ok(backing.get(&q).await, "backing range")["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn malformed_and_mistyped_json_is_refused_and_nothing_is_written() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let part = Partition::learn(&gate.backing(), &alice, "notes").await;
    let before = part.ids(&gate.backing()).await;

    let endpoints = [
        (Method::PUT, "/notes/doc"),
        (Method::POST, "/notes"),
        (Method::PUT, "/notes/_local/ckpt"),
        (Method::PUT, "/notes/_design/app"),
        (Method::POST, "/notes/_bulk_docs"),
        (Method::POST, "/notes/_bulk_get"),
        (Method::POST, "/notes/_revs_diff"),
        (Method::POST, "/notes/_all_docs"),
        (Method::POST, "/notes/_changes"),
    ];
    for (method, path) in &endpoints {
        for body in [
            "{",
            "",
            "{\"a\":}",
            "nul",
            "{\"docs\":[}",
            "{} {}",
            "\u{0}",
            "{\"a\":1,}",
        ] {
            let a = send_raw(&alice, method.clone(), path, Some("application/json"), body).await;
            // reqwest sends an empty body without Content-Length, which CouchDB reads as no
            // body at all.
            let reason = if body.is_empty() {
                "Missing request body"
            } else {
                "invalid UTF-8 JSON"
            };
            couch_error_reason(
                &a,
                400,
                "bad_request",
                reason,
                &format!("{method} {path} {body:?}"),
            );
        }
    }

    // Well-formed JSON of the wrong shape.
    let wrong: Vec<(Method, &str, &str)> = vec![
        (Method::PUT, "/notes/doc", "[1,2]"),
        (Method::PUT, "/notes/doc", "\"text\""),
        (Method::PUT, "/notes/doc", "5"),
        (Method::PUT, "/notes/doc", "null"),
        (Method::POST, "/notes", "[]"),
        (Method::POST, "/notes/_bulk_docs", "[{\"_id\":\"a\"}]"),
        (
            Method::POST,
            "/notes/_bulk_docs",
            "{\"docs\":{\"_id\":\"a\"}}",
        ),
        (Method::POST, "/notes/_bulk_docs", "{\"docs\":\"a\"}"),
        (Method::POST, "/notes/_bulk_docs", "{\"docs\":null}"),
        (Method::POST, "/notes/_bulk_docs", "{}"),
        // CouchDB's reason: "`new_edits` parameter must be a boolean."; couchgate's:
        // "`new_edits` must be a boolean".
        (
            Method::POST,
            "/notes/_bulk_docs",
            "{\"docs\":[],\"new_edits\":\"maybe\"}",
        ),
        (Method::POST, "/notes/_revs_diff", "[]"),
        (Method::POST, "/notes/_revs_diff", "[\"a\"]"),
        (Method::POST, "/notes/_revs_diff", "\"a\""),
        (Method::POST, "/notes/_bulk_get", "[]"),
        (Method::POST, "/notes/_all_docs", "[]"),
        (Method::POST, "/notes/_all_docs", "{\"keys\":\"a\"}"),
        (Method::POST, "/notes/_all_docs", "{\"keys\":{}}"),
        (Method::POST, "/notes/_changes", "[]"),
        (
            Method::POST,
            "/notes/_changes?filter=_doc_ids",
            "{\"doc_ids\":\"a\"}",
        ),
        (
            Method::POST,
            "/notes/_changes?filter=_doc_ids",
            "{\"doc_ids\":[1]}",
        ),
    ];
    for (method, path, body) in &wrong {
        let a = send_raw(&alice, method.clone(), path, Some("application/json"), body).await;
        couch_error(&a, 400, "bad_request", &format!("{method} {path} {body}"));
    }
    let a = send_raw(
        &alice,
        Method::POST,
        "/notes/_all_docs",
        Some("application/json"),
        "{\"limit\":\"many\"}",
    )
    .await;
    couch_error_reason(
        &a,
        400,
        "query_parse_error",
        "Invalid value for integer: <<\"many\">>",
        "POST _all_docs limit \"many\"",
    );
    // CouchDB itself crashes on these (500 unknown_error "function_clause", with a `ref`
    // member); couchgate refuses them with 400 bad_request (listed in the differential
    // suite's known differences).
    for (path, body) in [
        ("/notes/_revs_diff", "{\"a\":\"1-abc\"}"),
        ("/notes/_revs_diff", "{\"a\":{\"rev\":\"1-abc\"}}"),
        ("/notes/_bulk_get", "{\"docs\":{}}"),
    ] {
        let a = send_raw(&alice, Method::POST, path, Some("application/json"), body).await;
        couch_error(&a, 400, "bad_request", &format!("POST {path} {body}"));
    }
    // Not CouchDB's answer: CouchDB answers 200 with an error for that item alone,
    // {"results":[{"id":null,"docs":[{"error":{"rev":null,"reason":"document must be a JSON
    // object","id":null,"error":"bad_request"}}]}]}; couchgate refuses the whole request.
    let a = send_raw(
        &alice,
        Method::POST,
        "/notes/_bulk_get",
        Some("application/json"),
        "{\"docs\":[1]}",
    )
    .await;
    couch_error(&a, 400, "bad_request", "POST _bulk_get {\"docs\":[1]}");
    let a = alice.post("/notes", json!({"_id": 5})).await;
    couch_error(&a, 400, "illegal_docid", "POST _id 5");

    // One bad document refuses the whole batch, as CouchDB does: the good one beside it is not
    // written either, whichever side of it the bad one is.
    let not_object = "Document must be a JSON object";
    let not_string = "Document id must be a string";
    let underscore = "Only reserved document ids may start with underscore.";
    let batches: Vec<(Value, &str, &str)> = vec![
        (
            json!([1, "x", null, {"_id": 5}, {"_id": "_bad"}, {"_id": "good"}]),
            "bad_request",
            not_object,
        ),
        (json!([1, {"_id": "good"}]), "bad_request", not_object),
        (json!(["x", {"_id": "good"}]), "bad_request", not_object),
        (json!([null, {"_id": "good"}]), "bad_request", not_object),
        (json!([{"_id": "good"}, 5]), "bad_request", not_object),
        (
            json!([{"_id": 5}, {"_id": "good"}]),
            "illegal_docid",
            not_string,
        ),
        (
            json!([{"_id": "good"}, {"_id": null}]),
            "illegal_docid",
            not_string,
        ),
        (
            json!([{"_id": "_bad"}, {"_id": "good"}]),
            "illegal_docid",
            underscore,
        ),
        (
            json!([{"_id": "good"}, {"_id": "_bad"}]),
            "illegal_docid",
            underscore,
        ),
    ];
    for (docs, name, reason) in &batches {
        let a = alice
            .post("/notes/_bulk_docs", json!({ "docs": docs }))
            .await;
        couch_error_reason(&a, 400, name, reason, &format!("_bulk_docs {docs}"));
    }
    couch_error(
        &alice.get("/notes/good").await,
        404,
        "not_found",
        "GET good",
    );
    assert_eq!(
        part.ids(&gate.backing()).await,
        before,
        "nothing was written"
    );
    welcome(&gate.url).await;
}

#[tokio::test]
async fn duplicate_id_keys_store_exactly_the_id_couchgate_answers() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let backing = gate.backing();
    let part = Partition::learn(&backing, &alice, "notes").await;
    let mut expected = part.ids(&backing).await;

    // PUT: the URL decides.
    let a = send_raw(
        &alice,
        Method::PUT,
        "/notes/x",
        Some("application/json"),
        r#"{"_id":"a","v":1,"_id":"b"}"#,
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["id"], "x");
    expected.insert(format!("{}x", part.prefix));
    assert_eq!(part.ids(&backing).await, expected);
    let stored = ok(
        backing
            .get(&format!("/{}", enc(&format!("{}x", part.prefix))))
            .await,
        "x",
    );
    assert_eq!(stored["_id"], format!("{}x", part.prefix));
    assert_eq!(ok(alice.get("/notes/x").await, "x")["_id"], "x");

    // POST, _bulk_docs: whatever id couchgate answers is the one stored, and the only one.
    let bodies: Vec<(&str, &str)> = vec![
        ("/notes", r#"{"_id":"p1","v":1,"_id":"p2"}"#),
        ("/notes", r#"{"_id":"_bad","_id":"p3"}"#),
        ("/notes", r#"{"_id":"p4","_id":"_bad"}"#),
        ("/notes", r#"{"_id":"p5","_id":5}"#),
        (
            "/notes/_bulk_docs",
            r#"{"docs":[{"_id":"c1","v":1,"_id":"c2"}]}"#,
        ),
        (
            "/notes/_bulk_docs",
            r#"{"docs":[{"_id":"_local/l1","_id":"c3"}]}"#,
        ),
        (
            "/notes/_bulk_docs",
            r#"{"docs":[{"_id":"c4","_id":"_local/l2"}]}"#,
        ),
        (
            "/notes/_bulk_docs",
            r#"{"docs":[{"_id":"c5","_id":"_design/c6"}]}"#,
        ),
    ];
    for (path, body) in bodies {
        let a = send_raw(&alice, Method::POST, path, Some("application/json"), body).await;
        let decided: Vec<String> = match &a.body {
            Value::Array(rows) => rows
                .iter()
                .filter(|r| r["ok"] == true)
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect(),
            v if a.status.is_success() => vec![v["id"].as_str().unwrap().to_owned()],
            _ => {
                shaped(&a, body);
                vec![]
            }
        };
        for id in &decided {
            if let Some(local) = id.strip_prefix("_local/") {
                let l = ok(
                    backing
                        .get(&format!(
                            "/_local/{}",
                            enc(&format!("{}{local}", part.prefix))
                        ))
                        .await,
                    "backing _local",
                );
                assert_eq!(l["_id"], format!("_local/{}{local}", part.prefix), "{body}");
            } else {
                expected.insert(format!("{}{id}", part.prefix));
                let got = ok(alice.get(&format!("/notes/{}", enc(id))).await, body);
                assert_eq!(got["_id"], *id, "{body}");
            }
        }
        assert_eq!(
            part.ids(&backing).await,
            expected,
            "{body}: the backend holds exactly the ids couchgate answered ({decided:?})"
        );
    }
    // No id of the losing duplicates exists anywhere in the backing database.
    let all = ok(backing.get("/_all_docs").await, "backing");
    for row in all["rows"].as_array().unwrap() {
        let id = row["id"].as_str().unwrap();
        for lost in ["a", "b"] {
            assert!(!id.ends_with(&format!(":{lost}")), "{id}");
        }
    }
}

#[tokio::test]
async fn reserved_ids_are_illegal_docids() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let backing = gate.backing();
    let part = Partition::learn(&backing, &alice, "notes").await;
    let before = part.ids(&backing).await;

    for path in [
        "/notes/_foo",
        "/notes/_foo%2Fbar",
        "/notes/_design",
        "/notes/_users",
    ] {
        let a = alice.put(path, json!({"v": 1})).await;
        couch_error(&a, 400, "illegal_docid", &format!("PUT {path}"));
    }
    let a = alice.put("/notes/_local", json!({"v": 1})).await;
    couch_error_reason(
        &a,
        400,
        "bad_request",
        "Invalid _local document id.",
        "PUT /notes/_local",
    );
    for id in ["_foo", "_design/", "_local/", "", "_Design/x", "_LOCAL/x"] {
        let a = alice.post("/notes", json!({"_id": id})).await;
        couch_error(&a, 400, "illegal_docid", &format!("POST _id {id:?}"));
    }
    // A reserved id refuses the whole batch, as CouchDB does: nothing of it is written.
    let underscore = "Only reserved document ids may start with underscore.";
    let a = alice
        .post(
            "/notes/_bulk_docs",
            json!({"docs": [
                {"_id": "_foo"}, {"_id": "_users"}, {"_id": "_design/ok"},
                {"_id": "_local/ok"}, {"_id": "fine"}, {"_id": "_changes"}
            ]}),
        )
        .await;
    couch_error_reason(&a, 400, "illegal_docid", underscore, "_bulk_docs mixed");
    for id in ["_foo", "_users", "_changes"] {
        let a = alice
            .post("/notes/_bulk_docs", json!({"docs": [{"_id": id}]}))
            .await;
        couch_error_reason(
            &a,
            400,
            "illegal_docid",
            underscore,
            &format!("_bulk_docs {id}"),
        );
    }
    assert_eq!(part.ids(&backing).await, before, "nothing was written");
    let local = backing
        .get(&format!("/_local/{}", enc(&format!("{}ok", part.prefix))))
        .await;
    assert_eq!(local.status, 404, "{}", local.body);

    // The legal ids among them are written.
    let rows = ok(
        alice
            .post(
                "/notes/_bulk_docs",
                json!({"docs": [{"_id": "_design/ok"}, {"_id": "_local/ok"}, {"_id": "fine"}]}),
            )
            .await,
        "_bulk_docs legal",
    );
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().all(|r| r["ok"] == true), "{rows:?}");
    // CouchDB answers the rows in the order of the request; PouchDB Server puts `_local` ones
    // first.
    let ids: BTreeSet<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["_design/ok", "_local/ok", "fine"]),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    let mut want = before.clone();
    want.insert(format!("{}_design/ok", part.prefix));
    want.insert(format!("{}fine", part.prefix));
    assert_eq!(part.ids(&backing).await, want);
    welcome(&gate.url).await;

    // `_local` without a name. CouchDB answers GET, HEAD and POST of it as it answers PUT and
    // DELETE: 400 bad_request "Invalid _local document id." (unlike `_design` without a name,
    // which is 404 not_found "missing" to GET and HEAD).
    for method in [Method::GET, Method::HEAD, Method::POST] {
        let what = format!("{method} /notes/_local");
        let mut r = alice.request(method.clone(), "/notes/_local");
        if method == Method::POST {
            r = r.json(&json!({"v": 1}));
        }
        let a = alice.send(r).await;
        if method == Method::HEAD {
            assert_eq!(a.status, 400, "{what}");
        } else {
            couch_error_reason(&a, 400, "bad_request", "Invalid _local document id.", &what);
        }
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_and_nothing_is_written() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &["--max-body-bytes", "1000"]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let backing = gate.backing();
    let part = Partition::learn(&backing, &alice, "notes").await;
    let before = part.ids(&backing).await;
    let rev = ok(alice.put("/notes/doc", json!({"v": 1})).await, "doc")["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let before_doc = ok(alice.get("/notes/doc").await, "doc");

    let pad = "x".repeat(2000);
    let big = json!({"pad": pad});
    for (method, path, body) in [
        (Method::PUT, "/notes/big".to_owned(), big.clone()),
        (Method::PUT, format!("/notes/doc?rev={rev}"), big.clone()),
        (Method::POST, "/notes".into(), big.clone()),
        (Method::PUT, "/notes/_local/big".into(), big.clone()),
        (Method::PUT, "/notes/_design/big".into(), big.clone()),
        (
            Method::POST,
            "/notes/_bulk_docs".into(),
            json!({"docs": [big.clone()]}),
        ),
        (
            Method::POST,
            "/notes/_all_docs".into(),
            json!({"keys": [pad]}),
        ),
        (
            Method::POST,
            "/notes/_revs_diff".into(),
            json!({"doc": [pad]}),
        ),
        (
            Method::POST,
            "/notes/_bulk_get".into(),
            json!({"docs": [{"id": pad}]}),
        ),
        (
            Method::POST,
            "/notes/_changes?filter=_doc_ids".into(),
            json!({"doc_ids": [pad]}),
        ),
    ] {
        let what = format!("{method} {path}");
        let a = alice
            .send(alice.request(method.clone(), &path).json(&body))
            .await;
        couch_error(&a, 413, "too_large", &what);

        // The same without Content-Length: the size is found while reading.
        let text = body.to_string();
        let chunks: Vec<Result<String, std::io::Error>> = text
            .as_bytes()
            .chunks(100)
            .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
            .collect();
        let stream = futures_util::stream::iter(chunks);
        let a = alice
            .send(
                alice
                    .request(method.clone(), &path)
                    .header("content-type", "application/json")
                    .body(reqwest::Body::wrap_stream(stream)),
            )
            .await;
        couch_error(&a, 413, "too_large", &format!("{what} (chunked)"));
        welcome(&gate.url).await;
    }

    // Attachments, with and without Content-Length.
    let data = vec![b'a'; 2000];
    let path = format!("/notes/doc/big.bin?rev={rev}");
    let a = alice
        .send(
            alice
                .request(Method::PUT, &path)
                .header("content-type", "application/octet-stream")
                .body(data.clone()),
        )
        .await;
    couch_error(&a, 413, "too_large", "attachment PUT");

    // Nothing was written.
    let mut want = before.clone();
    want.insert(format!("{}doc", part.prefix));
    assert_eq!(part.ids(&backing).await, want);
    assert_eq!(ok(alice.get("/notes/doc").await, "doc"), before_doc);
    let local = backing
        .get(&format!("/_local/{}", enc(&format!("{}big", part.prefix))))
        .await;
    assert_eq!(local.status, 404, "{}", local.body);

    // Under the limit, the same gate writes.
    let a = alice
        .put("/notes/small", json!({"pad": "x".repeat(800)}))
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    welcome(&gate.url).await;
}

/// An attachment streamed without Content-Length past `--max-body-bytes` is `413 too_large`,
/// like every other oversized body, and nothing is written.
#[tokio::test]
async fn oversized_chunked_attachment_is_too_large() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &["--max-body-bytes", "1000"]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let rev = ok(alice.put("/notes/doc", json!({"v": 1})).await, "doc")["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = ok(alice.get("/notes/doc").await, "doc");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'a'; 100])).collect();
    let a = alice
        .send(
            alice
                .request(Method::PUT, &format!("/notes/doc/big.bin?rev={rev}"))
                .header("content-type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
    couch_error(&a, 413, "too_large", "attachment PUT (chunked)");
    assert_eq!(
        ok(alice.get("/notes/doc").await, "doc"),
        before,
        "nothing was written"
    );
    welcome(&gate.url).await;
}

#[tokio::test]
async fn odd_query_strings_are_refused_or_ignored_never_fatal() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    ok(alice.put("/notes/doc", json!({"v": 1})).await, "doc");

    // `since[]` and the like are other parameters than `since`: unknown, ignored as CouchDB
    // ignores unknown parameters, and the feed starts from the beginning.
    for q in [
        "since[]=1",
        "since[]=1&since[]=2",
        "since[since]=now",
        "limit[]=1",
        "feed[]=longpoll",
        // Not CouchDB's answer: CouchDB refuses an empty `since` with 400 bad_request
        // "Malformed sequence supplied in 'since' parameter."; couchgate replays from the start.
        "since=",
    ] {
        let a = alice.get(&format!("/notes/_changes?{q}")).await;
        assert_eq!(a.status, 200, "_changes?{q}: {}", a.body);
        let ids: Vec<&str> = a.body["results"]
            .as_array()
            .unwrap_or_else(|| panic!("_changes?{q}: {}", a.body))
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["doc"], "_changes?{q} replays from the start");
        assert!(a.body["last_seq"].is_string(), "{}", a.body);
    }
    // A `since` that is no sequence of any kind.
    for q in [
        "since=%5B1%5D",
        "since=%7B%22a%22%3A1%7D",
        "since=garbage",
        "since=-1",
    ] {
        let a = alice.get(&format!("/notes/_changes?{q}")).await;
        couch_error_reason(
            &a,
            400,
            "bad_request",
            "Malformed sequence supplied in 'since' parameter.",
            &format!("_changes?{q}"),
        );
    }
    for (q, reason) in [
        (
            "feed=sideways",
            "Supported `feed` types: normal, continuous, live, longpoll, eventsource",
        ),
        (
            "heartbeat=soon",
            "Invalid heartbeat value. Expecting a positive integer value (in milliseconds).",
        ),
        (
            "heartbeat=0",
            "The heartbeat value should be a positive integer (in milliseconds).",
        ),
    ] {
        let a = alice.get(&format!("/notes/_changes?{q}")).await;
        couch_error_reason(&a, 400, "bad_request", reason, &format!("_changes?{q}"));
    }
    // Not CouchDB's answers: couchgate refuses these with 400 bad_request where CouchDB
    // crashes (`limit=abc`, `timeout=x`, `style=odd`: 500 unknown_error "badarg"), ignores the
    // value (`limit=-1`, `descending=maybe`, `include_docs=yes`: 200), or words the reason
    // differently (`filter=nonsense`: "`filter` must be of the form
    // `designname/filtername`").
    for q in [
        "limit=-1",
        "limit=abc",
        "timeout=x",
        "style=odd",
        "descending=maybe",
        "include_docs=yes",
        "filter=nonsense",
    ] {
        let a = alice.get(&format!("/notes/_changes?{q}")).await;
        couch_error(&a, 400, "bad_request", &format!("_changes?{q}"));
    }
    for (q, name, reason) in [
        ("startkey=%22", "bad_request", "invalid UTF-8 JSON"),
        ("key=%5B", "bad_request", "invalid UTF-8 JSON"),
        (
            "keys=%7B%7D",
            "bad_request",
            "`keys` parameter must be an array.",
        ),
        (
            "keys=1",
            "bad_request",
            "`keys` parameter must be an array.",
        ),
        (
            "limit=-1",
            "query_parse_error",
            "Invalid value for positive integer: \"-1\"",
        ),
        (
            "skip=x",
            "query_parse_error",
            "Invalid value for integer: \"x\"",
        ),
        (
            "descending=yes",
            "query_parse_error",
            "Invalid boolean parameter: \"yes\"",
        ),
        (
            "include_docs=1",
            "query_parse_error",
            "Invalid boolean parameter: \"1\"",
        ),
    ] {
        let a = alice.get(&format!("/notes/_all_docs?{q}")).await;
        couch_error_reason(&a, 400, name, reason, &format!("_all_docs?{q}"));
    }
    for q in ["startkey[]=1", "keys[]=a", "limit[]=1"] {
        let a = alice.get(&format!("/notes/_all_docs?{q}")).await;
        assert_eq!(a.status, 200, "_all_docs?{q}: {}", a.body);
        assert_eq!(a.body["total_rows"], 1, "{}", a.body);
    }
    for q in ["count=x", "count=-1", "count=100000"] {
        let a = alice.get(&format!("/_uuids?{q}")).await;
        couch_error(&a, 400, "bad_request", &format!("_uuids?{q}"));
    }
    assert_eq!(ok(alice.get("/notes/doc").await, "doc")["v"], 1);
    welcome(&gate.url).await;
}

#[tokio::test]
async fn json_endpoints_require_a_json_content_type() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let backing = gate.backing();
    let part = Partition::learn(&backing, &alice, "notes").await;
    let before = part.ids(&backing).await;

    let bodies = [
        ("/notes/_bulk_docs", r#"{"docs":[{"_id":"ct"}]}"#),
        ("/notes/_revs_diff", r#"{"ct":["1-a"]}"#),
        ("/notes/_bulk_get", r#"{"docs":[{"id":"ct"}]}"#),
        ("/notes/_all_docs", r#"{"keys":["ct"]}"#),
        ("/notes/_changes", r#"{}"#),
    ];
    for (path, body) in bodies {
        for ct in [
            Some("text/plain"),
            None,
            Some("application/xml"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
        ] {
            let a = send_raw(&alice, Method::POST, path, ct, body).await;
            couch_error(
                &a,
                415,
                "bad_content_type",
                &format!("POST {path} as {ct:?}"),
            );
        }
    }
    assert_eq!(part.ids(&backing).await, before, "nothing was written");
    for ct in ["application/json; charset=utf-8", "Application/JSON"] {
        let a = send_raw(
            &alice,
            Method::POST,
            "/notes/_bulk_docs",
            Some(ct),
            bodies[0].1,
        )
        .await;
        assert_eq!(a.status, 201, "{ct}: {}", a.body);
    }
    welcome(&gate.url).await;
}

#[tokio::test]
async fn refused_endpoints_answer_couchdb_errors_and_touch_nothing() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let backing = gate.backing();
    // A marker document, so that the namespace is not empty.
    Partition::learn(&backing, &alice, "notes").await;
    let before_all = ok(backing.get("/_all_docs").await, "backing")["rows"].clone();

    let cases: Vec<(Method, &str, u16, &[&str])> = vec![
        (Method::GET, "/_all_dbs", 501, &["not_implemented"]),
        (Method::GET, "/_dbs_info", 501, &["not_implemented"]),
        (Method::GET, "/_config", 403, &["forbidden"]),
        (Method::GET, "/_node/_local/_config", 403, &["forbidden"]),
        (
            Method::PUT,
            "/_node/_local/_config/admins/x",
            403,
            &["forbidden"],
        ),
        (Method::GET, "/_users", 403, &["forbidden"]),
        (
            Method::PUT,
            "/_users/org.couchdb.user:x",
            403,
            &["forbidden"],
        ),
        (Method::POST, "/_replicate", 403, &["forbidden"]),
        (Method::GET, "/_active_tasks", 403, &["forbidden"]),
        (Method::GET, "/_utils", 404, &["not_found"]),
        (Method::GET, "/notes/_find", 405, &["method_not_allowed"]),
        (
            Method::POST,
            "/notes/_index",
            400,
            &["missing_required_key"],
        ),
        (Method::PUT, "/notes/_index", 405, &["method_not_allowed"]),
        (Method::GET, "/notes/_security", 403, &["forbidden"]),
        (Method::PUT, "/notes/_security", 403, &["forbidden"]),
        (Method::POST, "/notes/_purge", 403, &["forbidden"]),
        // An id CouchDB refuses: missing to a read, a form upload without a Referer to a POST,
        // an illegal id to a write.
        (Method::GET, "/notes/_foo", 404, &["not_found"]),
        (Method::POST, "/notes/_foo", 400, &["bad_request"]),
        (Method::PUT, "/notes/_foo", 400, &["illegal_docid"]),
        (
            Method::GET,
            "/notes/_design/x/_view/y",
            501,
            &["not_implemented"],
        ),
        (
            Method::POST,
            "/notes/_design/x/_view/y",
            501,
            &["not_implemented"],
        ),
        (
            Method::GET,
            "/notes/_design/x/_show/y",
            501,
            &["not_implemented"],
        ),
        (
            Method::GET,
            "/notes/_design/x/_list/y/z",
            501,
            &["not_implemented"],
        ),
        (
            Method::PUT,
            "/notes/_design/x/_update/y/doc",
            501,
            &["not_implemented"],
        ),
        (
            Method::GET,
            "/notes/_design/x/_rewrite/a",
            501,
            &["not_implemented"],
        ),
    ];
    for (method, path, status, names) in &cases {
        let what = format!("{method} {path}");
        let a = alice
            .send(
                alice
                    .request(method.clone(), path)
                    .json(&json!({"selector": {}})),
            )
            .await;
        assert_eq!(a.status.as_u16(), *status, "{what}: {}", a.body);
        shaped(&a, &what);
        assert!(
            names.contains(&a.body["error"].as_str().unwrap()),
            "{what}: {}",
            a.body
        );
    }
    // Compaction is answered as CouchDB answers it, and changes no document.
    let a = alice.post("/notes/_compact", json!({})).await;
    assert_eq!(a.status, 202, "POST /notes/_compact: {}", a.body);
    assert_eq!(a.body, json!({"ok": true}));
    // Nothing was created or changed in the backing database.
    assert_eq!(
        ok(backing.get("/_all_docs").await, "backing")["rows"],
        before_all
    );
    for id in ["_find", "_foo", "_security", "_design/x"] {
        let a = alice.get(&format!("/notes/{}", enc(id))).await;
        assert!(!a.status.is_success(), "{id}: {}", a.body);
    }
    assert_eq!(ok(alice.get("/notes").await, "info")["doc_count"], 1);
    welcome(&gate.url).await;
}

fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn bad_tokens_are_refused_without_echoing_them() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    ok(alice.put("/notes/doc", json!({"v": 1})).await, "doc");
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let good_claims = json!({"sub": "alice", "exp": now + 3600});
    let good = support::token("alice", 3600);
    let parts: Vec<&str> = good.split('.').collect();
    let none_token = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good_claims.to_string().as_bytes())
    );
    let none_with_sig = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    let rs_header = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    let tokens: Vec<(String, Option<String>)> = vec![
        ("none".into(), None),
        ("empty bearer".into(), Some("Bearer ".into())),
        ("bearer only".into(), Some("Bearer".into())),
        ("garbage".into(), Some("Bearer not-a-token-9f8e7d6c".into())),
        (
            "basic".into(),
            Some("Basic YWxpY2U6c2VjcmV0cGFzc3dvcmQ=".into()),
        ),
        (
            "wrong signature".into(),
            Some(format!(
                "Bearer {}",
                support::token_with(good_claims.clone(), "some-other-secret-0123456789abcdef")
            )),
        ),
        (
            "expired".into(),
            Some(format!("Bearer {}", support::token("alice", -3600))),
        ),
        ("alg none".into(), Some(format!("Bearer {none_token}"))),
        (
            "alg none, signed".into(),
            Some(format!("Bearer {none_with_sig}")),
        ),
        (
            "alg RS256 over HMAC".into(),
            Some(format!("Bearer {rs_header}")),
        ),
        (
            "no exp".into(),
            Some(format!(
                "Bearer {}",
                support::token_with(json!({"sub": "alice"}), support::SECRET)
            )),
        ),
        (
            "empty sub".into(),
            Some(format!(
                "Bearer {}",
                support::token_with(json!({"sub": "", "exp": now + 60}), support::SECRET)
            )),
        ),
        (
            "not yet valid".into(),
            Some(format!(
                "Bearer {}",
                support::token_with(
                    json!({"sub": "alice", "exp": now + 7200, "nbf": now + 3600}),
                    support::SECRET
                )
            )),
        ),
        (
            "tampered claims".into(),
            Some(format!(
                "Bearer {}.{}.{}",
                parts[0],
                b64(json!({"sub": "bob", "exp": now + 3600})
                    .to_string()
                    .as_bytes()),
                parts[2]
            )),
        ),
        (
            "huge".into(),
            Some(format!("Bearer {}", "a".repeat(20_000))),
        ),
        ("two tokens".into(), Some(format!("Bearer {good} {good}"))),
    ];
    let anon = Client::new(&gate.url, None);
    let requests: Vec<(Method, &str)> = vec![
        (Method::GET, "/notes"),
        (Method::GET, "/notes/doc"),
        (Method::PUT, "/notes/doc2"),
        (Method::DELETE, "/notes"),
        (Method::POST, "/notes/_bulk_docs"),
        (Method::GET, "/notes/_changes?feed=longpoll"),
        (Method::GET, "/notes/_all_docs"),
        (Method::GET, "/_session"),
        (Method::PUT, "/other"),
        (Method::POST, "/notes/_find"),
    ];
    for (what, header) in &tokens {
        for (method, path) in &requests {
            let mut r = anon
                .request(method.clone(), path)
                .json(&json!({"docs": [{"_id": "evil"}]}));
            if let Some(h) = header {
                r = r.header("authorization", h.clone());
            }
            let a = anon.send(r).await;
            let ctx = format!("{what}: {method} {path}");
            if header.is_none() && *path == "/_session" {
                // No credentials at all: CouchDB's anonymous session, not a refusal.
                assert_eq!(a.status, 200, "{ctx}: {}", a.body);
                assert_eq!(a.body["ok"], true, "{ctx}: {}", a.body);
                assert_eq!(
                    a.body["userCtx"],
                    json!({"name": null, "roles": []}),
                    "{ctx}: {}",
                    a.body
                );
                continue;
            }
            couch_error(&a, 401, "unauthorized", &ctx);
            assert!(
                a.headers.contains_key("www-authenticate"),
                "{ctx}: no WWW-Authenticate"
            );
            let text = String::from_utf8_lossy(&a.bytes);
            if let Some(h) = header {
                let token = h.trim_start_matches("Bearer").trim();
                for piece in token.split('.').filter(|p| p.len() >= 8) {
                    assert!(
                        !text.contains(piece),
                        "{ctx}: the answer echoes the token: {text}"
                    );
                    for v in a.headers.values() {
                        assert!(
                            !v.to_str().unwrap_or("").contains(piece),
                            "{ctx}: a header echoes the token"
                        );
                    }
                }
            }
        }
    }
    // Nothing was written or deleted, and good tokens still work.
    let all = ok(alice.get("/notes/_all_docs").await, "_all_docs");
    assert_eq!(all["total_rows"], 1, "{all}");
    couch_error(&alice.get("/other").await, 404, "not_found", "other");
    welcome(&gate.url).await;
}

#[tokio::test]
async fn bad_database_names_are_illegal() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    let long = "a".repeat(239);
    let missing = "Database does not exist.";
    for name in [
        "Notes", "1db", "a.b", "a%20b", "-x", "a!b", "%C3%A9", "a%00b", "a%3Ab", "a%40b", "$x",
        &long,
    ] {
        // No database can have the name: CouchDB reads it as missing, and refuses to create it.
        for method in [
            Method::GET,
            Method::HEAD,
            Method::DELETE,
            Method::POST,
            Method::PUT,
        ] {
            let what = format!("{method} /{name}");
            let a = alice
                .send(
                    alice
                        .request(method.clone(), &format!("/{name}"))
                        .json(&json!({})),
                )
                .await;
            match method {
                Method::HEAD => assert_eq!(a.status, 404, "{what}"),
                Method::PUT => {
                    // Not CouchDB's answer for the long name: CouchDB refuses it with 400
                    // database_name_too_long "At least one path segment of `aaa…a` is too
                    // long."; couchgate with 400 illegal_database_name.
                    couch_error(&a, 400, "illegal_database_name", &what);
                    if name != long {
                        let decoded = percent_encoding::percent_decode_str(name)
                            .decode_utf8()
                            .unwrap();
                        assert_eq!(
                            a.body["reason"],
                            format!(
                                "Name: '{decoded}'. Only lowercase characters (a-z), digits \
                                 (0-9), and any of the characters _, $, (, ), +, -, and / are \
                                 allowed. Must begin with a letter."
                            ),
                            "{what}"
                        );
                    }
                }
                _ => couch_error_reason(&a, 404, "not_found", missing, &what),
            }
        }
        let a = alice.get(&format!("/{name}/doc")).await;
        couch_error_reason(&a, 404, "not_found", missing, &format!("GET /{name}/doc"));
    }
    // The longest legal name works.
    let longest = "a".repeat(238);
    alice.create_db(&longest).await;
    welcome(&gate.url).await;
}

#[tokio::test]
async fn methods_not_allowed_answer_405() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let rev = ok(alice.put("/notes/doc", json!({"v": 1})).await, "doc")["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = Method::from_bytes(b"PATCH").unwrap();
    let cases: Vec<(Method, String)> = vec![
        (patch.clone(), "/notes/doc".into()),
        (patch.clone(), "/notes".into()),
        (patch.clone(), format!("/notes/doc/att.txt?rev={rev}")),
        (Method::PUT, "/notes/_all_docs".into()),
        (Method::DELETE, "/notes/_all_docs".into()),
        (Method::GET, "/notes/_bulk_docs".into()),
        (Method::PUT, "/notes/_bulk_docs".into()),
        (Method::GET, "/notes/_revs_diff".into()),
        (Method::GET, "/notes/_bulk_get".into()),
        (Method::DELETE, "/notes/_changes".into()),
        (Method::PUT, "/notes/_changes".into()),
        (Method::GET, "/notes/_ensure_full_commit".into()),
        (Method::POST, "/".into()),
        (Method::DELETE, "/".into()),
        (Method::POST, "/_uuids".into()),
        (Method::PUT, "/_session".into()),
        (Method::PUT, "/_up".into()),
    ];
    for (method, path) in &cases {
        let a = alice
            .send(alice.request(method.clone(), path).json(&json!({})))
            .await;
        couch_error(&a, 405, "method_not_allowed", &format!("{method} {path}"));
    }
    for endpoint in [
        "_find",
        "_explain",
        "_purge",
        "_compact",
        "_view_cleanup",
        "_missing_revs",
        "_bulk_docs",
        "_revs_diff",
    ] {
        let path = format!("/notes/{endpoint}");
        couch_error_reason(
            &alice.get(&path).await,
            405,
            "method_not_allowed",
            "Only POST allowed",
            &format!("GET {path}"),
        );
    }
    // POST to a document is an HTML form upload to CouchDB, which refuses it without a Referer
    // (a 400, not a 405).
    for path in ["/notes/_local/x", "/notes/doc"] {
        let a = alice
            .send(alice.request(Method::POST, path).json(&json!({})))
            .await;
        couch_error_reason(
            &a,
            400,
            "bad_request",
            "Referer header required.",
            &format!("POST {path}"),
        );
    }
    assert_eq!(ok(alice.get("/notes/doc").await, "doc")["_rev"], rev);
    let local = alice.get("/notes/_local/x").await;
    couch_error(&local, 404, "not_found", "_local/x was not written");
    welcome(&gate.url).await;
}

/// A missing attachment is CouchDB's `404 not_found`, whatever content type the backend
/// labelled its error with (PouchDB Server sends its JSON errors as `text/plain`).
#[tokio::test]
async fn missing_attachment_is_couchdb_not_found() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    ok(alice.put("/notes/doc", json!({"v": 1})).await, "doc");
    for path in ["/notes/doc/nothing.txt", "/notes/nodoc/nothing.txt"] {
        couch_error(&alice.get(path).await, 404, "not_found", path);
    }
}

/// `_bulk_get` naming one id several times (PouchDB's replicator asks for each missing revision
/// of a conflicted document as its own item) answers 200 with a result for every id; PouchDB
/// Server groups such items into fewer results, which must not turn into a 502.
#[tokio::test]
async fn bulk_get_with_repeated_ids_answers_every_item() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    ok(
        alice
            .post(
                "/notes/_bulk_docs",
                json!({"new_edits": false, "docs": [
                    {"_id": "c", "_rev": "1-aaaa", "v": 1},
                    {"_id": "c", "_rev": "1-bbbb", "v": 2},
                ]}),
            )
            .await,
        "conflicts",
    );
    let a = alice
        .post(
            "/notes/_bulk_get?revs=true&latest=true",
            json!({"docs": [
                {"id": "c", "rev": "1-aaaa"},
                {"id": "c", "rev": "1-bbbb"},
                {"id": "nope"},
                {"id": "nope"},
            ]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let results = a.body["results"].as_array().unwrap();
    let ids: BTreeSet<&str> = results.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["c", "nope"]), "{}", a.body);
    let revs: BTreeSet<&str> = results
        .iter()
        .flat_map(|r| r["docs"].as_array().unwrap())
        .filter_map(|d| d["ok"]["_rev"].as_str())
        .collect();
    assert_eq!(revs, BTreeSet::from(["1-aaaa", "1-bbbb"]), "{}", a.body);
}

use support::fake::{Fake, FakeGate, Fault};

/// Every kind of backend fault, on every endpoint family: a CouchDB-shaped 502 or 504 within
/// the backend timeout, and the next request through the same couchgate succeeds.
#[tokio::test]
async fn backend_faults_become_gateway_errors_and_the_gate_recovers() {
    let backend = Backend::start();
    let fake = Fake::start(&backend.url);
    // The follower reads the shared feed through the fake too, so no fault is armed for a
    // pattern its requests (`/_changes?style=all_docs...`) contain.
    let mut gate = FakeGate::start(&fake.url(), &["--backend-timeout-secs", "1"]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let rev = ok(alice.put("/notes/faulty", json!({"v": 1})).await, "doc")["rev"]
        .as_str()
        .unwrap()
        .to_owned();

    type Req = (Method, String, Option<Value>);
    let requests = |round: usize| -> Vec<(String, Req)> {
        let r = |pattern: &str, method: Method, path: &str, body: Option<Value>| {
            (pattern.to_owned(), (method, path.to_owned(), body))
        };
        vec![
            r("faulty", Method::GET, "/notes/faulty", None),
            // A fresh id each round: the write succeeds once the backend behaves.
            r(
                &format!("other-{round}"),
                Method::PUT,
                &format!("/notes/other-{round}"),
                Some(json!({"v": 2})),
            ),
            r("/_all_docs", Method::GET, "/notes/_all_docs", None),
            // `_changes` and `GET /{db}` are the index's; only documents come from the backend.
            r(
                "include_docs=true",
                Method::GET,
                "/notes/_changes?include_docs=true",
                None,
            ),
            r(
                "/_bulk_docs",
                Method::POST,
                "/notes/_bulk_docs",
                Some(json!({"docs": [{"v": 3}]})),
            ),
            r(
                "/_revs_diff",
                Method::POST,
                "/notes/_revs_diff",
                Some(json!({"faulty": ["1-a"]})),
            ),
            r(
                "/_bulk_get",
                Method::POST,
                "/notes/_bulk_get",
                Some(json!({"docs": [{"id": "faulty"}]})),
            ),
        ]
    };
    let faults = [
        (Fault::Status500, 502, "bad_gateway"),
        (Fault::NotJson, 502, "bad_gateway"),
        (Fault::Close, 502, "bad_gateway"),
        (Fault::CutBody, 502, "bad_gateway"),
        (Fault::Hang, 504, "gateway_timeout"),
        (Fault::StallBody, 504, "gateway_timeout"),
    ];
    let send = |(method, path, body): &Req| {
        let mut r = alice.request(method.clone(), path);
        if let Some(b) = body {
            r = r.json(b);
        }
        alice.send(r)
    };
    for (round, (fault, status, name)) in faults.into_iter().enumerate() {
        for (pattern, req) in &requests(round) {
            let what = format!("{fault:?} on {} {}", req.0, req.1);
            fake.arm(pattern, fault);
            let started = Instant::now();
            let a = send(req).await;
            assert_eq!(fake.armed(), 0, "{what}: the fault was not reached");
            couch_error(&a, status, name, &what);
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what}: answered after {:?}",
                started.elapsed()
            );
            gate.assert_alive();
            welcome(&gate.url).await;
            // The same request succeeds once the backend behaves.
            let again = send(req).await;
            assert!(
                again.status.is_success(),
                "{what}, then: {} {}",
                again.status,
                again.body
            );
        }
    }
    let doc = ok(alice.get("/notes/faulty").await, "faulty");
    assert_eq!(doc["_rev"], rev);
}

/// A backend that stops listening: `503 service_unavailable`, `GET /` still answers, and
/// service resumes when the backend is back.
#[tokio::test]
async fn backend_down_is_service_unavailable_and_recovers() {
    let backend = Backend::start();
    let mut fake = Fake::start(&backend.url);
    let mut gate = FakeGate::start(&fake.url(), &["--backend-timeout-secs", "5"]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    ok(alice.put("/notes/doc", json!({"v": 1})).await, "doc");

    fake.stop();
    let down: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/notes/doc", None),
        (Method::PUT, "/notes/doc2", Some(json!({}))),
        (Method::PUT, "/fresh", None),
        (Method::GET, "/notes/_all_docs", None),
        // Rows come from the index, documents from the backend.
        (Method::GET, "/notes/_changes?include_docs=true", None),
        (
            Method::POST,
            "/notes/_bulk_docs",
            Some(json!({"docs": [{}]})),
        ),
    ];
    for (method, path, body) in &down {
        let mut r = alice.request(method.clone(), path);
        if let Some(b) = body {
            r = r.json(b);
        }
        let a = alice.send(r).await;
        couch_error(&a, 503, "service_unavailable", &format!("{method} {path}"));
        gate.assert_alive();
        welcome(&gate.url).await;
    }

    fake.restart();
    assert_eq!(
        ok(alice.get("/notes/doc").await, "doc after restart")["v"],
        1
    );
    ok(
        alice.put("/notes/doc2", json!({})).await,
        "write after restart",
    );
}

/// The real PouchDB Server stopped under a running couchgate: 503, then recovery once a
/// backend listens again.
#[tokio::test]
async fn stopped_pouchdb_server_is_service_unavailable() {
    let port = support::free_port();
    let mut backend = Backend::pouchdb_server(port);
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    ok(alice.put("/notes/doc", json!({"v": 1})).await, "doc");

    backend.stop();
    for path in [
        "/notes/doc",
        "/notes",
        "/notes/_all_docs",
        "/notes/_changes",
    ] {
        couch_error(&alice.get(path).await, 503, "service_unavailable", path);
        welcome(&gate.url).await;
    }
    couch_error(
        &alice.put("/notes/doc2", json!({})).await,
        503,
        "service_unavailable",
        "PUT",
    );
    couch_error(
        &alice.put("/another", Value::Null).await,
        503,
        "service_unavailable",
        "PUT db",
    );

    // An in-memory backend comes back empty: recreate the backing database, then serve.
    let _backend = Backend::pouchdb_server(port);
    let backing = gate.backing();
    assert_eq!(
        backing.send(backing.request(Method::PUT, "")).await.status,
        201
    );
    alice.create_db("again").await;
    ok(
        alice.put("/again/x", json!({"v": 2})).await,
        "write after restart",
    );
    assert_eq!(
        ok(alice.get("/again/x").await, "read after restart")["v"],
        2
    );
    welcome(&gate.url).await;
}
