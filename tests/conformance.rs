//! Runs the conformance suite (`conformance/`, real PouchDB 9 clients syncing through
//! couchgate, each scenario also run against the plain backend as a control) as part of
//! `cargo test`, with the couchgate binary cargo just built.

mod support;

use std::process::Command;

#[test]
fn pouchdb_replication_scenarios() {
    support::ensure_node_modules();
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    let mut cmd = Command::new("node");
    cmd.arg("run.mjs")
        .args(["--bin", env!("CARGO_BIN_EXE_couchgate")])
        .current_dir(&project);
    // A real CouchDB keeps what it is given: every run gets a shared database of its own
    // (a fresh couchgate would otherwise build its index from every earlier run's documents).
    let couchdb = support::couchdb_url();
    let database = support::unique_db();
    if let Some(url) = &couchdb {
        cmd.args(["--backend-url", url, "--database", &database]);
    }
    if let Ok(only) = std::env::var("CONFORMANCE_ONLY") {
        cmd.args(["--only", &only]);
    }
    let status = cmd.status().expect("node must be installed");
    if let Some(url) = &couchdb {
        let drop = format!("{}/{database}", url.trim_end_matches('/'));
        let _ = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(reqwest::Client::new().delete(drop).send());
    }
    assert!(
        status.success(),
        "conformance scenarios failed (see the table above)"
    );
}
