//! Demo mode, as the README's first command starts it: no CouchDB URL, so couchgate runs a
//! local PouchDB Server and prints a token. Its startup log says it is the demo, the token
//! works, and a stopped demo leaves no folder behind.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn the_demo_starts_serves_and_cleans_up() {
    support::ensure_node_modules();
    let mut child = Command::new(env!("CARGO_BIN_EXE_couchgate"))
        .args(["--listen", "127.0.0.1:0"])
        .env("COUCHGATE_LOG", "info")
        .env_remove("COUCHGATE_COUCHDB_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut token = None;
    for _ in 0..10 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if lines
            .last()
            .is_some_and(|l: &String| l.starts_with("demo token"))
        {
            token = Some(line.trim().to_owned());
        }
        lines.push(line);
        if token.is_some() {
            break;
        }
    }
    let url = lines[0]
        .trim()
        .strip_prefix("couchgate listening on ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_owned();
    let token = token.unwrap_or_else(|| panic!("no demo token in {lines:?}"));
    let dir = std::env::temp_dir().join(format!("couchgate-demo-{pid}"));
    assert!(dir.exists(), "the demo's folder while it runs");

    let http = reqwest::Client::new();
    let made = http
        .put(format!("{url}/notes"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);

    // SIGTERM, as an operator's Ctrl-C or `kill` would: a graceful stop.
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("demo_mode: true"), "{stderr}");
    for _ in 0..50 {
        if !dir.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} is left behind", dir.display());
}
