//! Findings 2, 10 and 11 of the security review, against a real backend (PouchDB Server, or
//! the CouchDB of `COUCHDB_URL`): attachment stubs never reach another document's attachment,
//! `DELETE /{db}` leaves nothing of the namespace in the backing database (and finishes after a
//! restart), and password sessions end when the account changes.

mod support;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{couch_error, enc, ok, Answer, Backend, Client, Gate};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A stub naming `digest`, as a client would send it.
fn stub(digest: &str) -> Value {
    json!({"stub": true, "digest": digest, "content_type": "text/plain", "length": 4})
}

/// The digest the backend gave an attachment.
async fn digest(c: &Client, path: &str, name: &str) -> String {
    let doc = ok(c.get(path).await, "read the document");
    doc["_attachments"][name]["digest"]
        .as_str()
        .expect("an attachment digest")
        .to_owned()
}

fn missing_stub(a: &Answer, id: &str, name: &str, what: &str) {
    couch_error(a, 412, "missing_stub", what);
    assert_eq!(
        a.body["reason"],
        format!("Invalid attachment stub in {id} for {name}"),
        "{what}"
    );
}

/// A `multipart/related` body of just the JSON part.
fn multipart(doc: &Value) -> (String, Vec<u8>) {
    let body = format!("--XyZ\r\ncontent-type: application/json\r\n\r\n{doc}\r\n--XyZ--\r\n");
    (
        "multipart/related; boundary=\"XyZ\"".into(),
        body.into_bytes(),
    )
}

/// Finding 2: a stub names an attachment of the revision it builds on, of the same document,
/// or is refused as CouchDB refuses it; a guessed digest of another user's attachment gets the
/// same answer as a wrong one, and nothing is written.
#[tokio::test]
async fn stubs_never_reach_another_documents_attachment() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let bob = gate.client("bob");
    let mallory = gate.client("mallory");
    bob.create_db("vault").await;
    mallory.create_db("vault").await;
    let pin = json!({"pin.txt": {"content_type": "text/plain", "data": b64("4821")}});
    let bob_rev = ok(
        bob.put("/vault/pin", json!({ "_attachments": pin })).await,
        "bob's PIN",
    )["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let bobs = digest(&bob, "/vault/pin", "pin.txt").await;

    // A new document cannot keep anything: the right guess and a wrong one answer alike.
    let mut answers = Vec::new();
    for guess in [bobs.as_str(), "md5-AAAAAAAAAAAAAAAAAAAAAA=="] {
        let doc = json!({"_attachments": {"pin.txt": stub(guess)}});
        let a = mallory.put("/vault/probe", doc.clone()).await;
        missing_stub(&a, "probe", "pin.txt", "PUT of a new document with a stub");
        answers.push(a.body);
        let mut posted = doc;
        posted["_id"] = json!("probe");
        let a = mallory.post("/vault", posted).await;
        missing_stub(&a, "probe", "pin.txt", "POST of a new document with a stub");
    }
    assert_eq!(answers[0], answers[1], "the answer tells the guesses apart");
    couch_error(
        &mallory.get("/vault/probe").await,
        404,
        "not_found",
        "probe",
    );

    // Mallory's own document, whose revision has no such attachment.
    let own = ok(mallory.put("/vault/own", json!({"v": 1})).await, "own")["rev"].clone();
    let doc = json!({"_rev": own, "_attachments": {"pin.txt": stub(&bobs)}});
    let a = mallory.put("/vault/own", doc.clone()).await;
    missing_stub(
        &a,
        "own",
        "pin.txt",
        "PUT over a revision without the attachment",
    );
    let (ct, body) = multipart(&doc);
    let r = mallory
        .request(Method::PUT, "/vault/own")
        .header("content-type", ct)
        .body(body);
    let a = mallory.send(r).await;
    missing_stub(&a, "own", "pin.txt", "multipart PUT");
    assert_eq!(ok(mallory.get("/vault/own").await, "own")["_rev"], own);

    // A stub of an attachment the document has keeps that one, whatever digest it names (as
    // in CouchDB): never bob's.
    let atts = json!({"pin.txt": {"content_type": "text/plain", "data": b64("mine")}});
    let r1 = ok(
        mallory
            .put("/vault/mine", json!({ "_attachments": atts }))
            .await,
        "mine",
    )["rev"]
        .clone();
    let mine = digest(&mallory, "/vault/mine", "pin.txt").await;
    assert_ne!(mine, bobs);
    let r2 = ok(
        mallory
            .put(
                "/vault/mine",
                json!({"_rev": r1, "v": 2, "_attachments": {"pin.txt": stub(&bobs)}}),
            )
            .await,
        "an update keeping the attachment",
    )["rev"]
        .clone();
    assert_eq!(digest(&mallory, "/vault/mine", "pin.txt").await, mine);
    let a = mallory.get("/vault/mine/pin.txt").await;
    assert_eq!(a.bytes, b"mine");

    // `_bulk_docs`: the refused document is a row of the answer; the others are written.
    let a = mallory
        .post(
            "/vault/_bulk_docs",
            json!({"docs": [
                {"_id": "fine", "v": 1},
                {"_id": "probe2", "_attachments": {"pin.txt": stub(&bobs)}},
                {"_id": "mine", "_rev": r2, "_attachments": {"pin.txt": stub(&bobs)}},
            ]}),
        )
        .await;
    let rows = ok(a, "_bulk_docs");
    assert_eq!(rows[0]["ok"], true, "{rows}");
    assert_eq!(
        rows[1],
        json!({"id": "probe2", "error": "missing_stub",
               "reason": "Invalid attachment stub in probe2 for pin.txt"})
    );
    assert_eq!(rows[2]["ok"], true, "{rows}");
    couch_error(
        &mallory.get("/vault/probe2").await,
        404,
        "not_found",
        "probe2",
    );
    assert_eq!(digest(&mallory, "/vault/mine", "pin.txt").await, mine);

    // Replicated writes: the ancestors must be in the document's own revision tree. Bob's
    // revision id as an ancestor of Mallory's document does not make it one.
    let bob_rev_id = bob_rev.split_once('-').unwrap().1;
    let a = mallory
        .post(
            "/vault/_bulk_docs",
            json!({"new_edits": false, "docs": [{
                "_id": "pin", "_rev": "2-abc",
                "_revisions": {"start": 2, "ids": ["abc", bob_rev_id]},
                "_attachments": {"pin.txt": stub(&bobs)},
            }]}),
        )
        .await;
    let rows = ok(a, "replicated _bulk_docs");
    assert_eq!(
        rows,
        json!([{"id": "pin", "error": "missing_stub",
                "reason": "Invalid attachment stub in pin for pin.txt"}])
    );
    couch_error(&mallory.get("/vault/pin").await, 404, "not_found", "pin");
    // ... while a replicated revision on top of the document's own revisions keeps its
    // attachment, by PUT and by `_bulk_docs`.
    let ids = |rev: &Value| rev.as_str().unwrap().split_once('-').unwrap().1.to_owned();
    let a = mallory
        .put(
            "/vault/mine?new_edits=false",
            json!({"_rev": "4-cc", "_revisions": {"start": 4, "ids": ["cc", "bb", ids(&r2), ids(&r1)]},
                   "_attachments": {"pin.txt": stub(&bobs)}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = mallory.get("/vault/mine/pin.txt?rev=4-cc").await;
    assert_eq!(a.bytes, b"mine");
    let a = mallory
        .put(
            "/vault/pin?new_edits=false",
            json!({"_rev": "2-abc", "_revisions": {"start": 2, "ids": ["abc", bob_rev_id]},
                   "_attachments": {"pin.txt": stub(&bobs)}}),
        )
        .await;
    missing_stub(&a, "pin", "pin.txt", "replicated PUT naming bob's revision");
}

/// The partition of `user`'s current `db`, from its record in the backing database.
async fn partition(gate: &Gate, user: &str, db: &str) -> String {
    let meta = ok(
        gate.backing()
            .get(&format!("/{}", enc(&format!("couchgate:db.{user}.{db}"))))
            .await,
        "the database record",
    );
    format!("{user}.{db}.{}", meta["epoch"].as_str().expect("an epoch"))
}

/// What the backing database still holds of `partition`: live documents, bodies of any
/// revision (tombstones included), `_local` documents.
async fn leftovers(gate: &Gate, partition: &str, locals: &[&str]) -> Vec<String> {
    let raw = gate.backing();
    let mut found = Vec::new();
    let range = format!(
        "?startkey={}&endkey={}",
        enc(&json!(format!("{partition}:")).to_string()),
        enc(&json!(format!("{partition};")).to_string())
    );
    let all = ok(raw.get(&format!("/_all_docs{range}")).await, "_all_docs");
    for row in all["rows"].as_array().unwrap() {
        found.push(format!("live document {}", row["id"]));
    }
    let changes = ok(raw.get("/_changes?style=all_docs").await, "_changes");
    for row in changes["results"].as_array().unwrap() {
        let id = row["id"].as_str().unwrap();
        if !id.starts_with(&format!("{partition}:")) {
            continue;
        }
        // CouchDB has `_purge`: there not even the id may remain.
        if std::env::var_os("COUCHDB_URL").is_some() {
            found.push(format!("{id} is still in the feed (not purged)"));
        }
        let path = format!("/{}", enc(id));
        let leaves = raw
            .send(
                raw.request(Method::GET, &format!("{path}?open_revs=all&revs=true"))
                    .header("accept", "application/json"),
            )
            .await;
        let Some(leaves) = leaves.body.as_array() else {
            found.push(format!("{id} has leaves too deep to read"));
            continue;
        };
        for leaf in leaves {
            let doc = &leaf["ok"];
            let Some(start) = doc["_revisions"]["start"].as_u64() else {
                continue;
            };
            for (i, rev_id) in doc["_revisions"]["ids"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                let rev = format!("{}-{}", start - i as u64, rev_id.as_str().unwrap());
                let a = raw.get(&format!("{path}?rev={rev}")).await;
                if !a.status.is_success() {
                    continue;
                }
                let Some(doc) = a.body.as_object() else {
                    found.push(format!("{id} at {rev} has a body too deep to read"));
                    continue;
                };
                let body: Vec<&String> = doc
                    .keys()
                    .filter(|k| !["_id", "_rev", "_deleted"].contains(&k.as_str()))
                    .collect();
                if !body.is_empty() {
                    found.push(format!("{id} at {rev} has {body:?}"));
                }
            }
        }
    }
    let list = format!("_local/{partition}");
    let indexes = format!("_local/{partition}.mango");
    for local in locals
        .iter()
        .map(|l| format!("_local/{partition}:{l}"))
        .chain([list, indexes])
    {
        if raw
            .get(&format!("/{}", local.replace(':', "%3A")))
            .await
            .status
            != 404
        {
            found.push(local);
        }
    }
    found
}

/// Waits (bounded) until the backing database holds nothing of `partition`.
async fn wait_clean(gate: &Gate, partition: &str, locals: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = leftovers(gate, partition, locals).await;
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the backing database still holds of {partition}: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes, through `c`, documents of every kind into `db`: live, deleted with a body,
/// conflicted, with an attachment, and `_local` ones by PUT and by POST. Answers the `_local`
/// ids.
async fn fill(c: &Client, db: &str) -> Vec<&'static str> {
    ok(
        c.put(&format!("/{db}/live"), json!({"secret": "live"}))
            .await,
        "live",
    );
    ok(
        c.post(
            &format!("/{db}/_index"),
            json!({"index": {"fields": ["secret"]}}),
        )
        .await,
        "a Mango index",
    );
    let r = ok(c.put(&format!("/{db}/gone"), json!({"v": 1})).await, "gone")["rev"].clone();
    let tomb = json!({"docs": [{"_id": "gone", "_rev": r, "_deleted": true, "secret": "tomb"}]});
    ok(
        c.post(&format!("/{db}/_bulk_docs"), tomb).await,
        "tombstone",
    );
    let conflicts = json!({"new_edits": false, "docs": [
        {"_id": "c", "_rev": "1-a", "secret": "a"},
        {"_id": "c", "_rev": "1-b", "secret": "b"},
    ]});
    ok(
        c.post(&format!("/{db}/_bulk_docs"), conflicts).await,
        "conflicts",
    );
    let att =
        json!({"_attachments": {"f.txt": {"content_type": "text/plain", "data": b64("secret")}}});
    ok(c.put(&format!("/{db}/att"), att).await, "attachment");
    ok(
        c.put(&format!("/{db}/_local/ckpt"), json!({"secret": "l"}))
            .await,
        "_local by PUT",
    );
    let posted = json!({"_id": "_local/posted", "secret": "p"});
    ok(c.post(&format!("/{db}"), posted).await, "_local by POST");
    vec!["ckpt", "posted"]
}

/// Finding 10: after `DELETE /{db}` the backing database holds nothing of the namespace: no
/// live document, no body of any revision (tombstones included), no `_local` document, even
/// when one of its documents is one couchgate cannot parse.
#[tokio::test]
async fn delete_leaves_nothing_of_the_namespace() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("d").await;
    let locals = fill(&alice, "d").await;
    let p = partition(&gate, "alice", "d").await;
    // A document nested deeper than couchgate parses, put straight into the backing database.
    let deep = format!("{{\"secret\":{}1{}}}", "[".repeat(1100), "]".repeat(1100));
    let r = gate
        .backing()
        .request(Method::PUT, &format!("/{}", enc(&format!("{p}:deep"))))
        .header("content-type", "application/json")
        .body(deep);
    assert!(gate.backing().send(r).await.status.is_success());
    // What the check below looks for is there before the deletion.
    let before = leftovers(&gate, &p, &locals).await;
    for what in [
        "live document",
        ":gone at 2-",
        ":c at 1-a",
        ":deep has leaves too deep",
        ":ckpt",
        ":posted",
    ] {
        assert!(
            before.iter().any(|l| l.contains(what)),
            "{what} in {before:#?}"
        );
    }

    ok(alice.delete("/d").await, "DELETE /d");
    couch_error(&alice.get("/d").await, 404, "not_found", "GET after DELETE");
    wait_clean(&gate, &p, &locals).await;
    // A new incarnation starts empty and can be deleted again.
    alice.create_db("d").await;
    assert_eq!(ok(alice.get("/d").await, "info")["doc_count"], 0);
    let p2 = partition(&gate, "alice", "d").await;
    assert_ne!(p, p2);
    let locals = fill(&alice, "d").await;
    ok(alice.delete("/d").await, "second DELETE");
    wait_clean(&gate, &p2, &locals).await;
}

/// Finding 10: a deletion couchgate could not finish (it stopped after the one write that
/// deletes the database, or while it was removing the documents) finishes after a restart.
#[tokio::test]
async fn an_interrupted_delete_finishes_after_a_restart() {
    let backend = Backend::start();
    let database = support::unique_db();
    let gate = Gate::start_on(&backend, &database, "127.0.0.1:0", &[]);
    let alice = gate.client("alice");
    alice.create_db("d").await;
    let locals = fill(&alice, "d").await;
    let p = partition(&gate, "alice", "d").await;
    let meta_path = format!("/{}", enc("couchgate:db.alice.d"));
    let meta = ok(gate.backing().get(&meta_path).await, "record");
    gate.stop();

    // The state `DELETE /d` leaves with its one write, as if couchgate died right after it.
    let raw = Client::new(&format!("{}/{}", backend.url, database), None);
    let deleted = json!({"_rev": meta["_rev"], "type": "couchgate.database", "user": "alice",
                         "db": "d", "dropped": [meta["epoch"]]});
    ok(
        raw.put(&meta_path, deleted).await,
        "record of a deleted database",
    );

    let gate = Gate::start_on(&backend, &database, "127.0.0.1:0", &[]);
    let alice = gate.client("alice");
    couch_error(
        &alice.get("/d").await,
        404,
        "not_found",
        "GET of a deleted database",
    );
    wait_clean(&gate, &p, &locals).await;
    // Nothing is left of the database, its record included.
    let deadline = Instant::now() + Duration::from_secs(30);
    while raw.get(&meta_path).await.status != 404 {
        assert!(Instant::now() < deadline, "the record stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stopped right after answering a DELETE, whatever the cleanup got to.
    alice.create_db("d").await;
    let locals = fill(&alice, "d").await;
    let p = partition(&gate, "alice", "d").await;
    ok(alice.delete("/d").await, "DELETE /d");
    gate.stop();
    let gate = Gate::start_on(&backend, &database, "127.0.0.1:0", &[]);
    wait_clean(&gate, &p, &locals).await;
}

/// Creates or updates `name` in the backend's `_users` (admin).
async fn set_user(backend: &Backend, name: &str, password: &str, roles: Value) {
    let admin = Client::new(&backend.url, None);
    let path = format!("/_users/{}", enc(&format!("org.couchdb.user:{name}")));
    let mut doc = json!({"name": name, "password": password, "roles": roles, "type": "user"});
    let current = admin.get(&path).await;
    if current.status.is_success() {
        doc["_rev"] = current.body["_rev"].clone();
    }
    ok(admin.put(&path, doc).await, "_users write");
}

async fn login(gate: &Gate, name: &str, password: &str) -> String {
    let a = gate
        .anonymous()
        .post("/_session", json!({"name": name, "password": password}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let set = a.headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn with_cookie(gate: &Gate, method: Method, path: &str, cookie: &str) -> Answer {
    let c = gate.anonymous();
    c.send(c.request(method, path).header("cookie", cookie))
        .await
}

/// Finding 11: a session opened with a password ends when the account is deleted, its
/// password changed or a role removed (checked every `--basic-auth-cache-secs`, here 0: on
/// every request), and its roles (the service role included) go with it.
#[tokio::test]
async fn password_sessions_end_when_the_account_changes() {
    let backend = Backend::start();
    let gate = Gate::start(
        &backend,
        &[
            "--basic-auth",
            "--shared-identities",
            "--basic-auth-cache-secs",
            "0",
            "--service-role",
            "svc",
        ],
    );
    let name = format!("u{}", support::unique_db().replace('-', "_"));
    set_user(&backend, &name, "pw-1", json!(["svc"])).await;
    let session = |cookie: String| {
        let gate = &gate;
        async move { with_cookie(gate, Method::GET, "/_session", &cookie).await }
    };

    // Unchanged accounts keep their sessions, service role included.
    let cookie = login(&gate, &name, "pw-1").await;
    let s = ok(session(cookie.clone()).await, "session");
    assert_eq!(s["userCtx"]["roles"], json!(["svc"]));
    let c = gate.anonymous();
    let as_bob = c
        .request(Method::PUT, "/notes")
        .header("cookie", &cookie)
        .header("x-couchgate-user", "bob");
    assert_eq!(c.send(as_bob).await.status, 201, "the service acts for bob");
    assert_eq!(
        ok(session(cookie.clone()).await, "again")["userCtx"]["name"],
        name.as_str()
    );

    // A new password ends the session.
    set_user(&backend, &name, "pw-2", json!(["svc"])).await;
    couch_error(
        &session(cookie).await,
        401,
        "unauthorized",
        "after a password change",
    );

    // A role removed ends the session that holds it.
    let cookie = login(&gate, &name, "pw-2").await;
    ok(session(cookie.clone()).await, "new session");
    set_user(&backend, &name, "pw-2", json!([])).await;
    let a = session(cookie.clone()).await;
    couch_error(&a, 401, "unauthorized", "after a role was removed");
    let c = gate.anonymous();
    let as_bob = c
        .request(Method::GET, "/notes")
        .header("cookie", &cookie)
        .header("x-couchgate-user", "bob");
    couch_error(
        &c.send(as_bob).await,
        401,
        "unauthorized",
        "service role after removal",
    );

    // A deleted account ends the session.
    let cookie = login(&gate, &name, "pw-2").await;
    ok(session(cookie.clone()).await, "session without roles");
    let admin = Client::new(&backend.url, None);
    let path = format!("/_users/{}", enc(&format!("org.couchdb.user:{name}")));
    let rev = ok(admin.get(&path).await, "user")["_rev"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        admin.delete(&format!("{path}?rev={rev}")).await,
        "delete the user",
    );
    couch_error(
        &session(cookie.clone()).await,
        401,
        "unauthorized",
        "after deletion",
    );
    couch_error(
        &with_cookie(&gate, Method::GET, "/notes", &cookie).await,
        401,
        "unauthorized",
        "a database request after deletion",
    );
}
