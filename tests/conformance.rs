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
    if let Ok(url) = std::env::var("COUCHDB_URL") {
        cmd.args(["--backend-url", &url]);
    }
    if let Ok(only) = std::env::var("CONFORMANCE_ONLY") {
        cmd.args(["--only", &only]);
    }
    let status = cmd.status().expect("node must be installed");
    assert!(
        status.success(),
        "conformance scenarios failed (see the table above)"
    );
}
