//! The access log: one line per request with method, path (secrets redacted), status, bytes,
//! duration, user and backend requests, as JSON with `--log-format json`.

mod support;

use serde_json::{json, Value};
use support::{Backend, Gate};

/// The access-log lines of a couchgate's JSON log.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "couchgate::access")
        .collect()
}

#[tokio::test]
async fn every_request_gets_one_json_line_with_its_user_status_and_backend_requests() {
    let backend = Backend::start();
    let gate = Gate::start(
        &backend,
        &[
            "--log-format",
            "json",
            "--log",
            "warn,couchgate::access=info",
        ],
    );
    let alice = gate.client("alice");
    alice.create_db("notes").await;
    alice.put("/notes/a", json!({"v": 1})).await.ok();
    alice
        .get("/notes/a?access_token=hunter2&revs=true")
        .await
        .ok();
    alice.get("/notes/missing").await.error(404, "not_found");
    gate.anonymous()
        .get("/notes/a")
        .await
        .error(401, "unauthorized");
    let changes = alice.get("/notes/_changes?since=0").await.ok();
    assert_eq!(changes["results"].as_array().unwrap().len(), 1);
    let log = gate.terminate();
    assert!(
        !log.contains("hunter2"),
        "a token in a query string was logged"
    );
    let lines = access_lines(&log);
    let find = |method: &str, path: &str| -> Value {
        lines
            .iter()
            .find(|l| l["fields"]["method"] == method && l["fields"]["path"] == path)
            .unwrap_or_else(|| panic!("no access line for {method} {path}: {lines:?}"))
            .clone()
    };
    let put = find("PUT", "/notes/a");
    assert_eq!(put["fields"]["status"], 201);
    assert_eq!(put["fields"]["user"], "alice");
    assert!(put["fields"]["upstream"].as_u64().unwrap() >= 1, "{put}");
    assert!(put["fields"]["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(put["fields"]["complete"], true);
    let get = find("GET", "/notes/a?access_token=***&revs=true");
    assert_eq!(get["fields"]["status"], 200);
    assert!(get["fields"]["bytes"].as_u64().unwrap() > 20, "{get}");
    assert_eq!(find("GET", "/notes/missing")["fields"]["status"], 404);
    let anon = lines
        .iter()
        .find(|l| l["fields"]["status"] == 401)
        .expect("the refused request is logged");
    assert_eq!(anon["fields"]["user"], "-");
    assert_eq!(anon["fields"]["upstream"], 0);
    // `_changes` is answered from the index: no backend request.
    let ch = find("GET", "/notes/_changes?since=0");
    assert_eq!(ch["fields"]["upstream"], 0, "{ch}");
    // One line per request: PUT /notes, PUT a, GET a, GET missing, 401, _changes.
    assert_eq!(lines.len(), 6, "{lines:#?}");
}
