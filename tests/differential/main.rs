//! The differential suite: every request of the corpus ([`corpus`]) is sent to a couchgate
//! virtual database AND to a plain database on the same backend, in the same order, and the two
//! answers are compared ([`compare`]): status, the headers clients read and the body after
//! normalising only what must differ (sequences, generated uuids, database names, and, on
//! PouchDB Server whose revision hashes cover the `_id`, revision hashes).
//!
//! Every difference must be fixed or listed in [`known`] with its reason (and in the README's
//! table); an unlisted difference fails the test, and the whole table of differences is printed
//! either way. Runs against PouchDB Server by default and against the CouchDB 3 named by
//! `COUCHDB_URL`; where the two disagree with each other, CouchDB is the reference.

#[path = "../support/mod.rs"]
mod support;

mod compare;
mod corpus;
mod known;
mod target;

use compare::Difference;
use std::collections::BTreeSet;
use support::{Backend, Gate};
use target::Target;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couchgate_answers_like_the_backend_itself() {
    let backend = Backend::start();
    let couchdb = !backend.is_pouchdb_server();
    // Both databases get one shard, so that both `_changes` feeds are in update order (with
    // several shards CouchDB interleaves them, differently for different ids). The control
    // database is created by the corpus, with `?q=1` (see `Target::direct`).
    let shared_db = support::unique_db();
    let ctl_db = format!("{shared_db}-control");
    let created = reqwest::Client::new()
        .put(format!("{}/{shared_db}?q=1", backend.url))
        .send()
        .await
        .expect("the backend answers");
    assert!(
        created.status().is_success(),
        "creating {shared_db}: {}",
        created.status()
    );
    let gate = Gate::start_on(&backend, &shared_db, "127.0.0.1:0", &[]);
    let mut through = Target::gate(&gate, "alice", "diffdb");
    let mut direct = Target::direct(&backend.url, &ctl_db);

    let steps = corpus::steps();
    let mut names = BTreeSet::new();
    for s in &steps {
        assert!(
            names.insert(s.name.clone()),
            "duplicate case name {}",
            s.name
        );
    }
    let strictness = if couchdb {
        compare::Strictness::Exact
    } else {
        compare::Strictness::Data
    };
    let mut differences: Vec<Difference> = Vec::new();
    let mut not_run = Vec::new();
    let mut gate_only = Vec::new();
    for step in &steps {
        if let (Some(why), false) = (step.pouchdb_server_skip, couchdb) {
            not_run.push((step.name.as_str(), why));
            continue;
        }
        if let (Some((status, error)), false) = (step.pouchdb_server_gate_only, couchdb) {
            let a = through.send(step).await;
            let body: serde_json::Value = serde_json::from_slice(&a.bytes).unwrap_or_default();
            let got = (a.status.as_u16(), body["error"].as_str());
            if got != (status, error) {
                differences.push(Difference {
                    case: step.name.clone(),
                    what: format!(
                        "couchgate alone: expected {status} {error:?}, got {} {}",
                        got.0,
                        String::from_utf8_lossy(&a.bytes)
                    ),
                });
            }
            gate_only.push(step.name.as_str());
            continue;
        }
        let a = through.send(step).await;
        let b = direct.send(step).await;
        let (na, nb) = (
            compare::normalize(&a, &through, step),
            compare::normalize(&b, &direct, step),
        );
        differences.extend(compare::diff(&step.name, &na, &nb, strictness));
    }
    direct.cleanup().await;
    let _ = reqwest::Client::new()
        .delete(format!("{}/{shared_db}", backend.url))
        .send()
        .await;

    let backend_name = if couchdb { "CouchDB" } else { "PouchDB Server" };
    let known = known::for_backend(couchdb);
    let mut unexpected = Vec::new();
    let mut seen_known = BTreeSet::new();
    println!(
        "differential suite against {backend_name}: {} cases",
        steps.len()
    );
    for d in &differences {
        match known
            .iter()
            .find(|k| d.case.starts_with(k.case) && d.what.contains(k.what))
        {
            Some(k) => {
                seen_known.insert(k.case);
                println!("  known    {:<48} {} ({})", d.case, d.what, k.reason);
            }
            None => {
                println!("  UNKNOWN  {:<48} {}", d.case, d.what);
                unexpected.push(d);
            }
        }
    }
    let cases_differing: BTreeSet<&str> = differences.iter().map(|d| d.case.as_str()).collect();
    println!(
        "{} cases, {} differ ({} known, listed in the README), {} unexpected differences",
        steps.len(),
        cases_differing.len(),
        seen_known.len(),
        unexpected.len()
    );
    if !not_run.is_empty() {
        println!(
            "{} cases not sent to PouchDB Server (they run with COUCHDB_URL):",
            not_run.len()
        );
        for (name, why) in &not_run {
            println!("  skipped  {name:<48} {why}");
        }
    }
    if !gate_only.is_empty() {
        println!(
            "{} cases sent to couchgate only, which answers them itself (they kill or corrupt \
             PouchDB Server): {}",
            gate_only.len(),
            gate_only.join(", ")
        );
    }
    for k in &known {
        if !seen_known.contains(k.case) {
            println!("  note: known difference `{}` did not show", k.case);
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} unexpected differences (table above)",
        unexpected.len()
    );
}

/// Every known difference is in the README's table, word for word, so users can read why.
#[test]
fn every_known_difference_is_in_the_readme() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for k in known::ALL {
        assert!(
            readme.contains(k.reason),
            "README lacks the known difference of `{}`: {}",
            k.case,
            k.reason
        );
        if !k.case.is_empty() {
            assert!(
                readme.contains(&format!("`{}", k.case)),
                "README lacks case `{}`",
                k.case
            );
        }
    }
}
