//! Reads one user can make expensive or break for others: a deeply nested document in the
//! shared feed, unbounded backend reads (descending feeds, instance switches, huge keys lists)
//! and `_all_docs` offsets counted by walking the namespace.
//!
//! Every test runs against a real backend (PouchDB Server, or `COUCHDB_URL`); where the test
//! counts what couchgate asks of the backend, the backend sits behind [`Fake`], which passes
//! every request through and records it.

mod support;

use serde_json::{json, Value};
use std::time::Instant;
use support::fake::{Fake, FakeGate};
use support::{ok, Backend, Client, Gate};

/// A document nested `depth` levels deep (the document object itself is one).
fn deep_doc(depth: usize) -> Value {
    let mut v = json!([]);
    for _ in 2..depth {
        v = json!([v]);
    }
    json!({ "deep": v })
}

/// A successful answer too deep for serde_json's own nesting limit.
fn deep_ok(a: support::Answer) -> Value {
    assert!(a.status.is_success(), "{}", a.status);
    let mut de = serde_json::Deserializer::from_slice(&a.bytes);
    de.disable_recursion_limit();
    serde::Deserialize::deserialize(serde_stacker::Deserializer::new(&mut de)).unwrap()
}

/// Writes `n` documents `{prefix}{i:05}` in bulk requests of 1000.
async fn write_many(c: &Client, db: &str, prefix: &str, n: usize) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i:05}")).collect();
    for chunk in ids.chunks(1000) {
        let docs: Vec<Value> = chunk.iter().map(|id| json!({"_id": id})).collect();
        ok(
            c.post(&format!("/{db}/_bulk_docs"), json!({ "docs": docs }))
                .await,
            "bulk write",
        );
    }
}

fn ids_of(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The backend requests for the client's own reads: those the index's follower makes always
/// ask for `style=all_docs`.
fn client_requests(fake: &Fake, path: &str) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|r| r.contains(path) && !r.contains("style=all_docs"))
        .collect()
}

/// The `limit` a backend request asked for, if any.
fn limit_of(request: &str) -> Option<u64> {
    let query = request.split_once('?')?.1;
    query
        .split(['&', ' '])
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse().ok())
}

/// User A stores documents nested 200 levels and as deep as couchgate accepts; B's feed (read
/// from the start and resumed from a token of another instance) still answers with B's
/// documents, and A reads its own back.
#[tokio::test]
async fn a_deep_document_of_one_user_leaves_every_other_feed_whole() {
    let backend = Backend::start();
    let db = support::unique_db();
    let gate = Gate::start_on(&backend, &db, "127.0.0.1:0", &[]);
    let other = Gate::start_on(&backend, &db, "127.0.0.1:0", &[]);
    let (alice, bob) = (gate.client("alice"), gate.client("bob"));
    alice.create_db("notes").await;
    bob.create_db("notes").await;
    let token = ok(other.client("bob").get("/notes/_changes").await, "token")["last_seq"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(bob.put("/notes/b1", json!({"v": 1})).await, "b1");
    for (id, depth) in [("deep200", 200), ("deepest", couchgate::json::MAX_DEPTH)] {
        ok(
            alice.put(&format!("/notes/{id}"), deep_doc(depth)).await,
            id,
        );
    }
    ok(bob.put("/notes/b2", json!({"v": 2})).await, "b2");

    for since in ["0", token.as_str()] {
        for feed in ["normal", "longpoll"] {
            let path = format!("/notes/_changes?include_docs=true&feed={feed}&since={since}");
            let answer = ok(bob.get(&path).await, "bob's feed");
            assert_eq!(ids_of(&answer), ["b1", "b2"], "{feed}: {answer}");
            assert_eq!(answer["results"][1]["doc"]["v"], 2, "{answer}");
        }
    }
    let answer = deep_ok(alice.get("/notes/_changes?include_docs=true").await);
    assert_eq!(ids_of(&answer), ["deep200", "deepest"]);
    let doc = &answer["results"][1]["doc"];
    assert_eq!(doc["_id"], "deepest");
    assert_eq!(doc["deep"], deep_doc(couchgate::json::MAX_DEPTH)["deep"]);
    let all = deep_ok(alice.get("/notes/_all_docs?include_docs=true").await);
    assert_eq!(all["rows"][1]["doc"]["_id"], "deepest");
}

/// A descending feed is the index's newest entries, whatever `since` says: no read of the
/// shared feed.
#[tokio::test]
async fn descending_feeds_never_read_the_shared_feed() {
    let backend = Backend::start();
    let fake = Fake::start(&backend.url);
    let gate = FakeGate::start(&fake.url(), &[]);
    let (alice, bob) = (gate.client("alice"), gate.client("bob"));
    alice.create_db("notes").await;
    bob.create_db("notes").await;
    write_many(&alice, "notes", "a", 120).await;
    for id in ["b1", "b2", "b3"] {
        ok(bob.put(&format!("/notes/{id}"), json!({})).await, id);
    }
    let token = ok(bob.get("/notes/_changes?limit=1").await, "token")["last_seq"]
        .as_str()
        .unwrap()
        .to_owned();
    for since in ["0", "now", token.as_str()] {
        fake.clear_requests();
        let path = format!("/notes/_changes?descending=true&since={since}");
        let answer = ok(bob.get(&path).await, "desc");
        assert_eq!(ids_of(&answer), ["b3", "b2", "b1"], "{answer}");
        let reads = client_requests(&fake, "/_changes");
        assert!(reads.is_empty(), "answered from the index: {reads:?}");
    }
}

/// A token another instance issued (or one from before a lost index) costs the caller's own
/// documents, replayed from the index, and no read of the shared feed, however many
/// documents other users have.
#[tokio::test]
async fn a_foreign_token_costs_only_the_callers_own_documents() {
    let backend = Backend::start();
    let fake = Fake::start(&backend.url);
    let db = support::unique_db();
    let a = FakeGate::start_on(&fake.url(), &db, &[]);
    let b = FakeGate::start_on(&fake.url(), &db, &[]);
    let (alice, bob) = (a.client("alice"), a.client("bob"));
    alice.create_db("notes").await;
    bob.create_db("notes").await;
    write_many(&alice, "notes", "a", 500).await;
    for id in ["b0", "b1", "b2"] {
        ok(bob.put(&format!("/notes/{id}"), json!({})).await, id);
    }
    let from_a = ok(bob.get("/notes/_changes").await, "a")["last_seq"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_b = b.client("bob");
    // Wait until instance b's index has bob's documents.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while ids_of(&ok(bob_b.get("/notes/_changes").await, "b")).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "instance b never indexed bob's documents"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    fake.clear_requests();
    let answer = ok(
        bob_b.get(&format!("/notes/_changes?since={from_a}")).await,
        "switch",
    );
    // In the order instance b indexed them, which the shared feed decides.
    let mut replayed = ids_of(&answer);
    replayed.sort();
    assert_eq!(replayed, ["b0", "b1", "b2"], "replayed, nothing else");
    let reads: Vec<String> = client_requests(&fake, "/");
    assert!(reads.is_empty(), "no backend read at all: {reads:?}");
    // b's own token resumes exactly.
    let from_b = answer["last_seq"].as_str().unwrap();
    let answer = ok(
        bob_b.get(&format!("/notes/_changes?since={from_b}")).await,
        "resume",
    );
    assert_eq!(ids_of(&answer), Vec::<String>::new());
}

/// Long `keys` lists go to the backend in bounded chunks, and the answers are exactly those of
/// the documents read one range at a time.
#[tokio::test]
async fn keys_lists_are_forwarded_in_bounded_chunks() {
    let backend = Backend::start();
    let fake = Fake::start(&backend.url);
    let gate = FakeGate::start(&fake.url(), &[]);
    let bob = gate.client("bob");
    bob.create_db("notes").await;
    write_many(&bob, "notes", "d", 2500).await;
    let range = ok(bob.get("/notes/_all_docs?include_docs=true").await, "range");
    let by_id: std::collections::HashMap<String, Value> = range["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    assert_eq!(by_id.len(), 2500);
    // Newest first, with a few keys that name nothing.
    let mut keys: Vec<Value> = (0..2500).rev().map(|i| json!(format!("d{i:05}"))).collect();
    keys.insert(1200, json!("missing"));
    keys.push(json!(7));

    fake.clear_requests();
    let answer = ok(
        bob.post(
            "/notes/_all_docs?include_docs=true",
            json!({ "keys": keys }),
        )
        .await,
        "keys",
    );
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), keys.len());
    for (row, key) in rows.iter().zip(&keys) {
        match by_id.get(key.as_str().unwrap_or("")) {
            Some(expected) => assert_eq!(row, expected),
            None => assert_eq!(row, &json!({"key": key, "error": "not_found"})),
        }
    }
    let posts = client_requests(&fake, "/_all_docs");
    assert!(posts.iter().all(|r| r.starts_with("POST ")), "{posts:?}");
    assert_eq!(posts.len(), 3, "2,500 keys in chunks of 1,000: {posts:?}");

    // _revs_diff: 2,500 ids in chunks of 1,000; nothing is missing but the unknown revision.
    let mut diff: serde_json::Map<String, Value> = by_id
        .iter()
        .map(|(id, r)| (id.clone(), json!([r["value"]["rev"]])))
        .collect();
    diff.insert("d00001".into(), json!(["9-ffff"]));
    fake.clear_requests();
    let answer = ok(
        bob.post("/notes/_revs_diff", Value::Object(diff)).await,
        "diff",
    );
    // CouchDB adds `possible_ancestors`; PouchDB Server does not.
    assert_eq!(answer.as_object().map(|m| m.len()), Some(1), "{answer}");
    assert_eq!(answer["d00001"]["missing"], json!(["9-ffff"]), "{answer}");
    let posts = client_requests(&fake, "/_revs_diff");
    assert_eq!(posts.len(), 3, "{posts:?}");

    // _bulk_get: 250 documents in chunks of 100, each answered.
    let docs: Vec<Value> = (0..250)
        .map(|i| json!({"id": format!("d{i:05}")}))
        .collect();
    fake.clear_requests();
    let answer = ok(
        bob.post("/notes/_bulk_get", json!({ "docs": docs })).await,
        "bulk_get",
    );
    let got: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["docs"][0]["ok"]["_id"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..250).map(|i| format!("d{i:05}")).collect();
    assert_eq!(got, want);
    let posts = client_requests(&fake, "/_bulk_get");
    assert_eq!(posts.len(), 3, "{posts:?}");
}

/// `_all_docs` with a `startkey` counts its `offset` without reading the namespace from its
/// start: with the changes index synced, no backend read beyond the page itself.
#[tokio::test]
async fn all_docs_offsets_do_not_walk_the_namespace() {
    let backend = Backend::start();
    let fake = Fake::start(&backend.url);
    let gate = FakeGate::start(&fake.url(), &[]);
    let bob = gate.client("bob");
    bob.create_db("notes").await;
    write_many(&bob, "notes", "d", 10_000).await;
    let rev = ok(bob.get("/notes/d00010").await, "doc")["_rev"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        bob.delete(&format!("/notes/d00010?rev={rev}")).await,
        "delete",
    );

    let cases = [
        ("startkey=%22d09000%22&limit=3", 8999, "d09000"),
        ("startkey=%22d00010%22&limit=3", 10, "d00011"),
        (
            "descending=true&startkey=%22d00100%22&limit=3",
            9899,
            "d00100",
        ),
    ];
    for (query, offset, first) in cases {
        fake.clear_requests();
        let answer = ok(bob.get(&format!("/notes/_all_docs?{query}")).await, query);
        assert_eq!(answer["total_rows"], 9999, "{query}: {answer}");
        assert_eq!(answer["offset"], offset, "{query}: {answer}");
        assert_eq!(answer["rows"][0]["id"], first, "{query}: {answer}");
        let reads = client_requests(&fake, "/_all_docs");
        let rows: u64 = reads.iter().filter_map(|r| limit_of(r)).sum();
        assert!(
            reads.len() <= 4 && rows <= 100,
            "{query}: reads proportional to the page, not the namespace: {reads:?}"
        );
    }
    let started = Instant::now();
    for _ in 0..20 {
        ok(
            bob.get("/notes/_all_docs?startkey=%22d09990%22&limit=1")
                .await,
            "timed",
        );
    }
    eprintln!(
        "_all_docs?startkey at 10k docs: {:?} per request",
        started.elapsed() / 20
    );
}

/// Deleting a virtual database removes its documents as the changes index lists them: the
/// shared feed is not scanned for them, however much other users hold.
#[tokio::test]
async fn deleting_a_database_does_not_scan_the_shared_feed() {
    let backend = Backend::start();
    let fake = Fake::start(&backend.url);
    let gate = FakeGate::start(&fake.url(), &[]);
    let (alice, bob) = (gate.client("alice"), gate.client("bob"));
    alice.create_db("notes").await;
    bob.create_db("notes").await;
    write_many(&alice, "notes", "a", 600).await;
    for id in ["b0", "b1", "b2"] {
        ok(bob.put(&format!("/notes/{id}"), json!({})).await, id);
    }
    fake.clear_requests();
    ok(bob.delete("/notes").await, "delete");
    // The cleanup ends by purging (CouchDB) or overwriting with tombstones (PouchDB Server).
    let removal =
        |r: &String| r.contains("/_purge") || r.starts_with("POST") && r.contains("/_bulk_docs");
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while !fake.requests().iter().any(removal) {
        assert!(
            Instant::now() < deadline,
            "no cleanup: {:?}",
            fake.requests()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The follower's own reads are `GET ..._changes?...style=all_docs...`.
    let scans: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.contains("/_changes") && !(r.starts_with("GET") && r.contains("style=all_docs"))
        })
        .collect();
    assert!(scans.is_empty(), "the shared feed was scanned: {scans:?}");
    let removals: Vec<String> = fake.requests().into_iter().filter(removal).collect();
    assert!(
        removals.len() <= 2,
        "one page of bob's 3 documents: {removals:?}"
    );
}
