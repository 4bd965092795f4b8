//! Per-user Mango through couchgate: `_find`, `_index`, `_explain` and bookmarks, each over the
//! caller's namespace only, against a real backend; and the same on a partitioned backing
//! database (CouchDB only).

mod support;

use serde_json::{json, Value};
use support::{Backend, Client, Gate};

/// Alice and Bob hold documents with the same ids and fields, in databases of the same name.
async fn two_users(gate: &Gate) -> (Client, Client) {
    let alice = gate.client("alice");
    let bob = gate.client("bob");
    for (who, owner) in [(&alice, "alice"), (&bob, "bob")] {
        who.create_db("notes").await;
        let docs: Vec<Value> = (0..12)
            .map(|i| json!({"_id": format!("d{i:02}"), "n": i, "owner": owner, "kind": if i % 2 == 0 { "even" } else { "odd" }}))
            .collect();
        who.post("/notes/_bulk_docs", json!({ "docs": docs }))
            .await
            .ok();
    }
    (alice, bob)
}

fn ids(answer: &Value) -> Vec<String> {
    answer["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect()
}

/// `couchdb`: the backend is CouchDB, which has `$beginsWith` and bookmarks (PouchDB Server's
/// `_find` has neither).
async fn find_over_the_namespace(gate: &Gate, couchdb: bool) {
    let (alice, bob) = two_users(gate).await;
    // Everything the selector matches is alice's own, with client ids.
    let all = alice
        .post("/notes/_find", json!({"selector": {}, "limit": 100}))
        .await
        .ok();
    assert_eq!(all["docs"].as_array().unwrap().len(), 12, "{all}");
    assert!(all["docs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["owner"] == "alice"));
    let odd = alice
        .post(
            "/notes/_find",
            json!({"selector": {"kind": "odd", "n": {"$gt": 6}}, "fields": ["n"]}),
        )
        .await
        .ok();
    let mut ns: Vec<i64> = odd["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["n"].as_i64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, [7, 9, 11]);
    assert!(
        odd["docs"][0].get("_id").is_none(),
        "fields without _id: {odd}"
    );
    // `_id` conditions name client ids.
    let range = alice
        .post(
            "/notes/_find",
            json!({"selector": {"_id": {"$gt": "d03", "$lte": "d05"}}}),
        )
        .await
        .ok();
    assert_eq!(ids(&range), ["d04", "d05"]);
    let some = alice
        .post(
            "/notes/_find",
            json!({"selector": {"_id": {"$in": ["d01", "d11", "nope"]}}}),
        )
        .await
        .ok();
    assert_eq!(ids(&some), ["d01", "d11"]);
    if couchdb {
        let prefixed = alice
            .post(
                "/notes/_find",
                json!({"selector": {"_id": {"$beginsWith": "d1"}}}),
            )
            .await
            .ok();
        assert_eq!(ids(&prefixed), ["d10", "d11"]);
    }
    // Pagination by bookmark (by `skip` where the backend has no bookmarks): every document
    // once, in order.
    let mut seen = Vec::new();
    let mut bookmark = None::<String>;
    for page in 0..10 {
        let mut q = json!({"selector": {"n": {"$gte": 0}}, "limit": 5});
        match &bookmark {
            Some(b) => q["bookmark"] = json!(b),
            None if !couchdb => q["skip"] = json!(page * 5),
            None => {}
        }
        let page = alice.post("/notes/_find", q).await.ok();
        let got = ids(&page);
        if got.is_empty() {
            break;
        }
        seen.extend(got);
        bookmark = page["bookmark"].as_str().map(str::to_owned);
        assert_eq!(bookmark.is_some(), couchdb, "{page}");
    }
    let want: Vec<String> = (0..12).map(|i| format!("d{i:02}")).collect();
    assert_eq!(seen, want);
    if couchdb {
        // A bookmark opens in its own namespace only, and says nothing readable.
        let b = bookmark.unwrap();
        assert!(!b.contains("alice") && !b.contains("d11"));
        bob.post("/notes/_find", json!({"selector": {}, "bookmark": b}))
            .await
            .error(400, "invalid_bookmark");
    }
    // Execution statistics count only what the caller got (PouchDB Server keeps none).
    let stats = alice
        .post(
            "/notes/_find",
            json!({"selector": {"kind": "even"}, "execution_stats": true}),
        )
        .await
        .ok();
    if couchdb {
        assert_eq!(stats["execution_stats"]["results_returned"], 6);
    }
    assert!(stats["execution_stats"]
        .get("total_docs_examined")
        .is_none());
    // CouchDB's refusals.
    alice
        .post("/notes/_find", json!({"selector": {"n": {"$in": 3}}}))
        .await
        .error(400, "bad_arg");
    alice
        .post("/notes/_find", json!({"limit": 1}))
        .await
        .error(400, "missing_required_key");
    alice
        .post("/notes/_find", json!({"selector": [1]}))
        .await
        .error(400, "invalid_selector_json");
    alice
        .post(
            "/notes/_find",
            json!({"selector": {"_id": {"$regex": "^d"}}}),
        )
        .await
        .error(400, "bad_arg");
    // CouchDB crashes on a zero `$mod` divisor (500 badarith): a bad argument here.
    alice
        .post("/notes/_find", json!({"selector": {"n": {"$mod": [0, 1]}}}))
        .await
        .error(400, "bad_arg");
    // An empty combination finds nothing, as on CouchDB (its `_changes` matcher says "all").
    for s in [json!({"$or": []}), json!({"n": {"$and": []}})] {
        let none = alice
            .post("/notes/_find", json!({ "selector": s }))
            .await
            .ok();
        assert_eq!(none, json!({"docs": []}), "{s}");
    }
    gate.client("carol")
        .post("/notes/_find", json!({"selector": {}}))
        .await
        .error(404, "not_found");
}

/// `couchdb`: the backend is CouchDB (PouchDB Server fails a query whose `use_index` names no
/// index, where CouchDB warns).
async fn indexes_are_per_user(gate: &Gate, couchdb: bool) {
    let (alice, bob) = two_users(gate).await;
    let made = alice
        .post(
            "/notes/_index",
            json!({"index": {"fields": ["n"]}, "ddoc": "by-n", "name": "n"}),
        )
        .await
        .ok();
    assert_eq!(
        made,
        json!({"result": "created", "id": "_design/by-n", "name": "n"})
    );
    let again = alice
        .post(
            "/notes/_index",
            json!({"index": {"fields": ["n"]}, "ddoc": "by-n", "name": "n"}),
        )
        .await
        .ok();
    assert_eq!(again["result"], "exists");
    // Bob defines the same index under his own name: one shared index, two lists.
    bob.post(
        "/notes/_index",
        json!({"index": {"fields": ["n"]}, "ddoc": "mine", "name": "x"}),
    )
    .await
    .ok();
    let list = alice.get("/notes/_index").await.ok();
    assert_eq!(list["total_rows"], 2);
    assert_eq!(list["indexes"][0]["name"], "_all_docs");
    assert_eq!(list["indexes"][1]["ddoc"], "_design/by-n");
    assert_eq!(list["indexes"][1]["def"], json!({"fields": [{"n": "asc"}]}));
    let bobs = bob.get("/notes/_index").await.ok();
    assert_eq!(bobs["indexes"][1]["ddoc"], "_design/mine");
    assert_eq!(bobs["total_rows"], 2);
    // Sorting needs the index; it is named as the caller named it.
    let sorted = alice
        .post(
            "/notes/_find",
            json!({"selector": {"n": {"$gt": 8}}, "sort": [{"n": "desc"}], "use_index": "by-n"}),
        )
        .await
        .ok();
    assert_eq!(ids(&sorted), ["d11", "d10", "d09"]);
    assert!(sorted["docs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["owner"] == "alice"));
    // Bob cannot name alice's index: CouchDB's warning, in his words.
    if couchdb {
        let named = bob
            .post(
                "/notes/_find",
                json!({"selector": {"n": 1}, "use_index": "by-n"}),
            )
            .await
            .ok();
        let warning = named["warning"].as_str().unwrap_or_default();
        assert!(warning.contains("_design/by-n"), "{named}");
        assert!(!warning.contains("couchgate"), "{named}");
    }
    // `_explain` speaks of alice's database and index only.
    let plan = alice
        .post(
            "/notes/_explain",
            json!({"selector": {"n": {"$gt": 8}}, "use_index": ["by-n", "n"]}),
        )
        .await
        .ok();
    assert_eq!(plan["dbname"], "notes");
    assert_eq!(plan["index"]["ddoc"], "_design/by-n");
    assert_eq!(plan["selector"], json!({"n": {"$gt": 8}}));
    let text = plan.to_string();
    assert!(
        !text.contains("alice") && !text.contains("couchgate-mango"),
        "{text}"
    );
    // Deleting: from alice's list only.
    alice.delete("/notes/_index/_design/by-n/json/n").await.ok();
    assert_eq!(alice.get("/notes/_index").await.ok()["total_rows"], 1);
    assert_eq!(bob.get("/notes/_index").await.ok()["total_rows"], 2);
    alice
        .delete("/notes/_index/_design/by-n/json/n")
        .await
        .error(404, "not_found");
    // Bounded: a database lists at most 16 indexes.
    for i in 0..16 {
        alice
            .post(
                "/notes/_index",
                json!({"index": {"fields": [format!("f{i}")]}, "name": format!("i{i}")}),
            )
            .await
            .ok();
    }
    alice
        .post("/notes/_index", json!({"index": {"fields": ["g"]}}))
        .await
        .error(403, "forbidden");
    alice
        .post(
            "/notes/_index",
            json!({"index": {"fields": ["n"], "partial_filter_selector": {"_id": {"$gt": "a"}}}}),
        )
        .await
        .error(400, "bad_request");
}

#[tokio::test]
async fn find_over_the_callers_namespace_only() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    find_over_the_namespace(&gate, !backend.is_pouchdb_server()).await;
}

#[tokio::test]
async fn mango_indexes_are_per_user() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    indexes_are_per_user(&gate, !backend.is_pouchdb_server()).await;
}

/// The same over a partitioned backing database, where each namespace is a partition.
#[tokio::test]
async fn mango_on_a_partitioned_database() {
    let backend = Backend::start();
    if backend.is_pouchdb_server() {
        eprintln!("PouchDB Server has no partitioned databases: run with COUCHDB_URL");
        return;
    }
    for run in [0, 1] {
        let gate = Gate::start(&backend, &["--partitioned"]);
        let info = gate.backing().get("").await.ok();
        assert_eq!(info["props"]["partitioned"], true, "{info}");
        if run == 0 {
            find_over_the_namespace(&gate, true).await;
        } else {
            indexes_are_per_user(&gate, true).await;
        }
    }
}
