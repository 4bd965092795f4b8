//! Every endpoint couchgate serves, through couchgate, against a real backend.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{Backend, Client, Gate};

async fn setup() -> (Backend, Gate, Client) {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &["--cors-origins", "http://app.example"]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    (backend, gate, alice)
}

#[tokio::test]
async fn welcome_up_and_session() {
    let (_b, gate, alice) = setup().await;
    let anon = gate.anonymous();
    let w = anon.get("/").await;
    assert_eq!(w.body["couchdb"], "Welcome");
    assert!(w.headers["server"]
        .to_str()
        .unwrap()
        .starts_with("couchgate/"));
    assert_eq!(anon.get("/_up").await.ok()["status"], "ok");
    let s = alice.get("/_session").await.ok();
    assert_eq!(s["ok"], true);
    assert_eq!(s["userCtx"]["name"], "alice");
    assert_eq!(s["info"]["authenticated"], "jwt");
    // Without credentials CouchDB says who is asking: nobody; bad credentials are refused.
    let nobody = anon.get("/_session").await.ok();
    assert_eq!(nobody["userCtx"], json!({"name": null, "roles": []}));
    support::Client::new(&gate.url, Some("not-a-token".into()))
        .get("/_session")
        .await
        .error(401, "unauthorized");
    let uuids = alice.get("/_uuids?count=3").await.ok();
    assert_eq!(uuids["uuids"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn database_life_cycle() {
    let (_b, _gate, alice) = setup().await;
    alice.get("/other").await.error(404, "not_found");
    alice
        .put("/notes", Value::Null)
        .await
        .error(412, "file_exists");
    alice.put("/notes/a", json!({"v": 1})).await.ok();
    alice.put("/notes/b", json!({"v": 2})).await.ok();
    let info = alice.get("/notes").await.ok();
    assert_eq!(info["db_name"], "notes");
    assert_eq!(info["doc_count"], 2);
    assert!(info["update_seq"].is_string());
    let head = alice.send(alice.request(Method::HEAD, "/notes")).await;
    assert_eq!(head.status, 200);
    assert!(head.bytes.is_empty());

    let before = alice.get("/notes/_changes").await.ok()["last_seq"].clone();
    assert_eq!(alice.delete("/notes").await.ok()["ok"], true);
    alice.get("/notes").await.error(404, "not_found");
    alice.get("/notes/a").await.error(404, "not_found");
    alice.create_db("notes").await;
    assert_eq!(alice.get("/notes").await.ok()["doc_count"], 0);
    let changes = alice.get("/notes/_changes?since=0").await.ok();
    assert_eq!(changes["results"], json!([]));
    let all = alice.get("/notes/_all_docs").await.ok();
    assert_eq!(all["rows"], json!([]));
    assert_eq!(all["total_rows"], 0);
    // An old checkpoint sequence stays usable and still shows nothing of the old incarnation.
    let since = alice
        .get(&format!(
            "/notes/_changes?since={}",
            before.as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(since["results"], json!([]));
    alice.get("/notes/a").await.error(404, "not_found");
}

#[tokio::test]
async fn documents() {
    let (_b, gate, alice) = setup().await;
    let w = alice
        .put("/notes/n1", json!({"title": "x", "id": "body field"}))
        .await;
    assert_eq!(w.status, 201);
    assert!(w.headers.contains_key("etag"));
    let rev1 = w.body["rev"].as_str().unwrap().to_owned();
    assert_eq!(w.body["id"], "n1");
    let d = alice.get("/notes/n1").await.ok();
    assert_eq!(d["_id"], "n1");
    assert_eq!(
        d["id"], "body field",
        "a body field named id is never rewritten"
    );
    alice
        .put("/notes/n1", json!({"title": "y"}))
        .await
        .error(409, "conflict");
    let rev2 = alice
        .put("/notes/n1", json!({"title": "y", "_rev": rev1}))
        .await
        .ok()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let old = alice.get(&format!("/notes/n1?rev={rev1}")).await.ok();
    assert_eq!(old["title"], "x");
    let revs = alice.get("/notes/n1?revs=true&revs_info=true").await.ok();
    assert_eq!(revs["_revisions"]["start"], 2);
    let open = alice
        .get(&format!(
            "/notes/n1?open_revs=[\"{rev1}\",\"{rev2}\",\"9-zz\"]&revs=true"
        ))
        .await
        .ok();
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 3);
    assert_eq!(open[0]["ok"]["_id"], "n1");
    assert_eq!(open[2]["missing"], "9-zz");
    let all = alice.get("/notes/n1?open_revs=all").await.ok();
    assert_eq!(all[0]["ok"]["_rev"], rev2);

    // Ids with slashes, colons, percent signs and unicode round-trip.
    for id in ["a/b", "a:b", "100%", "ü ñ", "a%2Fb", "._."] {
        let path = format!("/notes/{}", support::enc(id));
        alice.put(&path, json!({"k": id})).await.ok();
        let d = alice.get(&path).await.ok();
        assert_eq!(d["_id"], id);
        assert_eq!(d["k"], id);
    }
    // POST /db generates or takes the id.
    let p = alice.post("/notes", json!({"x": 1})).await.ok();
    assert_eq!(p["id"].as_str().unwrap().len(), 32);
    let p = alice.post("/notes", json!({"_id": "chosen"})).await.ok();
    assert_eq!(p["id"], "chosen");
    // DELETE with rev, and with If-Match.
    let del = alice.delete(&format!("/notes/n1?rev={rev2}")).await.ok();
    assert_eq!(del["id"], "n1");
    alice.get("/notes/n1").await.error(404, "not_found");
    let rev = alice.get("/notes/chosen").await.ok()["_rev"].clone();
    let r = alice
        .send(
            alice
                .request(Method::DELETE, "/notes/chosen")
                .header("If-Match", rev.as_str().unwrap()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Every backing id lies in alice's namespace.
    let backing = gate.backing().get("/_all_docs").await.ok();
    for row in backing["rows"].as_array().unwrap() {
        let id = row["id"].as_str().unwrap();
        assert!(
            id.starts_with("alice.notes.") || id.starts_with("couchgate:"),
            "{id}"
        );
    }
}

#[tokio::test]
async fn design_and_local_documents_are_data() {
    let (_b, gate, alice) = setup().await;
    let ddoc =
        json!({"views": {"v": {"map": "function(doc){emit(doc._id)}"}}, "language": "javascript"});
    alice.put("/notes/_design/app", ddoc.clone()).await.ok();
    let back = alice.get("/notes/_design/app").await.ok();
    assert_eq!(back["views"], ddoc["views"]);
    assert_eq!(back["_id"], "_design/app");
    assert_eq!(
        alice.get("/notes/_design%2Fapp").await.ok()["_id"],
        "_design/app"
    );
    alice
        .get("/notes/_design/app/_view/v")
        .await
        .error(501, "not_implemented");
    // Stored as plain data, never a backend design document.
    let b = gate
        .backing()
        .get("/_all_docs?startkey=\"_design/\"&endkey=\"_design0\"")
        .await
        .ok();
    assert_eq!(b["rows"], json!([]));

    let l = alice
        .put("/notes/_local/ckpt", json!({"last_seq": 5}))
        .await
        .ok();
    assert_eq!(l["id"], "_local/ckpt");
    let rev = l["rev"].as_str().unwrap().to_owned();
    let got = alice.get("/notes/_local/ckpt").await.ok();
    assert_eq!(got["_id"], "_local/ckpt");
    assert_eq!(got["last_seq"], 5);
    alice
        .put("/notes/_local/ckpt", json!({"last_seq": 6, "_rev": rev}))
        .await
        .ok();
    assert_eq!(alice.get("/notes/_local/ckpt").await.ok()["last_seq"], 6);
    let all = alice.get("/notes/_all_docs").await.ok();
    let ids: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["_design/app"], "_local documents are not listed");
    let rev = alice.get("/notes/_local/ckpt").await.ok()["_rev"].clone();
    alice
        .delete(&format!("/notes/_local/ckpt?rev={}", rev.as_str().unwrap()))
        .await
        .ok();
    alice
        .get("/notes/_local/ckpt")
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn all_docs_ranges_and_keys() {
    let (_b, gate, alice) = setup().await;
    // Another user's data interleaves in the backing database and must never count.
    let bob = gate.client("bob");
    bob.create_db("notes").await;
    bob.post(
        "/notes/_bulk_docs",
        json!({"docs": [{"_id": "a"}, {"_id": "m"}, {"_id": "zzz"}]}),
    )
    .await
    .ok();
    let ids = ["a", "b", "c", "d", "z", "zz", "~", "é"];
    let docs: Vec<Value> = ids.iter().map(|i| json!({"_id": i, "n": i})).collect();
    alice
        .post("/notes/_bulk_docs", json!({ "docs": docs }))
        .await
        .ok();

    let rows = |v: &Value| -> Vec<String> {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap().to_owned())
            .collect()
    };
    // On a CouchDB cluster a read right after a write may come from a shard copy that does
    // not have it yet (2 in 30 straight at a 3-node CouchDB 3.5): asked again until whole.
    let mut all = alice.get("/notes/_all_docs").await.ok();
    for _ in 0..50 {
        if all["rows"].as_array().map_or(0, Vec::len) >= ids.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        all = alice.get("/notes/_all_docs").await.ok();
    }
    assert_eq!(all["total_rows"], 8);
    assert_eq!(all["offset"], 0);
    assert_eq!(
        rows(&all),
        ["a", "b", "c", "d", "z", "zz", "~", "é"],
        "ids after z are listed"
    );
    let r = alice
        .get("/notes/_all_docs?startkey=\"b\"&endkey=\"d\"&inclusive_end=false")
        .await
        .ok();
    assert_eq!(rows(&r), ["b", "c"]);
    assert_eq!(r["offset"], 1);
    let r = alice
        .get("/notes/_all_docs?start_key=\"c\"&limit=2&skip=1")
        .await
        .ok();
    assert_eq!(rows(&r), ["d", "z"]);
    let r = alice
        .get("/notes/_all_docs?descending=true&limit=3")
        .await
        .ok();
    assert_eq!(rows(&r), ["é", "~", "zz"]);
    let r = alice
        .get("/notes/_all_docs?descending=true&startkey=\"c\"")
        .await
        .ok();
    assert_eq!(rows(&r), ["c", "b", "a"]);
    let r = alice
        .get("/notes/_all_docs?key=\"z\"&include_docs=true")
        .await
        .ok();
    assert_eq!(r["rows"][0]["doc"]["_id"], "z");
    let r = alice
        .post(
            "/notes/_all_docs?include_docs=true",
            json!({"keys": ["zz", "nope", "a", "_bad"]}),
        )
        .await
        .ok();
    let r = r["rows"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0]["id"], "zz");
    assert_eq!(r[0]["doc"]["n"], "zz");
    assert_eq!(r[1]["key"], "nope");
    assert_eq!(r[1]["error"], "not_found");
    assert_eq!(r[2]["key"], "a");
    assert_eq!(r[3]["error"], "not_found");
    let r = alice
        .get("/notes/_all_docs?update_seq=true&limit=0")
        .await
        .ok();
    assert!(r["update_seq"].is_string());
    assert_eq!(r["rows"], json!([]));
    alice
        .get("/notes/_all_docs?limit=x")
        .await
        .error(400, "query_parse_error");
}

#[tokio::test]
async fn all_docs_streams_long_answers_in_pages() {
    let (_b, _gate, alice) = setup().await;
    let docs: Vec<Value> = (0..2500)
        .map(|i| json!({"_id": format!("d{i:05}")}))
        .collect();
    alice
        .post("/notes/_bulk_docs", json!({ "docs": docs }))
        .await
        .ok();
    let all = alice.get("/notes/_all_docs").await;
    assert!(
        all.headers.get("content-length").is_none(),
        "streamed, not buffered"
    );
    let all = all.ok();
    let rows = all["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2500);
    assert_eq!(all["total_rows"], 2500);
    assert!(rows
        .windows(2)
        .all(|w| w[0]["id"].as_str() < w[1]["id"].as_str()));
    let some = alice.get("/notes/_all_docs?skip=999&limit=1502").await.ok();
    let rows = some["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1501);
    assert_eq!(rows[0]["id"], "d00999");
}

#[tokio::test]
async fn bulk_docs_keeps_conflicts_like_couchdb() {
    let (_b, _gate, alice) = setup().await;
    let r = alice
        .post("/notes/_bulk_docs", json!({"docs": [{"_id": "c", "v": 0}]}))
        .await
        .ok();
    let rev1 = r[0]["rev"].as_str().unwrap().to_owned();
    let hash1 = rev1.split_once('-').unwrap().1.to_owned();
    // Two branches from a replicator, new_edits=false.
    let branch = |h: &str, v: i32| {
        json!({"_id": "c", "_rev": format!("2-{h}"), "v": v,
               "_revisions": {"start": 2, "ids": [h, hash1]}})
    };
    let r = alice
        .post(
            "/notes/_bulk_docs",
            json!({"new_edits": false, "docs": [branch("aaaa", 1), branch("bbbb", 2)]}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body, json!([]), "new_edits=false reports only failures");
    let d = alice.get("/notes/c?conflicts=true").await.ok();
    assert_eq!(d["_rev"], "2-bbbb");
    assert_eq!(d["_conflicts"], json!(["2-aaaa"]));
    let diff = alice
        .post(
            "/notes/_revs_diff",
            json!({"c": ["2-aaaa", "2-cccc"], "new": ["1-x"]}),
        )
        .await
        .ok();
    assert_eq!(diff["c"]["missing"], json!(["2-cccc"]));
    assert_eq!(diff["new"]["missing"], json!(["1-x"]));

    let got = alice
        .post(
            "/notes/_bulk_get?revs=true&latest=true",
            json!({"docs": [{"id": "c", "rev": "2-aaaa"}, {"id": "c", "rev": "2-bbbb"}, {"id": "_x"}]}),
        )
        .await
        .ok();
    let results = got["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["id"], "c");
    assert_eq!(results[0]["docs"][0]["ok"]["_id"], "c");
    assert_eq!(results[0]["docs"][0]["ok"]["v"], 1);
    assert_eq!(results[1]["docs"][0]["ok"]["_revisions"]["start"], 2);
    assert_eq!(results[2]["docs"][0]["error"]["error"], "illegal_docid");
}

#[tokio::test]
async fn attachments_stream_both_ways() {
    let (_b, _gate, alice) = setup().await;
    let rev = alice.put("/notes/f", json!({})).await.ok()["rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let put = alice
        .send(
            alice
                .request(Method::PUT, &format!("/notes/f/dir%2Fbig.bin?rev={rev}"))
                .header("Content-Type", "application/octet-stream")
                .body(data.clone()),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(put.body["id"], "f");
    let got = alice.get("/notes/f/dir/big.bin").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["content-type"], "application/octet-stream");
    assert!(got.headers.contains_key("etag"));
    assert_eq!(got.bytes.len(), data.len());
    assert!(got.bytes == data);
    let ranged = alice
        .send(
            alice
                .request(Method::GET, "/notes/f/dir/big.bin")
                .header("Range", "bytes=10-19"),
        )
        .await;
    if ranged.status == 206 {
        assert_eq!(ranged.bytes, &data[10..20]);
    } else {
        assert_eq!(
            ranged.status, 200,
            "a backend without ranges answers the whole body"
        );
    }
    // Stubs are kept across edits; the inline form comes back with attachments=true.
    let doc = alice.get("/notes/f").await.ok();
    assert_eq!(doc["_attachments"]["dir/big.bin"]["stub"], true);
    let mut edited = doc.clone();
    edited["note"] = json!("edited");
    alice.put("/notes/f", edited).await.ok();
    let rev = alice.get("/notes/f").await.ok()["_rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = alice
        .send(
            alice
                .request(Method::PUT, &format!("/notes/f/t.txt?rev={rev}"))
                .header("Content-Type", "text/plain")
                .body("hello"),
        )
        .await
        .ok();
    let inline = alice.get("/notes/f?attachments=true").await.ok();
    assert_eq!(inline["_attachments"]["t.txt"]["data"], "aGVsbG8=");
    let big = inline["_attachments"]["dir/big.bin"]["data"]
        .as_str()
        .unwrap();
    assert_eq!(big.len(), 4_000_000, "3 MB inline as base64");
    let del = alice
        .delete(&format!(
            "/notes/f/t.txt?rev={}",
            text["rev"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(del["id"], "f");
    alice.get("/notes/f/t.txt").await.error(404, "not_found");
    let r = alice
        .send(alice.request(Method::PUT, "/notes/f/x.txt").body("no type"))
        .await;
    r.error(415, "bad_content_type");
}

#[tokio::test]
async fn changes_feeds() {
    let (_b, gate, alice) = setup().await;
    let bob = gate.client("bob");
    bob.create_db("notes").await;
    alice.put("/notes/a", json!({"v": 1})).await.ok();
    bob.put("/notes/x", json!({})).await.ok();
    alice.put("/notes/b", json!({"v": 2})).await.ok();
    let rev = alice.get("/notes/a").await.ok()["_rev"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.delete(&format!("/notes/a?rev={rev}")).await.ok();

    let c = alice
        .get("/notes/_changes?style=all_docs&include_docs=true")
        .await
        .ok();
    let results = c["results"].as_array().unwrap();
    let order: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    // One row per document. Across documents the order is the backend feed's: on a sharded
    // CouchDB database (q > 1) the shards interleave with no order between documents in
    // different shards, as in CouchDB's own `_changes` (README, "Order").
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["a", "b"], "{order:?}");
    let row = |id: &str| results.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(row("a")["deleted"], true);
    assert_eq!(row("b")["doc"]["_id"], "b");
    assert!(results.iter().all(|r| r["seq"].is_string()));
    let last = c["last_seq"].as_str().unwrap().to_owned();
    // The last row's seq and last_seq may be different tokens, but both resume after it.
    let after_row = alice
        .get(&format!(
            "/notes/_changes?since={}",
            results[1]["seq"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(after_row["results"], json!([]));

    // limit and resuming from a row's seq: the rest is exactly the rows after it
    let first = alice.get("/notes/_changes?limit=1").await.ok();
    assert_eq!(first["results"].as_array().unwrap().len(), 1);
    assert_eq!(first["results"][0]["id"], order[0]);
    let s = first["last_seq"].as_str().unwrap();
    let rest = alice.get(&format!("/notes/_changes?since={s}")).await.ok();
    assert_eq!(rest["results"].as_array().unwrap().len(), 1);
    assert_eq!(rest["results"][0]["id"], order[1]);
    // last_seq never goes backwards when nothing is new
    let none = alice
        .get(&format!("/notes/_changes?since={last}"))
        .await
        .ok();
    assert_eq!(none["results"], json!([]));
    assert_eq!(none["last_seq"], last);
    // doc_ids, by query and by POST body
    let f = alice
        .get("/notes/_changes?filter=_doc_ids&doc_ids=[\"b\"]")
        .await
        .ok();
    assert_eq!(f["results"].as_array().unwrap().len(), 1);
    let f = alice
        .post(
            "/notes/_changes?filter=_doc_ids",
            json!({"doc_ids": ["a", "x"]}),
        )
        .await
        .ok();
    let ids: Vec<&str> = f["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a"], "bob's x never shows");
    // Mango selectors, over the revisions the feed lists (a's is its deletion)
    let ids_of = |c: &Value| -> Vec<String> {
        c["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (selector, want) in [
        (json!({"v": 2}), vec!["b"]),
        (json!({"v": 1}), vec![]),
        (json!({"_deleted": true}), vec!["a"]),
        (json!({"_id": {"$gt": "a"}}), vec!["b"]),
        (json!({"_id": {"$gt": null}}), vec!["a", "b"]),
    ] {
        let c = alice
            .post(
                "/notes/_changes?filter=_selector&include_docs=true",
                json!({ "selector": selector, "fields": ["v"] }),
            )
            .await
            .ok();
        let mut got = ids_of(&c);
        got.sort();
        assert_eq!(got, want, "{selector}");
        if want == ["b"] {
            assert_eq!(
                c["results"][0]["doc"],
                json!({"v": 2}),
                "fields apply to docs"
            );
        }
    }
    alice
        .post(
            "/notes/_changes?filter=_selector",
            json!({"selector": {"v": {"$in": 2}}}),
        )
        .await
        .error(400, "bad_request");
    alice
        .get("/notes/_changes?filter=_selector")
        .await
        .error(400, "bad_request");
    // since=now
    let now = alice.get("/notes/_changes?since=now").await.ok();
    assert_eq!(now["results"], json!([]));
    assert!(now["last_seq"].is_string());
    // descending
    let d = alice.get("/notes/_changes?descending=true").await.ok();
    assert_eq!(d["results"][0]["id"], order[1]);
}

#[tokio::test]
async fn longpoll_waits_for_the_owner_only() {
    let (_b, gate, alice) = setup().await;
    let bob = gate.client("bob");
    bob.create_db("notes").await;
    let now = alice.get("/notes/_changes?since=now").await.ok()["last_seq"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = {
        let alice = alice.clone();
        let now = now.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = alice
                .get(&format!(
                    "/notes/_changes?feed=longpoll&since={now}&timeout=20000"
                ))
                .await
                .ok();
            (r, t.elapsed())
        })
    };
    // Bob's write must not end alice's wait.
    bob.put("/notes/bobdoc", json!({})).await.ok();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!poll.is_finished(), "alice's longpoll ended on bob's write");
    alice.put("/notes/mine", json!({})).await.ok();
    let (r, elapsed) = poll.await.unwrap();
    assert_eq!(r["results"].as_array().unwrap().len(), 1);
    assert_eq!(r["results"][0]["id"], "mine");
    assert!(elapsed < Duration::from_secs(15));
    // A longpoll with nothing new waits for its timeout, then answers an unchanged position.
    let last = r["last_seq"].as_str().unwrap();
    let t = Instant::now();
    let idle = alice
        .get(&format!(
            "/notes/_changes?feed=longpoll&since={last}&timeout=1500"
        ))
        .await
        .ok();
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "longpoll really waits"
    );
    assert_eq!(idle["results"], json!([]));
}

#[tokio::test]
async fn continuous_and_eventsource_feeds() {
    let (_b, _gate, alice) = setup().await;
    alice.put("/notes/a", json!({})).await.ok();
    let resp = alice
        .request(
            Method::GET,
            "/notes/_changes?feed=continuous&heartbeat=200&since=0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    let mut text = String::new();
    let mut wrote = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("heartbeats keep the feed alive")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("\"id\":\"a\"") && !wrote {
            wrote = true;
            alice.put("/notes/b", json!({})).await.ok();
        }
        if text.contains("\"id\":\"b\"") {
            break;
        }
    }
    let rows: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[1]["id"], "b");

    let c = alice
        .get("/notes/_changes?feed=continuous&timeout=300")
        .await;
    let lines: Vec<Value> = String::from_utf8_lossy(&c.bytes)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[2]["last_seq"].is_string());

    let es = alice
        .get("/notes/_changes?feed=eventsource&timeout=300")
        .await;
    assert_eq!(es.headers["content-type"], "text/event-stream");
    let body = String::from_utf8_lossy(&es.bytes);
    assert_eq!(body.matches("data: ").count(), 2, "{body}");
    assert_eq!(body.matches("\nid: ").count(), 2, "{body}");
}

#[tokio::test]
async fn cors() {
    let (_b, gate, alice) = setup().await;
    let pre = gate
        .anonymous()
        .send(
            gate.anonymous()
                .request(Method::OPTIONS, "/notes/_changes")
                .header("Origin", "http://app.example")
                .header("Access-Control-Request-Method", "POST")
                .header(
                    "Access-Control-Request-Headers",
                    "authorization,content-type",
                ),
        )
        .await;
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.headers["access-control-allow-origin"],
        "http://app.example"
    );
    let r = alice
        .send(
            alice
                .request(Method::GET, "/notes")
                .header("Origin", "http://app.example"),
        )
        .await;
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "http://app.example"
    );
    let r = alice
        .send(
            alice
                .request(Method::GET, "/notes")
                .header("Origin", "http://evil.example"),
        )
        .await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn misc_endpoints() {
    let (_b, _gate, alice) = setup().await;
    let r = alice.post("/notes/_ensure_full_commit", json!({})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["ok"], true);
    alice
        .get("/notes/_bulk_docs")
        .await
        .error(405, "method_not_allowed");
    alice
        .delete("/notes?rev=1-x")
        .await
        .error(400, "bad_request");
}
