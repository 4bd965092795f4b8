//! Multipart answers, as CouchDB gives them: `open_revs` reads with `multipart/mixed`
//! accepted (how CouchDB's replicator fetches documents with attachments), and
//! `attachments=true` reads with `multipart/related` accepted. Ids are the caller's in every
//! part, attachment bytes arrive untouched, and JSON is still the answer to JSON clients.

mod support;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use support::multipart::{self, Part};
use support::{Answer, Backend, Client, Gate};

/// Data that holds what a careless reader would take for framing.
fn awkward_bytes(len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = b"\r\n--boundary\r\n\r\n--".to_vec();
    v.extend((0..len).map(|i| (i * 7 % 256) as u8));
    v
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

async fn read(c: &Client, path: &str, accept: &str) -> Answer {
    c.send(c.request(Method::GET, path).header("Accept", accept))
        .await
}

fn content_type(a: &Answer) -> String {
    a.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// An answer's status, type and first bytes, for failure messages.
fn summary(a: &Answer) -> String {
    format!(
        "{} {}: {}",
        a.status,
        content_type(a),
        String::from_utf8_lossy(&a.bytes[..a.bytes.len().min(600)])
    )
}

fn parts(a: &Answer) -> Vec<Part> {
    assert_eq!(a.status, 200, "{}", summary(a));
    multipart::parse(&content_type(a), &a.bytes).unwrap_or_else(|e| panic!("{e}: {}", summary(a)))
}

/// No backing id of the shared database appears anywhere in an answer.
async fn no_backing_ids(gate: &Gate, a: &Answer) {
    let all = gate.backing().get("/_all_docs").await.ok();
    let text = String::from_utf8_lossy(&a.bytes);
    for row in all["rows"].as_array().unwrap() {
        let id = row["id"].as_str().unwrap();
        if id.contains(':') {
            assert!(!text.contains(id), "backing id {id} in an answer");
        }
    }
}

struct World {
    _backend: Backend,
    couchdb: bool,
    gate: Gate,
    alice: Client,
    data: Vec<u8>,
    rev1: String,
    rev2: String,
}

/// Alice's `a`: revision 1 with a 300 KB attachment, revision 2 keeping it as a stub.
async fn world() -> World {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let data = awkward_bytes(300_000);
    let rev1 = alice
        .put(
            "/notes/a",
            json!({"v": 1, "_attachments": {"bin": {"content_type": "application/octet-stream", "data": b64(&data)}}}),
        )
        .await
        .ok()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let rev2 = alice
        .put(
            "/notes/a",
            json!({"v": 2, "_rev": rev1, "_attachments": {"bin": {"stub": true}}}),
        )
        .await
        .ok()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.put("/notes/plain", json!({"v": 1})).await.ok();
    World {
        couchdb: !backend.is_pouchdb_server(),
        _backend: backend,
        gate,
        alice,
        data,
        rev1,
        rev2,
    }
}

fn enc(v: &Value) -> String {
    percent_encoding::utf8_percent_encode(&v.to_string(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}

#[tokio::test]
async fn open_revs_answers_a_part_per_revision_with_attachment_bytes_untouched() {
    let w = world().await;
    let a = read(
        &w.alice,
        "/notes/a?open_revs=all&revs=true&attachments=true",
        "multipart/mixed",
    )
    .await;
    assert!(
        content_type(&a).starts_with("multipart/mixed"),
        "{}",
        summary(&a)
    );
    let p = parts(&a);
    assert_eq!(p.len(), 1, "one leaf");
    assert!(p[0]
        .header("content-type")
        .unwrap()
        .starts_with("multipart/related"));
    let doc = p[0].nested[0].json().expect("the document first");
    assert_eq!(doc["_id"], "a");
    assert_eq!(doc["_rev"], w.rev2.as_str());
    assert_eq!(doc["_revisions"]["start"], 2);
    assert_eq!(doc["_attachments"]["bin"]["follows"], true);
    assert_eq!(p[0].nested.len(), 2);
    assert_eq!(p[0].nested[1].body, w.data, "attachment bytes");
    no_backing_ids(&w.gate, &a).await;

    // An old revision and a missing one; with atts_since the attachment is a stub.
    let ask = enc(&json!([w.rev1, "9-0123456789abcdef0123456789abcdef"]));
    let a = read(
        &w.alice,
        &format!("/notes/a?open_revs={ask}&revs=true&attachments=true"),
        "multipart/mixed",
    )
    .await;
    let p = parts(&a);
    assert_eq!(p.len(), 2, "{}", summary(&a));
    let old = p
        .iter()
        .find(|x| !x.nested.is_empty())
        .expect("revision 1 with its data");
    assert_eq!(old.nested[0].json().unwrap()["_rev"], w.rev1.as_str());
    assert_eq!(old.nested[1].body, w.data);
    let missing = p.iter().find(|x| x.nested.is_empty()).unwrap();
    assert_eq!(
        missing.header("content-type"),
        Some("application/json; error=\"true\"")
    );
    assert_eq!(
        missing.json().unwrap(),
        json!({"missing": "9-0123456789abcdef0123456789abcdef"})
    );

    // The replicator's own form: latest, atts_since covering the attachment.
    let a = read(
        &w.alice,
        &format!(
            "/notes/a?revs=true&open_revs={}&latest=true&atts_since={}",
            enc(&json!([w.rev2])),
            enc(&json!([w.rev1]))
        ),
        "multipart/mixed",
    )
    .await;
    let p = parts(&a);
    assert_eq!(p.len(), 1);
    if w.couchdb {
        // (PouchDB Server ignores `atts_since` and sends the data.)
        assert_eq!(p[0].header("content-type"), Some("application/json"));
        let doc = p[0].json().unwrap();
        assert_eq!(doc["_id"], "a");
        assert_eq!(doc["_attachments"]["bin"]["stub"], true);
    }

    // `latest` with only unknown revisions: answered by couchgate, in the same form.
    let a = read(
        &w.alice,
        &format!(
            "/notes/a?open_revs={}&latest=true",
            enc(&json!(["7-0123456789abcdef0123456789abcdef"]))
        ),
        "multipart/mixed",
    )
    .await;
    let p = parts(&a);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].json().unwrap()["missing"],
        "7-0123456789abcdef0123456789abcdef"
    );

    // JSON to a JSON client, as before.
    let a = read(&w.alice, "/notes/a?open_revs=all", "application/json").await;
    assert_eq!(a.body[0]["ok"]["_id"], "a", "{:?}", a.body);
}

#[tokio::test]
async fn attachments_true_answers_multipart_related_when_accepted() {
    let w = world().await;
    let a = read(&w.alice, "/notes/a?attachments=true", "multipart/related").await;
    assert!(
        content_type(&a).starts_with("multipart/related"),
        "{}",
        summary(&a)
    );
    let p = parts(&a);
    assert_eq!(p.len(), 2);
    let doc = p[0].json().unwrap();
    assert_eq!(doc["_id"], "a");
    assert_eq!(doc["_attachments"]["bin"]["follows"], true);
    assert_eq!(doc["_attachments"]["bin"]["length"], w.data.len());
    assert_eq!(p[1].body, w.data);
    no_backing_ids(&w.gate, &a).await;

    // Every attachment a stub (atts_since), or none at all: JSON, as CouchDB answers.
    let a = read(
        &w.alice,
        &format!(
            "/notes/a?attachments=true&atts_since={}",
            enc(&json!([w.rev1]))
        ),
        "multipart/related",
    )
    .await;
    // PouchDB Server ignores `atts_since` and sends the data (couchgate passes it on).
    if w.couchdb {
        assert!(
            content_type(&a).starts_with("application/json"),
            "{}",
            summary(&a)
        );
        assert_eq!(a.body["_attachments"]["bin"]["stub"], true);
    }
    let a = read(
        &w.alice,
        "/notes/plain?attachments=true",
        "multipart/related",
    )
    .await;
    assert!(
        content_type(&a).starts_with("application/json"),
        "{}",
        summary(&a)
    );
    assert_eq!(a.body["_id"], "plain");

    // JSON asked for: inline base64.
    let a = read(&w.alice, "/notes/a?attachments=true", "application/json").await;
    assert_eq!(a.body["_attachments"]["bin"]["data"], b64(&w.data));
}

#[tokio::test]
async fn conflicted_documents_answer_every_leaf_and_nothing_of_other_users() {
    let w = world().await;
    let bob = w.gate.client("bob");
    bob.create_db("notes").await;
    bob.put("/notes/a", json!({"bob": true})).await.ok();
    for (rev, v) in [("1-aaaa", 1), ("1-bbbb", 2)] {
        w.alice
            .post(
                "/notes/_bulk_docs",
                json!({"new_edits": false, "docs": [{"_id": "c", "_rev": rev, "v": v}]}),
            )
            .await
            .ok();
    }
    let a = read(&w.alice, "/notes/c?open_revs=all", "*/*").await;
    let p = parts(&a);
    assert_eq!(p.len(), 2, "{}", summary(&a));
    let mut revs: Vec<String> = p
        .iter()
        .map(|x| x.json().unwrap()["_rev"].as_str().unwrap().to_owned())
        .collect();
    revs.sort();
    assert_eq!(revs, ["1-aaaa", "1-bbbb"]);
    // Bob's `a` is his own: Alice's read sees hers only.
    let a = read(&w.alice, "/notes/a?open_revs=all", "multipart/mixed").await;
    let text = String::from_utf8_lossy(&a.bytes);
    assert!(!text.contains("\"bob\""), "{text}");
    no_backing_ids(&w.gate, &a).await;
    // A missing document is CouchDB's JSON error whatever was accepted.
    read(&w.alice, "/notes/nothing?open_revs=all", "multipart/mixed")
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn bulk_get_answers_multipart_to_a_client_that_does_not_take_json() {
    let w = world().await;
    let body = json!({"docs": [
        {"id": "a"},
        {"id": "plain"},
        {"id": "nothing"},
        {"id": "a", "rev": w.rev1},
    ]});
    let post = |accept: &str| {
        w.alice
            .request(Method::POST, "/notes/_bulk_get?revs=true&attachments=true")
            .header("Accept", accept)
            .json(&body)
    };
    let a = w.alice.send(post("multipart/mixed")).await;
    assert!(
        content_type(&a).starts_with("multipart/mixed"),
        "{}",
        summary(&a)
    );
    let p = parts(&a);
    assert_eq!(p.len(), 4, "{}", summary(&a));
    // `a`, with its attachment data, named by X-Doc-Id and X-Rev-Id.
    assert_eq!(p[0].header("x-doc-id"), Some("a"));
    assert_eq!(p[0].header("x-rev-id"), Some(w.rev2.as_str()));
    assert_eq!(p[0].nested[0].json().unwrap()["_id"], "a");
    assert_eq!(p[0].nested[1].body, w.data);
    assert_eq!(p[1].header("content-type"), Some("application/json"));
    assert_eq!(p[1].json().unwrap()["_id"], "plain");
    assert_eq!(
        p[2].header("content-type"),
        Some("application/json; error=\"true\"")
    );
    let err = p[2].json().unwrap();
    assert_eq!(
        (err["id"].as_str(), err["error"].as_str()),
        (Some("nothing"), Some("not_found"))
    );
    assert_eq!(p[3].header("x-rev-id"), Some(w.rev1.as_str()));
    assert_eq!(p[3].nested[1].body, w.data);
    no_backing_ids(&w.gate, &a).await;

    // A client that takes JSON gets JSON, as from CouchDB.
    for accept in [
        "application/json",
        "*/*",
        "application/json, multipart/mixed",
    ] {
        let a = w.alice.send(post(accept)).await;
        assert!(
            content_type(&a).starts_with("application/json"),
            "{accept}: {}",
            summary(&a)
        );
        assert_eq!(a.body["results"].as_array().unwrap().len(), 4);
    }
}
