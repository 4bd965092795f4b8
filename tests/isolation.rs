//! Isolation between users: whatever one user sends, through whichever endpoint, with whatever
//! crafted id, they can never read, list, diff, overwrite, delete or count another user's
//! documents, `_local` documents, attachments, design documents or databases.
//!
//! Every test runs against a real backend (PouchDB Server, or `COUCHDB_URL`) through the
//! couchgate binary. Alice's documents carry [`MARK`] in their bodies and attachments, so any
//! answer another user gets that contains it is a leak, whatever its status.

mod support;

use reqwest::Method;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{couch_error, enc, ok, shaped, Answer, Backend, Client, Gate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Text only Alice's documents and attachments contain.
const MARK: &str = "ALICE-PRIVATE-4f1c";

/// Users whose names stress the encoding of partitions: separators, escapes, case, unicode, and
/// names that look like other users' encoded names or couchgate's own metadata partition.
const USERS: &[&str] = &[
    "alice",
    "bob",
    "Alice",
    "a:b",
    "a/b",
    "a%b",
    "a_b",
    "a.b",
    "a@b",
    "ünï 😀",
    "alice.notes",
    "a-3ab",
    "a-2eb",
    "couchgate",
    "_admin",
];

/// A JSON query parameter value.
fn qj(v: &Value) -> String {
    enc(&v.to_string())
}

/// A 404 with a CouchDB-shaped body. Used for missing attachments, whose error *name* is pinned
/// in `bad_input.rs` (`missing_attachment_is_couchdb_not_found`), so that isolation is checked
/// here whatever that name is.
fn missing(a: &Answer, what: &str) {
    assert_eq!(a.status.as_u16(), 404, "{what}: {}", a.body);
    shaped(a, what);
}

/// Asserts that an answer given to someone else never carries Alice's private text.
fn no_leak(a: &Answer, what: &str) {
    let text = String::from_utf8_lossy(&a.bytes);
    assert!(!text.contains(MARK), "{what} leaked Alice's data: {text}");
}

async fn put_doc(c: &Client, db: &str, id: &str, body: Value) -> String {
    let a = c.put(&format!("/{db}/{}", enc(id)), body).await;
    assert_eq!(a.status, 201, "PUT /{db}/{id}: {}", a.body);
    a.body["rev"].as_str().unwrap().to_owned()
}

async fn put_attachment(
    c: &Client,
    db: &str,
    id: &str,
    name: &str,
    rev: &str,
    data: &str,
) -> String {
    let r = c
        .request(
            Method::PUT,
            &format!("/{db}/{}/{}?rev={}", enc(id), enc(name), enc(rev)),
        )
        .header("content-type", "text/plain")
        .body(data.to_owned());
    let a = c.send(r).await;
    assert_eq!(a.status, 201, "PUT attachment {id}/{name}: {}", a.body);
    a.body["rev"].as_str().unwrap().to_owned()
}

fn row_ids(v: &Value) -> Vec<String> {
    v["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {v}"))
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect()
}

fn change_ids(v: &Value) -> BTreeSet<String> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {v}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every id of the backing database, read straight from the backend.
async fn backing_ids(gate: &Gate) -> Vec<String> {
    row_ids(&gate.backing().get("/_all_docs").await.ok())
}

/// The backing id of the only document whose client id is `client_id`.
async fn backing_id_of(gate: &Gate, client_id: &str) -> String {
    let suffix = format!(":{client_id}");
    let found: Vec<String> = backing_ids(gate)
        .await
        .into_iter()
        .filter(|id| id.ends_with(&suffix) && !id.starts_with("couchgate:"))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "backing ids ending with {suffix}: {found:?}"
    );
    found[0].clone()
}

/// A request sent byte for byte (reqwest would normalise `..` and `%2E%2E` away).
async fn raw_get(gate: &Gate, path: &str, token: &str) -> (u16, Vec<u8>) {
    let addr = gate.url.strip_prefix("http://").unwrap().to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("couchgate answers a raw request")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    (status, buf)
}

/// What Alice can see of her own database: documents, `_local` document, attachment, changes.
async fn snapshot(alice: &Client) -> Value {
    let docs = ok(
        alice
            .get("/notes/_all_docs?include_docs=true&conflicts=true")
            .await,
        "alice _all_docs",
    );
    let changes = ok(
        alice.get("/notes/_changes?style=all_docs").await,
        "alice _changes",
    );
    let changes: Vec<Value> = changes["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["id"], r["changes"], r["deleted"]]))
        .collect();
    let local = ok(alice.get("/notes/_local/ckpt").await, "alice _local");
    let att = alice.get("/notes/secret/att.txt").await;
    assert_eq!(att.status, 200);
    json!({
        "rows": docs["rows"],
        "total_rows": docs["total_rows"],
        "changes": changes,
        "local": local,
        "attachment": String::from_utf8_lossy(&att.bytes),
        "count": ok(alice.get("/notes").await, "alice GET /notes")["doc_count"],
    })
}

/// The full matrix: every user of [`USERS`] has a `notes` database holding the same ids, and
/// every user sees exactly their own documents through every read endpoint.
#[tokio::test]
async fn every_user_sees_only_their_own_virtual_database() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let users: Vec<(&str, Client)> = USERS.iter().map(|u| (*u, gate.client(u))).collect();
    let n = users.len();

    // A database created by one user does not exist for the others until they create theirs.
    for (i, (u, c)) in users.iter().enumerate() {
        for (later, lc) in &users[i..] {
            couch_error(
                &lc.get("/notes").await,
                404,
                "not_found",
                &format!("GET /notes as {later} before creating it"),
            );
        }
        c.create_db("notes").await;
        couch_error(
            &c.put("/notes", Value::Null).await,
            412,
            "file_exists",
            &format!("second PUT /notes as {u}"),
        );
    }

    struct Revs {
        same: String,
        only: String,
        design: String,
    }
    let mut revs = Vec::new();
    for (i, (u, c)) in users.iter().enumerate() {
        let same = put_doc(c, "notes", "same", json!({"owner": u})).await;
        let same =
            put_attachment(c, "notes", "same", "att.txt", &same, &format!("att of {u}")).await;
        let only = put_doc(c, "notes", &format!("only-{i}"), json!({"owner": u})).await;
        let design = put_doc(c, "notes", "_design/app", json!({"owner": u, "views": {}})).await;
        put_doc(c, "notes", "_local/ckpt", json!({"owner": u})).await;
        let gone = put_doc(c, "notes", "gone", json!({"owner": u})).await;
        ok(
            c.delete(&format!("/notes/gone?rev={gone}")).await,
            "DELETE gone",
        );
        revs.push(Revs { same, only, design });
    }

    for (i, (u, c)) in users.iter().enumerate() {
        let info = ok(c.get("/notes").await, "GET /notes");
        assert_eq!(info["db_name"], "notes");
        assert_eq!(
            info["doc_count"], 3,
            "{u}: only their own documents are counted: {info}"
        );

        let all = ok(
            c.get("/notes/_all_docs?include_docs=true").await,
            "_all_docs",
        );
        assert_eq!(all["total_rows"], 3, "{u}: {all}");
        assert_eq!(
            row_ids(&all),
            [
                "_design/app".to_owned(),
                format!("only-{i}"),
                "same".to_owned()
            ],
            "{u}"
        );
        for row in all["rows"].as_array().unwrap() {
            assert_eq!(row["doc"]["owner"], *u, "{u}: {row}");
        }

        let ch = ok(
            c.get("/notes/_changes?since=0&include_docs=true&style=all_docs")
                .await,
            "_changes",
        );
        let want: BTreeSet<String> = ["_design/app", "gone", "same"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("only-{i}")])
            .collect();
        assert_eq!(change_ids(&ch), want, "{u}: {ch}");
        for r in ch["results"].as_array().unwrap() {
            if r["deleted"] != true {
                assert_eq!(r["doc"]["owner"], *u, "{u}: {r}");
            }
        }

        assert_eq!(ok(c.get("/notes/same").await, "same")["owner"], *u);
        assert_eq!(ok(c.get("/notes/_design/app").await, "design")["owner"], *u);
        assert_eq!(ok(c.get("/notes/_local/ckpt").await, "local")["owner"], *u);
        let att = c.get("/notes/same/att.txt").await;
        assert_eq!(att.status, 200, "{u}");
        assert_eq!(att.bytes, format!("att of {u}").as_bytes(), "{u}");
        couch_error(
            &c.get("/notes/gone").await,
            404,
            "not_found",
            "own deleted doc",
        );

        // Nothing of anybody else: documents, revisions, design docs.
        let others: Vec<usize> = (0..n).filter(|j| *j != i).collect();
        let other_ids: Vec<String> = others.iter().map(|j| format!("only-{j}")).collect();
        for (j, id) in others.iter().zip(&other_ids) {
            let what = format!("{u} GET /notes/{id} of {}", users[*j].0);
            couch_error(
                &c.get(&format!("/notes/{id}")).await,
                404,
                "not_found",
                &what,
            );
            let what = format!("{u} GET same?rev= of {}", users[*j].0);
            couch_error(
                &c.get(&format!("/notes/same?rev={}", revs[*j].same)).await,
                404,
                "not_found",
                &what,
            );
        }

        let keyed = ok(
            c.post("/notes/_all_docs", json!({ "keys": other_ids }))
                .await,
            "_all_docs keys",
        );
        assert_eq!(keyed["total_rows"], 3, "{u}: {keyed}");
        for row in keyed["rows"].as_array().unwrap() {
            assert_eq!(row["error"], "not_found", "{u}: {row}");
            assert!(row.get("value").is_none(), "{u}: {row}");
        }

        let mut asked = Map::new();
        asked.insert(
            "same".into(),
            json!(others.iter().map(|j| &revs[*j].same).collect::<Vec<_>>()),
        );
        asked.insert(
            "_design/app".into(),
            json!(others.iter().map(|j| &revs[*j].design).collect::<Vec<_>>()),
        );
        for j in &others {
            asked.insert(format!("only-{j}"), json!([revs[*j].only]));
        }
        let diff = ok(
            c.post("/notes/_revs_diff", Value::Object(asked.clone()))
                .await,
            "_revs_diff",
        );
        for (id, revs) in &asked {
            let want: BTreeSet<&str> = revs
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            let got: BTreeSet<&str> = diff[id]["missing"]
                .as_array()
                .unwrap_or_else(|| panic!("{u}: {id} not in {diff}"))
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert_eq!(got, want, "{u}: every foreign revision of {id} is missing");
        }

        // One request per other user: each id once per request (repeated ids are pinned in
        // bad_input.rs, `bulk_get_with_repeated_ids_answers_every_item`).
        for j in &others {
            let wanted = json!([
                {"id": "same", "rev": revs[*j].same},
                {"id": "_design/app", "rev": revs[*j].design},
                {"id": format!("only-{j}")},
            ]);
            let got = ok(
                c.post(
                    "/notes/_bulk_get?revs=true&attachments=true",
                    json!({ "docs": wanted }),
                )
                .await,
                "_bulk_get",
            );
            let results = got["results"].as_array().unwrap();
            assert_eq!(results.len(), 3, "{u}: {got}");
            for r in results {
                for d in r["docs"].as_array().unwrap() {
                    // CouchDB answers `error`, PouchDB Server `missing` or `{}`: never `ok`.
                    assert!(d.get("ok").is_none(), "{u} got a foreign document: {d}");
                }
            }
            let got = ok(
                c.post(
                    "/notes/_bulk_get",
                    json!({"docs": [{"id": format!("only-{j}"), "rev": revs[*j].only}]}),
                )
                .await,
                "_bulk_get",
            );
            for d in got["results"][0]["docs"].as_array().unwrap() {
                assert!(d.get("ok").is_none(), "{u} got a foreign document: {d}");
            }
        }

        let ch = ok(
            c.post(
                "/notes/_changes?filter=_doc_ids",
                json!({ "doc_ids": other_ids }),
            )
            .await,
            "_changes doc_ids",
        );
        assert!(change_ids(&ch).is_empty(), "{u}: {ch}");
    }
}

/// Crafted ids: Alice's backing ids and partition, percent-encoding tricks, `..`, `_local/`
/// smuggling, ranges spanning the whole backing database; tried by Bob and by users named like
/// Alice's partition and backing ids.
#[tokio::test]
async fn crafted_ids_never_reach_another_namespace() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let secret_rev = put_doc(&alice, "notes", "secret", json!({"v": MARK})).await;
    let secret_rev = put_attachment(&alice, "notes", "secret", "att.txt", &secret_rev, MARK).await;
    for id in ["a/b", "a%2Fb", "zzz", "~tilde", "ÿ", "_design/app"] {
        put_doc(&alice, "notes", id, json!({"v": MARK})).await;
    }
    // `..` cannot travel in a URL without being resolved away by the client library.
    let dots = ok(
        alice.post("/notes", json!({"_id": "..", "v": MARK})).await,
        "POST ..",
    );
    assert_eq!(dots["id"], "..");
    put_doc(&alice, "notes", "_local/ckpt", json!({"v": MARK})).await;
    let before = snapshot(&alice).await;

    let secret_backing = backing_id_of(&gate, "secret").await;
    let part = secret_backing.strip_suffix(":secret").unwrap().to_owned();
    let local_backing = format!("_local/{part}:ckpt");
    assert_eq!(
        ok(
            gate.backing()
                .get(&format!(
                    "/_local/{}",
                    enc(&local_backing["_local/".len()..])
                ))
                .await,
            "Alice's _local doc in the backing database"
        )["v"],
        MARK
    );
    let backing_all = backing_ids(&gate).await;

    for b_name in [
        "bob".to_owned(),
        part.clone(),
        secret_backing.clone(),
        format!("{part}:"),
        "alice.notes".to_owned(),
        "alice ".to_owned(),
    ] {
        let b = gate.client(&b_name);
        let token = b.token.clone().unwrap();
        probe_as(
            &gate,
            &b,
            &b_name,
            &token,
            &secret_backing,
            &part,
            &secret_rev,
            &backing_all,
        )
        .await;
    }

    assert_eq!(
        snapshot(&alice).await,
        before,
        "Alice's database is untouched"
    );
}

/// Sends every crafted request as `b` and checks nothing of Alice's comes back or changes.
#[allow(clippy::too_many_arguments)]
async fn probe_as(
    gate: &Gate,
    b: &Client,
    who: &str,
    token: &str,
    secret_backing: &str,
    part: &str,
    secret_rev: &str,
    backing_all: &[String],
) {
    // Before `b` has a `notes` of their own, Alice's is as absent as a database nobody made.
    let db_paths = [
        "",
        "/_all_docs",
        "/_changes",
        "/secret",
        "/secret/att.txt",
        "/_design/app",
        "/_local/ckpt",
    ];
    for p in db_paths {
        let a = b.get(&format!("/notes{p}")).await;
        no_leak(&a, &format!("{who} GET /notes{p}"));
        couch_error(&a, 404, "not_found", &format!("{who} GET /notes{p}"));
        let control = b.get(&format!("/never-made{p}")).await;
        assert_eq!(
            a.body, control.body,
            "{who}: /notes{p} answers as a missing database"
        );
    }
    for (path, body) in [
        (
            "/notes/_bulk_docs",
            json!({"docs": [{"_id": "secret", "v": 1}]}),
        ),
        ("/notes/_bulk_get", json!({"docs": [{"id": "secret"}]})),
        ("/notes/_revs_diff", json!({"secret": [secret_rev]})),
        ("/notes/_all_docs", json!({"keys": ["secret"]})),
    ] {
        let a = b.post(path, body).await;
        no_leak(&a, path);
        couch_error(&a, 404, "not_found", &format!("{who} POST {path}"));
    }
    couch_error(
        &b.put("/notes/secret", json!({"v": "B"})).await,
        404,
        "not_found",
        &format!("{who} PUT into Alice's database name"),
    );
    couch_error(
        &b.delete("/notes").await,
        404,
        "not_found",
        &format!("{who} DELETE /notes"),
    );

    b.create_db("notes").await;
    put_doc(b, "notes", "mine", json!({"v": "B"})).await;
    put_doc(b, "notes", "zz-b", json!({"v": "B"})).await;
    let mine: Vec<String> = vec!["mine".into(), "zz-b".into()];
    let info = ok(b.get("/notes").await, "GET /notes");
    assert_eq!(info["doc_count"], 2, "{who}: {info}");

    // Ids that name Alice's documents in some other encoding.
    let mut crafted: Vec<String> = vec![
        "secret".into(),
        "a/b".into(),
        "a%2Fb".into(),
        "zzz".into(),
        "..".into(),
        "_design/app".into(),
        secret_backing.into(),
        part.into(),
        format!("{part}:"),
        format!("{part};"),
        format!("{part}:_design/app"),
        format!("{part}:_local/ckpt"),
        format!("../{secret_backing}"),
        format!("../../{}/{secret_backing}", gate.database),
        "../secret".into(),
        "./secret".into(),
        "couchgate:db.alice.notes".into(),
    ];
    crafted.extend(
        backing_all
            .iter()
            .filter(|id| !id.contains(":mine"))
            .cloned(),
    );
    crafted.sort();
    crafted.dedup();
    let control = b.get("/notes/never-existed").await;
    couch_error(&control, 404, "not_found", "control");
    // `..` is sent raw below: reqwest would resolve it.
    for id in crafted.iter().filter(|id| *id != "..") {
        let what = format!("{who} GET /notes/{id}");
        let a = b.get(&format!("/notes/{}", enc(id))).await;
        no_leak(&a, &what);
        couch_error(&a, 404, "not_found", &what);
        assert_eq!(
            a.body, control.body,
            "{what}: answers exactly as a missing id"
        );
        let a = b.get(&format!("/notes/{}?rev={secret_rev}", enc(id))).await;
        no_leak(&a, &what);
        couch_error(&a, 404, "not_found", &format!("{what}?rev="));
        let a = b
            .get(&format!("/notes/{}?open_revs=all&revs=true", enc(id)))
            .await;
        no_leak(&a, &format!("{what}?open_revs=all"));
        let a = b
            .get(&format!(
                "/notes/{}?open_revs={}",
                enc(id),
                qj(&json!([secret_rev]))
            ))
            .await;
        no_leak(&a, &format!("{what}?open_revs=[rev]"));
        if a.status.is_success() {
            for r in a.body.as_array().unwrap() {
                assert!(r.get("ok").is_none(), "{what}?open_revs: {r}");
            }
        }
        let a = b.get(&format!("/notes/{}/att.txt", enc(id))).await;
        no_leak(&a, &format!("{what}/att.txt"));
        missing(&a, &format!("{what}/att.txt"));
    }
    let local = b
        .get(&format!("/notes/_local/{}", enc(&format!("{part}:ckpt"))))
        .await;
    no_leak(&local, "_local with Alice's partition");
    couch_error(&local, 404, "not_found", "_local with Alice's partition");
    let local = b.get("/notes/_local/ckpt").await;
    couch_error(&local, 404, "not_found", "_local/ckpt");

    // Bulk endpoints with every crafted id.
    for with_rev in [false, true] {
        let docs: Vec<Value> = crafted
            .iter()
            .map(|id| match with_rev {
                false => json!({ "id": id }),
                true => json!({"id": id, "rev": secret_rev}),
            })
            .collect();
        let a = b
            .post(
                "/notes/_bulk_get?revs=true&attachments=true&latest=true",
                json!({ "docs": docs }),
            )
            .await;
        no_leak(&a, "_bulk_get");
        let got = ok(a, "_bulk_get");
        for r in got["results"].as_array().unwrap() {
            for d in r["docs"].as_array().unwrap() {
                assert!(d.get("ok").is_none(), "{who} _bulk_get: {d}");
            }
        }
    }

    let asked: Map<String, Value> = crafted
        .iter()
        .map(|id| (id.clone(), json!([secret_rev])))
        .collect();
    let a = b.post("/notes/_revs_diff", Value::Object(asked)).await;
    no_leak(&a, "_revs_diff");
    let diff = ok(a, "_revs_diff");
    for id in &crafted {
        assert_eq!(
            diff[id]["missing"],
            json!([secret_rev]),
            "{who} _revs_diff {id}: {diff}"
        );
    }

    for a in [
        b.get(&format!("/notes/_all_docs?keys={}", qj(&json!(crafted))))
            .await,
        b.post(
            "/notes/_all_docs?include_docs=true",
            json!({ "keys": crafted }),
        )
        .await,
    ] {
        no_leak(&a, "_all_docs keys");
        let v = ok(a, "_all_docs keys");
        assert_eq!(v["total_rows"], 2, "{who}: {v}");
        for row in v["rows"].as_array().unwrap() {
            assert!(row.get("value").is_none(), "{who} _all_docs keys: {row}");
        }
    }

    for a in [
        b.get(&format!(
            "/notes/_changes?filter=_doc_ids&doc_ids={}&include_docs=true",
            qj(&json!(crafted))
        ))
        .await,
        b.post(
            "/notes/_changes?filter=_doc_ids&include_docs=true",
            json!({ "doc_ids": crafted }),
        )
        .await,
    ] {
        no_leak(&a, "_changes doc_ids");
        let v = ok(a, "_changes doc_ids");
        assert!(change_ids(&v).is_empty(), "{who}: {v}");
    }

    // Ranges spanning every possible id, in both directions.
    let max = "\u{ffff}";
    let top = "\u{10ffff}";
    let full_ranges = [
        String::new(),
        format!("?startkey={}&endkey={}", qj(&json!("")), qj(&json!(max))),
        format!("?start_key={}&end_key={}", qj(&json!("")), qj(&json!(top))),
        format!(
            "?startkey={}&endkey={}&descending=true",
            qj(&json!(max)),
            qj(&json!(""))
        ),
        "?descending=true".into(),
        format!("?startkey={}", qj(&json!(""))),
        format!("?endkey={}&inclusive_end=true", qj(&json!(top))),
        "?include_docs=true&conflicts=true&limit=100000".into(),
    ];
    for q in &full_ranges {
        let a = b.get(&format!("/notes/_all_docs{q}")).await;
        no_leak(&a, &format!("_all_docs{q}"));
        let v = ok(a, &format!("_all_docs{q}"));
        let mut ids = row_ids(&v);
        ids.sort();
        assert_eq!(ids, mine, "{who} _all_docs{q}: {v}");
        assert_eq!(v["total_rows"], 2, "{who} _all_docs{q}: {v}");
        assert!(
            v["offset"].as_u64().unwrap_or(0) <= 2,
            "{who} _all_docs{q}: {v}"
        );
    }
    let a = b
        .post(
            "/notes/_all_docs",
            json!({"startkey": "", "endkey": max, "include_docs": true}),
        )
        .await;
    no_leak(&a, "POST _all_docs range");
    let mut ids = row_ids(&ok(a, "POST _all_docs range"));
    ids.sort();
    assert_eq!(ids, mine, "{who} POST _all_docs range");
    for key in [secret_backing, part, "couchgate", "couchgate:", ""] {
        for q in [
            format!("?startkey={}", qj(&json!(key))),
            format!("?endkey={}", qj(&json!(key))),
            format!("?startkey={}&descending=true", qj(&json!(key))),
            format!("?endkey={}&descending=true", qj(&json!(key))),
            format!("?key={}", qj(&json!(key))),
            format!(
                "?startkey={}&endkey={}",
                qj(&json!(key)),
                qj(&json!(format!("{key}{max}")))
            ),
        ] {
            let a = b.get(&format!("/notes/_all_docs{q}")).await;
            no_leak(&a, &format!("_all_docs{q}"));
            let v = ok(a, &format!("_all_docs{q}"));
            for id in row_ids(&v) {
                assert!(mine.contains(&id), "{who} _all_docs{q} listed {id}: {v}");
            }
            assert_eq!(v["total_rows"], 2, "{who} _all_docs{q}: {v}");
            assert!(
                v["offset"].as_u64().unwrap_or(0) <= 2,
                "{who} _all_docs{q}: {v}"
            );
        }
    }

    for q in [
        "?since=0",
        "?since=0&style=all_docs&include_docs=true&conflicts=true&attachments=true",
        "?descending=true",
        "?limit=1000",
        "?feed=continuous&limit=2",
        "?feed=longpoll&since=0&timeout=1",
    ] {
        let a = b.get(&format!("/notes/_changes{q}")).await;
        no_leak(&a, &format!("_changes{q}"));
        assert_eq!(a.status, 200, "{who} _changes{q}: {}", a.body);
        let text = String::from_utf8_lossy(&a.bytes).into_owned();
        for id in &crafted {
            if id.len() > 3 {
                assert!(
                    !text.contains(&format!("\"id\":{}", json!(id))),
                    "{who} _changes{q} lists {id}: {text}"
                );
            }
        }
        if a.body.is_object() {
            let ids = change_ids(&a.body);
            assert!(
                ids.iter().all(|id| mine.contains(id)),
                "{who} _changes{q}: {ids:?}"
            );
        }
    }

    // Paths sent byte for byte: `..`, `.`, double encoding, the backing database's name.
    for path in [
        "/notes/..".to_owned(),
        "/notes/../notes/secret".into(),
        "/notes/./secret".into(),
        "/notes/%2E%2E/secret".into(),
        "/notes/%2E%2E%2Fsecret".into(),
        "/notes/mine/../../notes/secret".into(),
        "/notes/mine/..%2F..%2Fsecret/att.txt".into(),
        // An attachment name that climbs out of `b`'s document into Alice's, should anything
        // between couchgate and CouchDB resolve dot segments.
        format!("/notes/mine/../{secret_backing}/att.txt"),
        format!("/notes/mine/..%2F{}%2Fatt.txt", enc(secret_backing)),
        format!(
            "/notes/mine/../../{}/{secret_backing}/att.txt",
            gate.database
        ),
        format!(
            "/notes/mine/%2E%2E/%2E%2E/{}/{secret_backing}/att.txt",
            gate.database
        ),
        "/notes/a%2Fb".into(),
        "/notes/a%252Fb".into(),
        "/notes/a/b".into(),
        "/notes/%5Fdesign/app".into(),
        "/notes/_design%2Fapp".into(),
        "/notes/secret/att.txt".into(),
        "/notes/secret%2Fatt.txt".into(),
        format!("/notes/{}", enc(secret_backing)),
        format!("/notes/{}", secret_backing.replace(':', "%3A")),
        format!("/notes/{secret_backing}"),
        format!("/notes/{}/att.txt", enc(secret_backing)),
        format!("/{}/{}", gate.database, enc(secret_backing)),
        format!("/{}/_all_docs", gate.database),
        format!("/{}/_changes", gate.database),
        format!("/notes/..%2F{}%2F{}", gate.database, enc(secret_backing)),
    ] {
        let (status, bytes) = raw_get(gate, &path, token).await;
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(MARK), "{who} raw GET {path} leaked: {text}");
        assert_eq!(status, 404, "{who} raw GET {path}: {text}");
    }

    // Writes aimed at Alice's documents answer as writes to an id nobody has, and change
    // nothing of hers.
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PUT,
            "{id}".into(),
            Some(json!({"_rev": secret_rev, "v": "B"})),
        ),
        (
            Method::PUT,
            format!("{{id}}?rev={secret_rev}"),
            Some(json!({"v": "B"})),
        ),
        (Method::DELETE, format!("{{id}}?rev={secret_rev}"), None),
        (
            Method::DELETE,
            format!("{{id}}/att.txt?rev={secret_rev}"),
            None,
        ),
    ];
    for (method, tmpl, body) in &attempts {
        let send = |id: &str| {
            let path = format!("/notes/{}", tmpl.replace("{id}", &enc(id)));
            let mut r = b.request(method.clone(), &path);
            if let Some(body) = body {
                r = r.json(body);
            }
            b.send(r)
        };
        // CouchDB takes a `_rev` given for a document it does not have as the parent of a new
        // one (PouchDB Server refuses it): either way the attempt must answer exactly as for
        // an id nobody has, in the caller's own namespace, but for the id itself.
        let without_id = |mut v: Value| {
            if let Some(m) = v.as_object_mut() {
                m.remove("id");
            }
            v
        };
        let control = send(&format!("never-existed-{}", enc(who))).await;
        for id in ["secret", secret_backing] {
            let a = send(id).await;
            no_leak(&a, &format!("{method} {tmpl} {id}"));
            assert_eq!(
                (a.status, without_id(a.body.clone())),
                (control.status, without_id(control.body.clone())),
                "{who} {method} {tmpl} {id}: answers as for an id nobody has"
            );
        }
    }
    let put_att = |id: &str| {
        b.send(
            b.request(
                Method::PUT,
                &format!("/notes/{}/att.txt?rev={secret_rev}", enc(id)),
            )
            .header("content-type", "text/plain")
            .body("B"),
        )
    };
    let control = put_att("never-existed").await;
    let a = put_att("secret").await;
    no_leak(&a, "attachment PUT with Alice's rev");
    assert_eq!(
        a.status, control.status,
        "{who} attachment PUT with Alice's rev answers as for an id nobody has: {} vs {}",
        a.body, control.body
    );
    // PouchDB Server creates a missing document for an attachment whatever `rev` says (CouchDB
    // answers 409); then it is `b`'s own document, removed again to keep the counts below.
    for (id, answer) in [("secret", &a), ("never-existed", &control)] {
        if answer.status.is_success() {
            assert_eq!(answer.body["id"], id, "{who}: {}", answer.body);
            let rev = answer.body["rev"].as_str().unwrap();
            ok(
                b.delete(&format!("/notes/{id}?rev={rev}")).await,
                "DELETE own",
            );
        }
    }

    let row = |v: &Value| v.as_array().unwrap()[0].clone();
    let control = ok(
        b.post(
            "/notes/_bulk_docs",
            // The id the attempts above also wrote to (so it has the same history as
            // the caller's own `secret`, which CouchDB may have created from them).
            json!({"docs": [{"_id": format!("never-existed-{}", enc(who)), "_rev": secret_rev, "_deleted": true}]}),
        )
        .await,
        "bulk delete control",
    );
    let a = ok(
        b.post(
            "/notes/_bulk_docs",
            json!({"docs": [{"_id": "secret", "_rev": secret_rev, "_deleted": true}]}),
        )
        .await,
        "bulk delete",
    );
    assert!(row(&a).get("error").is_some(), "{who}: {a}");
    assert_eq!(
        row(&a)["error"],
        row(&control)["error"],
        "{who}: {a} vs {control}"
    );

    // Writes that succeed land in `b`'s own namespace only.
    let smuggled = ok(
        b.post(
            "/notes/_bulk_docs",
            json!({"docs": [
                {"_id": "_local/ckpt", "v": "B"},
                {"_id": format!("_local/{part}:ckpt"), "v": "B"},
                {"_id": format!("_local/../ckpt"), "v": "B"},
                {"_id": secret_backing, "v": "B"},
                {"_id": "_design/app", "v": "B"},
                {"_id": "secret", "v": "B"},
                {"_id": "x", "id": secret_backing, "v": "B"},
            ]}),
        )
        .await,
        "_bulk_docs smuggling",
    );
    for r in smuggled.as_array().unwrap() {
        // On CouchDB the attempts above may have created the caller's own `secret` (from the
        // given `_rev`), which these writes without a revision then conflict with.
        let own_earlier = [json!("secret"), json!(secret_backing)].contains(&r["id"]);
        assert!(
            r["ok"] == true || (own_earlier && r["error"] == "conflict"),
            "{who}: {smuggled}"
        );
    }
    let ids: Vec<&str> = smuggled
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "_local/ckpt",
            format!("_local/{part}:ckpt").as_str(),
            "_local/../ckpt",
            secret_backing,
            "_design/app",
            "secret",
            "x"
        ],
        "{who}: result ids are the client's ids"
    );
    ok(
        b.post(
            "/notes/_bulk_docs",
            json!({"new_edits": false, "docs": [
                {"_id": "secret", "_rev": secret_rev, "v": "B"},
                {"_id": "zzz", "_rev": secret_rev, "v": "B"},
            ]}),
        )
        .await,
        "_bulk_docs new_edits=false",
    );
    let local_rev = ok(b.get("/notes/_local/ckpt").await, "own _local")["_rev"].clone();
    put_doc(
        b,
        "notes",
        "_local/ckpt",
        json!({"v": "B2", "_rev": local_rev}),
    )
    .await;
    let got = ok(
        b.get(&format!("/notes/{}", enc(secret_backing))).await,
        "own doc",
    );
    assert_eq!(got["_id"], secret_backing);
    assert_eq!(got["v"], "B");
    let got = ok(b.get("/notes/_local/ckpt").await, "own _local");
    assert_eq!(got["v"], "B2");
    let got = ok(b.get("/notes/secret?conflicts=true").await, "own secret");
    assert_eq!(got["v"], "B", "{who}: {got}");
    let got = ok(
        b.get(&format!("/notes/zzz?rev={secret_rev}")).await,
        "own zzz",
    );
    assert_eq!(got["v"], "B", "{who}: {got}");
    let info = ok(b.get("/notes").await, "GET /notes");
    let all = ok(b.get("/notes/_all_docs").await, "_all_docs");
    assert_eq!(info["doc_count"], all["total_rows"], "{who}");
    assert_eq!(
        all["total_rows"].as_u64().unwrap(),
        row_ids(&all).len() as u64,
        "{who}: {all}"
    );
    // mine, zz-b, secret_backing, _design/app, secret, x, zzz; and on CouchDB the control
    // document the write attempts created (CouchDB takes a given `_rev` as a parent).
    let mut own: Vec<String> = row_ids(&all)
        .into_iter()
        .filter(|id| !id.starts_with("never-existed"))
        .collect();
    own.sort();
    let mut want = vec![
        "mine".to_owned(),
        "zz-b".into(),
        secret_backing.to_owned(),
        "_design/app".into(),
        "secret".into(),
        "x".into(),
        "zzz".into(),
    ];
    want.sort();
    assert_eq!(own, want, "{who}: {all}");
}

/// Databases are per user: another user's database name is free, and deleting one's own
/// database leaves everybody else's alone.
#[tokio::test]
async fn databases_are_per_user() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    let bob = gate.client("bob");
    for db in ["diary", "a/b", "x$(y)+z-1_"] {
        alice.create_db(&enc(db)).await;
        put_doc(&alice, &enc(db), "entry", json!({"v": MARK})).await;
        let path = format!("/{}", enc(db));
        for sub in [
            "",
            "/_all_docs",
            "/_changes",
            "/entry",
            "/entry/a.txt",
            "/_local/x",
            "/_design/d",
        ] {
            let a = bob.get(&format!("{path}{sub}")).await;
            no_leak(&a, &format!("bob GET {path}{sub}"));
            couch_error(&a, 404, "not_found", &format!("bob GET {path}{sub}"));
            let control = bob.get(&format!("/never-made{sub}")).await;
            assert_eq!(a.body, control.body, "bob GET {path}{sub}");
            let head = bob
                .send(bob.request(Method::HEAD, &format!("{path}{sub}")))
                .await;
            assert_eq!(head.status, 404, "bob HEAD {path}{sub}");
        }
        for (method, sub, body) in [
            (Method::POST, "", json!({"_id": "new"})),
            (Method::PUT, "/entry", json!({"v": "bob"})),
            (
                Method::POST,
                "/_bulk_docs",
                json!({"docs": [{"_id": "entry"}]}),
            ),
            (
                Method::POST,
                "/_bulk_get",
                json!({"docs": [{"id": "entry"}]}),
            ),
            (Method::POST, "/_revs_diff", json!({"entry": ["1-a"]})),
            (Method::POST, "/_all_docs", json!({"keys": ["entry"]})),
            (Method::POST, "/_changes", json!({})),
            (Method::PUT, "/_local/x", json!({})),
        ] {
            let a = bob
                .send(
                    bob.request(method.clone(), &format!("{path}{sub}"))
                        .json(&body),
                )
                .await;
            no_leak(&a, &format!("bob {method} {path}{sub}"));
            couch_error(&a, 404, "not_found", &format!("bob {method} {path}{sub}"));
        }
        couch_error(&bob.delete(&path).await, 404, "not_found", "bob DELETE");
        // Alice's is still there.
        assert_eq!(ok(alice.get(&path).await, "alice GET db")["doc_count"], 1);

        // Bob makes his own, empty, and deleting it leaves Alice's alone.
        bob.create_db(&enc(db)).await;
        let info = ok(bob.get(&path).await, "bob GET db");
        assert_eq!(info["doc_count"], 0, "{info}");
        let all = ok(bob.get(&format!("{path}/_all_docs")).await, "bob _all_docs");
        assert_eq!(all["total_rows"], 0, "{all}");
        assert!(row_ids(&all).is_empty());
        let ch = ok(
            bob.get(&format!("{path}/_changes?since=0")).await,
            "bob _changes",
        );
        assert!(change_ids(&ch).is_empty(), "{ch}");
        put_doc(&bob, &enc(db), "bobs", json!({"v": "B"})).await;
        ok(bob.delete(&path).await, "bob DELETE own");
        couch_error(&bob.get(&path).await, 404, "not_found", "bob after delete");
        let info = ok(alice.get(&path).await, "alice GET db after bob's delete");
        assert_eq!(info["doc_count"], 1, "{info}");
        assert_eq!(
            ok(alice.get(&format!("{path}/entry")).await, "entry")["v"],
            MARK
        );
    }
}

/// A live `_changes` feed of one user is never answered with, nor woken by, another's write.
#[tokio::test]
async fn live_changes_never_carry_another_users_writes() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    let bob = gate.client("bob");
    alice.create_db("notes").await;
    bob.create_db("notes").await;
    put_doc(&bob, "notes", "early", json!({"v": "B"})).await;

    // since=now, woken by Alice's writes, answered with Bob's own write only.
    let resp = bob
        .request(
            Method::GET,
            "/notes/_changes?feed=longpoll&since=now&timeout=30000",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for i in 0..3 {
        put_doc(&alice, "notes", &format!("a-{i}"), json!({"v": MARK})).await;
    }
    put_doc(&bob, "notes", "b-1", json!({"v": "B"})).await;
    let text = resp.text().await.unwrap();
    // Ids are matched with their JSON key: sealed sequences may contain any id-like text.
    assert!(
        !text.contains(MARK) && !text.contains("\"id\":\"a-"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(change_ids(&v), BTreeSet::from(["b-1".to_owned()]), "{v}");

    // since=<token>: the same with a sequence from a normal feed.
    let last = ok(bob.get("/notes/_changes").await, "_changes")["last_seq"].clone();
    let resp = bob
        .request(
            Method::GET,
            &format!(
                "/notes/_changes?feed=longpoll&since={}&timeout=30000&include_docs=true",
                enc(last.as_str().unwrap())
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    put_doc(&alice, "notes", "a-late", json!({"v": MARK})).await;
    put_doc(&bob, "notes", "b-2", json!({"v": "B"})).await;
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(MARK) && !text.contains("\"id\":\"a-late"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(change_ids(&v), BTreeSet::from(["b-2".to_owned()]), "{v}");

    // Continuous and eventsource feeds carry none of Alice's changes either.
    for feed in ["continuous", "eventsource"] {
        let resp = bob
            .request(
                Method::GET,
                &format!("/notes/_changes?feed={feed}&since=now&limit=1&include_docs=true"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        put_doc(&alice, "notes", &format!("a-{feed}"), json!({"v": MARK})).await;
        put_doc(&bob, "notes", &format!("b-{feed}"), json!({"v": "B"})).await;
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains(MARK) && !text.contains("\"id\":\"a-"),
            "{feed}: {text}"
        );
        assert!(text.contains(&format!("b-{feed}")), "{feed}: {text}");
    }

    // After all this Bob's normal feed holds exactly his own documents.
    let all = ok(bob.get("/notes/_changes?since=0").await, "_changes");
    let want: BTreeSet<String> = ["early", "b-1", "b-2", "b-continuous", "b-eventsource"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(change_ids(&all), want, "{all}");
}

/// A longpoll that only another user's writes could wake answers, at its `timeout`, a complete
/// and empty `{"results":[],"last_seq":...}`, as CouchDB does.
#[tokio::test]
async fn longpoll_woken_only_by_another_user_times_out_empty() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    let bob = gate.client("bob");
    alice.create_db("notes").await;
    bob.create_db("notes").await;
    put_doc(&bob, "notes", "early", json!({"v": "B"})).await;

    // Only Alice writes: Bob's longpoll is not answered early, and answers nothing at timeout.
    let started = Instant::now();
    let resp = bob
        .request(
            Method::GET,
            "/notes/_changes?feed=longpoll&since=now&timeout=1500",
        )
        .send()
        .await
        .unwrap();
    put_doc(&alice, "notes", "a-quiet", json!({"v": MARK})).await;
    let text = tokio::time::timeout(Duration::from_secs(20), resp.text())
        .await
        .expect("a longpoll with timeout=1500 answers within 20 s")
        .unwrap();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("longpoll answer is not complete JSON ({e}): {text:?}"));
    assert!(change_ids(&v).is_empty(), "{v}");
    assert!(!text.contains(MARK));
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "a longpoll woken by another user's write must keep waiting (answered after {:?})",
        started.elapsed()
    );

    assert!(
        started.elapsed() < Duration::from_secs(10),
        "timeout=1500 honoured (answered after {:?})",
        started.elapsed()
    );
    assert!(v["last_seq"].is_string(), "{v}");
}

/// The backing ids (normal and `_local`) of Alice's `notes` documents, read from the backend.
async fn alice_backing(gate: &Gate, part: &str) -> Vec<String> {
    let q = format!(
        "/_all_docs?startkey={}&endkey={}",
        qj(&json!(format!("{part}:"))),
        qj(&json!(format!("{part};")))
    );
    row_ids(&ok(gate.backing().get(&q).await, "backing _all_docs"))
}

/// Polls until `done` holds, failing after `secs`.
async fn eventually<F, Fut>(secs: u64, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match done().await {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("{what}: still {e} after {secs} s"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Writes Alice's `notes` with documents of every kind; returns (partition, last_seq, revs).
async fn fill_notes(gate: &Gate, alice: &Client) -> (String, Value, Vec<(String, String)>) {
    alice.create_db("notes").await;
    let mut revs = vec![];
    for id in ["d1", "d2", "_design/app", "z~"] {
        revs.push((
            id.to_owned(),
            put_doc(alice, "notes", id, json!({"v": MARK})).await,
        ));
    }
    let r = put_attachment(alice, "notes", "d1", "att.txt", &revs[0].1, MARK).await;
    revs[0].1 = r;
    let gone = put_doc(alice, "notes", "gone", json!({"v": MARK})).await;
    ok(
        alice.delete(&format!("/notes/gone?rev={gone}")).await,
        "DELETE gone",
    );
    put_doc(alice, "notes", "_local/ckpt", json!({"v": MARK})).await;
    // A conflicted document: two leaves.
    ok(
        alice
            .post(
                "/notes/_bulk_docs",
                json!({"new_edits": false, "docs": [
                    {"_id": "conflicted", "_rev": "1-aaaa", "v": MARK},
                    {"_id": "conflicted", "_rev": "1-bbbb", "v": MARK},
                ]}),
            )
            .await,
        "conflicts",
    );
    let got = ok(
        alice.get("/notes/conflicted?conflicts=true").await,
        "conflicted",
    );
    assert_eq!(got["_conflicts"].as_array().map(Vec::len), Some(1), "{got}");
    let last = ok(alice.get("/notes/_changes").await, "_changes")["last_seq"].clone();
    let part = backing_id_of(gate, "d2")
        .await
        .strip_suffix(":d2")
        .unwrap()
        .to_owned();
    (part, last, revs)
}

/// `DELETE /db` then `PUT /db`: the new database is empty at once, nothing of the old one
/// resurfaces through any endpoint, and the old documents leave the backing database.
#[tokio::test]
async fn deleted_database_is_gone_and_its_documents_leave_the_backend() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    let (part, old_last, revs) = fill_notes(&gate, &alice).await;
    let old_ids = alice_backing(&gate, &part).await;
    assert_eq!(old_ids.len(), 5, "{old_ids:?}");

    let a = alice.delete("/notes").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"ok": true}));
    for p in ["", "/d1", "/_all_docs", "/_changes", "/_local/ckpt"] {
        couch_error(&alice.get(&format!("/notes{p}")).await, 404, "not_found", p);
    }
    couch_error(
        &alice.delete("/notes").await,
        404,
        "not_found",
        "second DELETE",
    );

    alice.create_db("notes").await;
    let info = ok(alice.get("/notes").await, "GET /notes");
    assert_eq!(info["doc_count"], 0, "{info}");
    let all = ok(
        alice.get("/notes/_all_docs?include_docs=true").await,
        "_all_docs",
    );
    assert_eq!(all["total_rows"], 0, "{all}");
    assert!(row_ids(&all).is_empty(), "{all}");
    for q in [
        "?since=0".to_owned(),
        "?since=0&style=all_docs&include_docs=true".into(),
        format!("?since={}", enc(old_last.as_str().unwrap())),
        "?descending=true".into(),
    ] {
        let a = alice.get(&format!("/notes/_changes{q}")).await;
        no_leak(&a, &format!("_changes{q}"));
        let v = ok(a, &format!("_changes{q}"));
        assert!(change_ids(&v).is_empty(), "_changes{q}: {v}");
    }
    for (id, rev) in &revs {
        couch_error(
            &alice.get(&format!("/notes/{}", enc(id))).await,
            404,
            "not_found",
            id,
        );
        couch_error(
            &alice.get(&format!("/notes/{}?rev={rev}", enc(id))).await,
            404,
            "not_found",
            id,
        );
    }
    missing(&alice.get("/notes/d1/att.txt").await, "att");
    couch_error(
        &alice.get("/notes/_local/ckpt").await,
        404,
        "not_found",
        "local",
    );
    let asked: Map<String, Value> = revs
        .iter()
        .map(|(id, rev)| (id.clone(), json!([rev])))
        .collect();
    let diff = ok(
        alice.post("/notes/_revs_diff", Value::Object(asked)).await,
        "diff",
    );
    for (id, rev) in &revs {
        assert_eq!(diff[id]["missing"], json!([rev]), "{diff}");
    }
    let got = alice
        .post(
            "/notes/_bulk_get",
            json!({"docs": revs.iter().map(|(id, _)| json!({"id": id})).collect::<Vec<_>>()}),
        )
        .await;
    no_leak(&got, "_bulk_get after re-creation");
    for r in ok(got, "_bulk_get")["results"].as_array().unwrap() {
        for d in r["docs"].as_array().unwrap() {
            assert!(d.get("ok").is_none(), "an old document resurfaced: {d}");
        }
    }

    // The same id written again starts a fresh history.
    let rev = put_doc(&alice, "notes", "d1", json!({"v": "new"})).await;
    assert!(rev.starts_with("1-"), "{rev}");
    let ch = ok(alice.get("/notes/_changes?since=0").await, "_changes");
    assert_eq!(change_ids(&ch), BTreeSet::from(["d1".to_owned()]), "{ch}");
    let all = ok(alice.get("/notes/_all_docs").await, "_all_docs");
    assert_eq!(row_ids(&all), ["d1"]);
    assert_eq!(all["total_rows"], 1);

    // The old incarnation's documents leave the backing database.
    let (g, p) = (&gate, part.as_str());
    eventually(60, "old documents in the backing database", || async move {
        let left = alice_backing(g, p).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    for id in &old_ids {
        let a = gate.backing().get(&format!("/{}", enc(id))).await;
        assert_eq!(a.status, 404, "backing {id}: {}", a.body);
        let a = gate
            .backing()
            .get(&format!("/{}?open_revs=all", enc(id)))
            .await;
        if a.status.is_success() {
            for leaf in a.body.as_array().unwrap() {
                assert!(
                    leaf["ok"].is_null() || leaf["ok"]["_deleted"] == true,
                    "backing {id} still has a live leaf: {leaf}"
                );
            }
        }
    }
    let new_backing = backing_id_of(&gate, "d1").await;
    assert_ne!(new_backing.strip_suffix(":d1").unwrap(), part);
}

/// `DELETE /db` removes the database's `_local` documents (replication checkpoints) from the
/// backing database too, as CouchDB's own database deletion does.
#[tokio::test]
async fn deleted_database_local_documents_leave_the_backend() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    let (part, _, _) = fill_notes(&gate, &alice).await;
    let local_path = format!("/_local/{}", enc(&format!("{part}:ckpt")));
    let a = gate.backing().get(&local_path).await;
    assert_eq!(
        a.body["v"], MARK,
        "the _local document is in the backend: {}",
        a.body
    );

    ok(alice.delete("/notes").await, "DELETE /notes");
    alice.create_db("notes").await;
    couch_error(
        &alice.get("/notes/_local/ckpt").await,
        404,
        "not_found",
        "new _local",
    );
    let (g, lp) = (&gate, local_path.as_str());
    eventually(
        20,
        "the old _local document in the backing database",
        || async move {
            let a = g.backing().get(lp).await;
            if a.status == 404 {
                Ok(())
            } else {
                Err(format!("{} {}", a.status, a.body))
            }
        },
    )
    .await;
}
