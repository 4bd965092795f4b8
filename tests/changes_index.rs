//! The per-namespace changes index, end to end: sequences of the namespace's own, read-your-
//! writes, restarts of couchgate (with and without its data directory, cleanly and not) and of
//! the backend, foreign and garbage `since` values, and two couchgate instances over one
//! backend with a client alternating between them.

mod support;

use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::fake::{Fake, FakeGate};
use support::{free_port, unique_db, Backend, Client, Gate};

fn ids(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn last_seq(v: &Value) -> String {
    v["last_seq"].as_str().unwrap().to_owned()
}

/// Polls `_changes?since=` until `want` ids have all been seen, or fails at the deadline.
async fn changes_until(c: &Client, since: &str, want: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c.get(&format!("/notes/_changes?since={since}")).await.ok();
        let got: HashSet<String> = ids(&v).into_iter().collect();
        if want.iter().all(|w| got.contains(*w)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "still missing some of {want:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_write_is_in_its_writers_changes_at_once() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    let mut since = last_seq(&alice.get("/notes/_changes").await.ok());
    for i in 0..40 {
        let id = format!("d{i}");
        if i % 2 == 0 {
            alice
                .put(&format!("/notes/{id}"), json!({"i": i}))
                .await
                .ok();
        } else {
            alice
                .post("/notes/_bulk_docs", json!({"docs": [{"_id": id, "i": i}]}))
                .await
                .ok();
        }
        let v = alice
            .get(&format!("/notes/_changes?since={since}"))
            .await
            .ok();
        assert_eq!(
            ids(&v),
            std::slice::from_ref(&id),
            "read-your-writes, round {i}"
        );
        since = last_seq(&v);
    }
    let info = alice.get("/notes").await.ok();
    assert_eq!(info["doc_count"], 40);
    let rev = alice.get("/notes/d0").await.ok()["_rev"].clone();
    alice
        .delete(&format!("/notes/d0?rev={}", rev.as_str().unwrap()))
        .await
        .ok();
    let info = alice.get("/notes").await.ok();
    assert_eq!(
        (info["doc_count"].clone(), info["doc_del_count"].clone()),
        (json!(39), json!(1))
    );
    // main_only and include_docs come from one batched read of the current documents.
    let v = alice
        .get("/notes/_changes?include_docs=true&doc_ids=[\"d0\",\"d1\"]&filter=_doc_ids")
        .await
        .ok();
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "d1");
    assert_eq!(rows[0]["doc"]["i"], 1);
    assert_eq!(rows[1]["deleted"], true);
    assert_eq!(rows[1]["doc"]["_deleted"], true);
    assert_eq!(rows[1]["doc"]["_id"], "d0");
}

/// The `N` of a sequence token.
fn n_of(token: &str) -> u64 {
    token.split_once('-').unwrap().0.parse().unwrap()
}

/// A user's sequences are positions in that user's own history: another user's 100 writes
/// leave them exactly as they were, `N` counts the user's own edits, and tokens have one
/// length whatever the shared database holds.
#[tokio::test]
async fn sequences_belong_to_their_namespace() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let (alice, bob) = (gate.client("alice"), gate.client("bob"));
    alice.create_db("notes").await;
    bob.create_db("notes").await;
    for i in 0..3 {
        alice.put(&format!("/notes/a{i}"), json!({})).await.ok();
    }
    let rev = alice.get("/notes/a0").await.ok()["_rev"].clone();
    alice
        .put("/notes/a0", json!({"_rev": rev, "v": 2}))
        .await
        .ok();
    let rev = alice.get("/notes/a1").await.ok()["_rev"].clone();
    alice
        .delete(&format!("/notes/a1?rev={}", rev.as_str().unwrap()))
        .await
        .ok();
    let info = alice.get("/notes").await.ok();
    let feed = alice.get("/notes/_changes").await.ok();
    let update_seq = info["update_seq"].as_str().unwrap().to_owned();
    assert_eq!(n_of(&update_seq), 5, "3 creations, 1 update, 1 deletion");
    assert_eq!(last_seq(&feed), update_seq);
    let row_seqs: Vec<u64> = feed["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| n_of(r["seq"].as_str().unwrap()))
        .collect();
    assert_eq!(row_seqs, [3, 4, 5], "a2, then a0 and a1 as last changed");

    let docs: Vec<Value> = (0..100).map(|i| json!({"_id": format!("b{i}")})).collect();
    bob.post("/notes/_bulk_docs", json!({ "docs": docs }))
        .await
        .ok();
    let bobs = bob.get("/notes/_changes").await.ok();
    assert_eq!(ids(&bobs).len(), 100, "bob's writes are indexed");
    assert_eq!(n_of(&last_seq(&bobs)), 100);
    let info = alice.get("/notes").await.ok();
    assert_eq!(
        info["update_seq"],
        update_seq.as_str(),
        "untouched namespace"
    );
    let again = alice.get("/notes/_changes").await.ok();
    assert_eq!(last_seq(&again), update_seq);
    let since = alice
        .get(&format!("/notes/_changes?since={update_seq}"))
        .await
        .ok();
    assert_eq!(ids(&since), Vec::<String>::new());
    assert_eq!(last_seq(&since), update_seq);
    assert_eq!(
        last_seq(&bobs).len() - "100".len(),
        update_seq.len() - "5".len(),
        "the opaque part says nothing of how much there is"
    );
    assert_ne!(
        bob.get("/notes/_changes?limit=5").await.ok()["last_seq"],
        json!(update_seq),
        "equal N of two users are different tokens"
    );
}

/// A restart on the same data directory resumes every token exactly; one on a fresh directory
/// (an index lost or never kept) replays each namespace from its start, losing nothing.
#[tokio::test]
async fn restarts_with_and_without_the_data_directory() {
    let backend = Backend::start();
    let kept = tempfile::tempdir().unwrap();
    let kept_dir = kept.path().to_str().unwrap();
    let db = unique_db();
    let listen = format!("127.0.0.1:{}", free_port());
    let gate = Gate::start_on(&backend, &db, &listen, &["--data-dir", kept_dir]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    for i in 0..5 {
        alice.put(&format!("/notes/a{i}"), json!({})).await.ok();
    }
    let before = alice.get("/notes/_changes").await.ok();
    assert_eq!(ids(&before).len(), 5);
    let since = last_seq(&before);
    gate.terminate();

    let started = Instant::now();
    let gate = Gate::start_on(
        &backend,
        &db,
        &listen,
        &["--data-dir", kept_dir, "--log", "couchgate=info"],
    );
    let alice = gate.client("alice");
    let first = alice
        .get(&format!("/notes/_changes?since={since}"))
        .await
        .ok();
    assert_eq!(ids(&first), Vec::<String>::new(), "nothing replayed");
    let first_answer = started.elapsed();
    alice.put("/notes/after", json!({})).await.ok();
    let v = alice
        .get(&format!("/notes/_changes?since={since}"))
        .await
        .ok();
    assert_eq!(ids(&v), ["after"], "nothing replayed, nothing missed");
    let since = last_seq(&v);
    let log = gate.terminate();
    assert!(log.contains("opened=Clean"), "{log}");
    eprintln!("restart with the data directory: first answer after {first_answer:?}");

    // A crash (SIGKILL) keeps the data but not the identity: old tokens replay.
    let gate = Gate::start_on(&backend, &db, &listen, &["--data-dir", kept_dir]);
    let alice = gate.client("alice");
    assert_eq!(
        ids(&alice
            .get(&format!("/notes/_changes?since={since}"))
            .await
            .ok()),
        Vec::<String>::new()
    );
    gate.stop();
    let gate = Gate::start_on(&backend, &db, &listen, &["--data-dir", kept_dir]);
    let alice = gate.client("alice");
    let v = alice
        .get(&format!("/notes/_changes?since={since}"))
        .await
        .ok();
    assert_eq!(
        ids(&v).len(),
        6,
        "after a crash, a replay of the namespace: {v}"
    );
    gate.terminate();

    // A fresh directory: the index is rebuilt from the backend, tokens replay.
    let gate = Gate::start_on(&backend, &db, &listen, &[]);
    let alice = gate.client("alice");
    let v = alice
        .get(&format!("/notes/_changes?since={since}"))
        .await
        .ok();
    let mut got = ids(&v);
    got.sort();
    assert_eq!(got, ["a0", "a1", "a2", "a3", "a4", "after"]);
}

#[tokio::test]
async fn the_follower_survives_a_backend_restart() {
    if support::couchdb_url().is_some() {
        // The backend is not ours to restart; the other tests cover the rest.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut backend = Backend::pouchdb_server_in(port, dir.path(), false);
    let gate = Gate::start(&backend, &["--backend-timeout-secs", "5"]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    alice.put("/notes/before", json!({})).await.ok();
    let since = last_seq(&alice.get("/notes/_changes").await.ok());
    backend.stop();
    let down = alice.put("/notes/during", json!({})).await;
    assert_eq!(down.status, 503, "{}", down.body);
    let _backend = Backend::pouchdb_server_in(port, dir.path(), false);
    // A write straight into the backing database, as another instance would make it.
    let partition = {
        let all = gate.backing().get("/_all_docs").await.ok();
        let id = all["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .find(|id| id.ends_with(":before"))
            .unwrap();
        id.trim_end_matches("before").to_owned()
    };
    gate.backing()
        .put(&format!("/{partition}elsewhere"), json!({}))
        .await
        .ok();
    alice.put("/notes/after", json!({})).await.ok();
    let v = changes_until(&alice, &since, &["elsewhere", "after"]).await;
    assert!(
        !ids(&v).contains(&"during".to_owned()),
        "the refused write never happened"
    );
}

#[tokio::test]
async fn foreign_since_replays_from_the_start_and_garbage_is_refused() {
    let backend = Backend::start();
    let db = unique_db();
    let gate = Gate::start_on(&backend, &db, "127.0.0.1:0", &[]);
    let other = Gate::start_on(
        &backend,
        &db,
        "127.0.0.1:0",
        &["--seq-secret", "a different deployment"],
    );
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    for id in ["a", "b", "c"] {
        alice.put(&format!("/notes/{id}"), json!({})).await.ok();
    }
    let foreign = last_seq(&other.client("alice").get("/notes/_changes").await.ok());
    // Anything that could be a sequence from somewhere replays; replaying never skips.
    for since in [
        "12-g1AAAAFTeJzLYWBg4MhgTmHgzcvPy09JdcjLz8gvLsnJSSxKTy3SLy4pSgUA",
        "999999",
        foreign.as_str(),
    ] {
        let v = alice
            .get(&format!("/notes/_changes?since={since}"))
            .await
            .ok();
        // In the feed's order, which on a sharded CouchDB database interleaves the shards.
        let mut got = ids(&v);
        got.sort();
        assert_eq!(got, ["a", "b", "c"], "since={since}");
    }
    // Text that is no sequence of any kind is refused, as CouchDB refuses it.
    for since in ["garbage", "-1", "%5B1%5D"] {
        alice
            .get(&format!("/notes/_changes?since={since}"))
            .await
            .error(400, "bad_request");
    }
    let v = alice.get("/notes/_changes?since[]=1").await.ok();
    assert_eq!(ids(&v).len(), 3);
}

#[tokio::test]
async fn two_instances_behind_one_balancer() {
    let backend = Backend::start();
    let db = unique_db();
    let a = Gate::start_on(&backend, &db, "127.0.0.1:0", &[]);
    let b = Gate::start_on(&backend, &db, "127.0.0.1:0", &[]);
    let ca = a.client("alice");
    let cb = b.client("alice");
    ca.create_db("notes").await;
    let mut since = last_seq(&ca.get("/notes/_changes").await.ok());
    let mut seen: Vec<String> = Vec::new();
    // Writes alternate between the instances, and so do the reads, each resuming from the
    // other instance's last_seq. Nothing may be missed; replays are allowed.
    for i in 0..10 {
        let (writer, reader) = if i % 2 == 0 { (&ca, &cb) } else { (&cb, &ca) };
        let id = format!("x{i}");
        writer.put(&format!("/notes/{id}"), json!({})).await.ok();
        let v = changes_until(reader, &since, &[&id]).await;
        for got in ids(&v) {
            if !seen.contains(&got) {
                seen.push(got);
            }
        }
        since = last_seq(&v);
    }
    let want: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
    assert_eq!(seen, want);

    // A longpoll on one instance wakes for a write through the other.
    let since = last_seq(&cb.get("/notes/_changes").await.ok());
    let poll = {
        let cb = cb.clone();
        tokio::spawn(async move {
            cb.get(&format!(
                "/notes/_changes?feed=longpoll&since={since}&timeout=20000"
            ))
            .await
            .ok()
        })
    };
    ca.put("/notes/wake", json!({})).await.ok();
    let v = tokio::time::timeout(Duration::from_secs(25), poll)
        .await
        .expect("the longpoll answered")
        .unwrap();
    assert_eq!(ids(&v), ["wake"]);
}

/// Paging with `limit` reads the same rows as one read, each exactly once.
#[tokio::test]
async fn paging_with_limit_reads_every_row_once() {
    let backend = Backend::start();
    let gate = Gate::start(&backend, &[]);
    let ci = gate.client("alice");
    ci.create_db("notes").await;
    for i in 0..30 {
        ci.put(&format!("/notes/d{i:02}"), json!({})).await.ok();
    }
    let rev = ci.get("/notes/d03").await.ok()["_rev"].clone();
    ci.put("/notes/d03", json!({"_rev": rev, "v": 2}))
        .await
        .ok();
    let q = "/notes/_changes?style=all_docs";
    let whole = ci.get(q).await.ok();
    assert_eq!(ids(&whole).len(), 30);
    assert_eq!(ids(&whole).last().map(String::as_str), Some("d03"));
    let mut since = "0".to_owned();
    let mut paged = Vec::new();
    loop {
        let v = ci.get(&format!("{q}&limit=7&since={since}")).await.ok();
        if v["results"].as_array().unwrap().is_empty() {
            assert_eq!(v["pending"], 0);
            break;
        }
        paged.extend(v["results"].as_array().unwrap().iter().cloned());
        since = last_seq(&v);
    }
    assert_eq!(Value::from(paged), whole["results"]);
}

/// An index built for the first time (a fresh data directory) that is not ready within
/// `--changes-ready-wait-secs` answers `_changes` with 503 and `Retry-After`, never with half
/// the documents; once built, the answer is complete. `GET /{db}` answers meanwhile.
#[tokio::test]
async fn a_cold_index_answers_503_until_it_is_built() {
    use support::fake::{Fake, FakeGate, Fault};
    let backend = Backend::start();
    let fake = Fake::start(&backend.url);
    // The follower's first read of the shared feed hangs until the backend timeout.
    fake.arm("style=all_docs", Fault::Hang);
    let gate = FakeGate::start(
        &fake.url(),
        &[
            "--backend-timeout-secs",
            "3",
            "--changes-ready-wait-secs",
            "0",
        ],
    );
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    alice.put("/notes/a", json!({})).await.ok();
    let cold = alice.get("/notes/_changes").await;
    cold.error(503, "service_unavailable");
    assert_eq!(cold.headers["retry-after"], "5");
    assert_eq!(fake.armed(), 0, "the follower's read was the one held");
    assert_eq!(alice.get("/notes").await.ok()["doc_count"], 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let built = loop {
        let a = alice.get("/notes/_changes").await;
        if a.status == 200 {
            break a.body;
        }
        a.error(503, "service_unavailable");
        assert!(Instant::now() < deadline, "the index was never built");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ids(&built), ["a"]);
}

/// Read-your-writes when the feed lags the acknowledged write (a CouchDB cluster acknowledges a
/// write once `w` copies have it, and its feed may be read from one that has not): the
/// `_changes` after a write holds the write, however many empty passes the follower reads.
#[tokio::test]
async fn a_write_is_in_the_next_changes_even_when_the_feed_lags_behind_it() {
    let backend = Backend::start();
    let fake = Fake::start(&backend.url);
    let gate = FakeGate::start(&fake.url(), &[]);
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    for round in 0..3 {
        fake.hide_changes_for(Duration::from_millis(700));
        let id = format!("doc-{round}");
        alice
            .put(&format!("/notes/{id}"), json!({"v": round}))
            .await
            .ok();
        let ch = alice.get("/notes/_changes?since=0").await.ok();
        let ids: Vec<&str> = ch["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&id.as_str()), "round {round}: {ids:?}");
        // Bulk writes too.
        fake.hide_changes_for(Duration::from_millis(700));
        let bulk: Vec<Value> = (0..5)
            .map(|i| json!({"_id": format!("b{round}-{i}")}))
            .collect();
        alice
            .post("/notes/_bulk_docs", json!({"docs": bulk}))
            .await
            .ok();
        let info = alice.get("/notes").await.ok();
        assert_eq!(info["doc_count"], 6 * (round + 1), "round {round}: {info}");
        let ch = alice.get("/notes/_changes?since=0").await.ok();
        assert_eq!(
            ch["results"].as_array().unwrap().len(),
            6 * (round as usize + 1)
        );
    }
    // Rows of documents that were not written (`all_or_nothing` is refused with 417, each row
    // naming a `"rev": "0-"` CouchDB never stores) are nothing to wait for: the next
    // `_changes` answers at once, not with a 503 after the wait.
    let refused = alice
        .post(
            "/notes/_bulk_docs",
            json!({"all_or_nothing": true, "docs": [{"_id": "aon"}]}),
        )
        .await;
    // (PouchDB Server takes the request and writes the document.)
    let written = match refused.status.as_u16() {
        417 => 0,
        201 if backend.is_pouchdb_server() => 1,
        s => panic!("all_or_nothing: {s} {}", refused.body),
    };
    let ch = alice.get("/notes/_changes?since=0").await.ok();
    assert_eq!(ch["results"].as_array().unwrap().len(), 18 + written);
}
