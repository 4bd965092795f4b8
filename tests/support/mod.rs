//! Test support: a real CouchDB-compatible backend (PouchDB Server from npm, started on a free
//! port; or the CouchDB 3 named by `COUCHDB_URL`), couchgate itself (the built binary, on a free
//! port), tokens, and a small HTTP client.
#![allow(dead_code)]

pub mod fake;
pub mod multipart;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-secret-0123456789abcdef0123";

/// A CouchDB-compatible server for one test.
pub struct Backend {
    /// Base URL with admin credentials, if any.
    pub url: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node_project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// Installs the Node project once (npm ci) when its modules are missing.
pub fn ensure_node_modules() {
    let project = node_project();
    if project.join("node_modules/pouchdb-server").exists() {
        return;
    }
    let lock = project.join(".install.lock");
    // Several test binaries may race here; the first one installs.
    let _guard = FileLock::acquire(&lock);
    if project.join("node_modules/pouchdb-server").exists() {
        return;
    }
    let ok = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&project)
        .status()
        .expect("npm must be installed")
        .success();
    assert!(ok, "npm ci failed in {}", project.display());
}

/// A crude cross-process lock: exclusive creation of a file.
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &std::path::Path) -> FileLock {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(_) => return FileLock(path.to_owned()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("cannot lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The CouchDB to test against: `COUCHDB_URL` when set and not empty.
pub fn couchdb_url() -> Option<String> {
    std::env::var("COUCHDB_URL").ok().filter(|u| !u.is_empty())
}

impl Backend {
    /// `COUCHDB_URL` when set, else a fresh in-memory PouchDB Server.
    pub fn start() -> Backend {
        if let Some(url) = couchdb_url() {
            let url = url.trim_end_matches('/').to_owned();
            remove_stale_databases(&url);
            return Backend {
                url,
                child: None,
                _dir: None,
            };
        }
        Backend::pouchdb_server(free_port())
    }

    /// An in-memory PouchDB Server on `port`.
    pub fn pouchdb_server(port: u16) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Backend::pouchdb_server_in(port, dir.path(), true);
        b._dir = Some(dir);
        b
    }

    /// A PouchDB Server on `port` keeping its files in `dir` (kept across restarts unless
    /// `in_memory`).
    pub fn pouchdb_server_in(port: u16, dir: &std::path::Path, in_memory: bool) -> Backend {
        ensure_node_modules();
        let bin = node_project().join("node_modules/pouchdb-server/bin/pouchdb-server");
        let mut cmd = Command::new("node");
        cmd.arg(bin);
        if in_memory {
            cmd.arg("--in-memory");
        }
        let child = cmd
            .args(["--no-stdout-logs", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed");
        wait_for_port(port, "PouchDB Server");
        Backend {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            _dir: None,
        }
    }

    pub fn is_pouchdb_server(&self) -> bool {
        self.child.is_some()
    }

    /// Stops a PouchDB Server started here.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running couchgate.
pub struct Gate {
    pub url: String,
    pub database: String,
    pub backend_url: String,
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// The data directory couchgate was given when the test gave none.
    _data: Option<tempfile::TempDir>,
}

/// `--data-dir` for a couchgate whose test does not choose one: a fresh directory, removed
/// with the returned guard.
pub fn data_dir_unless_given(args: &[&str]) -> (Vec<String>, Option<tempfile::TempDir>) {
    if args.contains(&"--data-dir") {
        return (vec![], None);
    }
    let dir = tempfile::tempdir().unwrap();
    let flag = vec!["--data-dir".into(), dir.path().display().to_string()];
    (flag, Some(dir))
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes, once per test process, the backing databases earlier test processes left on a
/// CouchDB given by `COUCHDB_URL` (`cgtest-{pid}-...` of a process that is gone). Tests cannot
/// delete their own on the way out: several couchgates share one, and restart tests reopen it.
fn remove_stale_databases(url: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let url = url.to_owned();
        // A thread of its own: the caller may be inside a test's runtime.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = reqwest::Client::new();
                let Ok(res) = client.get(format!("{url}/_all_dbs")).send().await else {
                    return;
                };
                let dbs: Vec<String> = res.json().await.unwrap_or_default();
                for db in dbs {
                    let Some(pid) = db
                        .strip_prefix("cgtest-")
                        .and_then(|rest| rest.split('-').next())
                        .and_then(|pid| pid.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
                    if !alive {
                        let _ = client.delete(format!("{url}/{db}")).send().await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    });
}

/// A unique name for a backing database.
pub fn unique_db() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "cgtest-{}-{}-{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Gate {
    /// couchgate over `backend` with a fresh backing database and extra flags.
    pub fn start(backend: &Backend, extra: &[&str]) -> Gate {
        Gate::start_on(backend, &unique_db(), "127.0.0.1:0", extra)
    }

    pub fn start_on(backend: &Backend, database: &str, listen: &str, extra: &[&str]) -> Gate {
        let mut args = vec!["--listen", listen, "--jwt-secret", SECRET];
        args.extend_from_slice(extra);
        Gate::spawn(backend, database, &args)
    }

    /// couchgate over `backend` with a fresh backing database and only the given flags beyond
    /// listen, backend and database (no `--jwt-secret`).
    pub fn start_with_args(backend: &Backend, args: &[&str]) -> Gate {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Gate::spawn(backend, &unique_db(), &all)
    }

    /// Runs the binary with `--couchdb-url`, `--database` and `args`, and waits for its
    /// listening line.
    fn spawn(backend: &Backend, database: &str, args: &[&str]) -> Gate {
        let (data_flag, data) = data_dir_unless_given(args);
        let mut child = Command::new(env!("CARGO_BIN_EXE_couchgate"))
            .args(["--couchdb-url", &backend.url, "--database", database])
            .args(args)
            .args(&data_flag)
            .env("COUCHGATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        let url = line
            .trim()
            .strip_prefix("couchgate listening on ")
            .unwrap_or_else(|| panic!("couchgate did not start: {line:?}"))
            .to_owned();
        Gate {
            url,
            database: database.to_owned(),
            backend_url: backend.url.clone(),
            child,
            stderr: Some(stderr),
            _data: data,
        }
    }

    /// Stops couchgate with SIGTERM (a graceful shutdown) and returns what it logged.
    pub fn terminate(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.stderr.take().unwrap().join().unwrap_or_default()
    }

    /// Stops couchgate and returns what it logged.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.take().unwrap().join().unwrap_or_default()
    }

    /// A client acting as `user`.
    pub fn client(&self, user: &str) -> Client {
        Client::new(&self.url, Some(token(user, 3600)))
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> Client {
        Client::new(&self.url, None)
    }

    /// A client straight at the backing database (admin).
    pub fn backing(&self) -> Client {
        Client::new(&format!("{}/{}", self.backend_url, self.database), None)
    }
}

/// An HS256 token for `user`, expiring in `ttl_secs` (negative: already expired).
pub fn token(user: &str, ttl_secs: i64) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    token_with(json!({"sub": user, "exp": now + ttl_secs}), SECRET)
}

pub fn token_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A small blocking-style async HTTP client with an optional bearer token.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    http: reqwest::Client,
}

/// An answer: status, headers and body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn ok(self) -> Value {
        assert!(
            self.status.is_success(),
            "expected success, got {} {}",
            self.status,
            self.body
        );
        self.body
    }

    /// Asserts a CouchDB error of this status and name.
    pub fn error(&self, status: u16, name: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error"], name, "body: {}", self.body);
        assert!(self.body["reason"].is_string(), "body: {}", self.body);
    }
}

/// Asserts an error body is exactly `{"error": string, "reason": string}`.
pub fn shaped(a: &Answer, what: &str) {
    assert!(a.body["error"].is_string(), "{what}: {}", a.body);
    assert!(a.body["reason"].is_string(), "{what}: {}", a.body);
    assert_eq!(
        a.body.as_object().map(serde_json::Map::len),
        Some(2),
        "{what}: an error body is exactly {{error, reason}}: {}",
        a.body
    );
}

/// Asserts a CouchDB error of this status and name whose body is exactly `{"error","reason"}`.
pub fn couch_error(a: &Answer, status: u16, name: &str, what: &str) {
    assert_eq!(a.status.as_u16(), status, "{what}: {}", a.body);
    shaped(a, what);
    assert_eq!(a.body["error"], name, "{what}: {}", a.body);
}

/// Asserts success and returns the body.
pub fn ok(a: Answer, what: &str) -> Value {
    assert!(a.status.is_success(), "{what}: {} {}", a.status, a.body);
    a.body
}

/// One path segment, percent-encoded.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            // JSON unless a test asks otherwise, as PouchDB asks (CouchDB answers `open_revs`
            // and `attachments=true` reads in multipart to `*/*`).
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .default_headers(reqwest::header::HeaderMap::from_iter([(
                    reqwest::header::ACCEPT,
                    reqwest::header::HeaderValue::from_static("application/json"),
                )]))
                .build()
                .unwrap(),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn send(&self, r: reqwest::RequestBuilder) -> Answer {
        let resp = r.send().await.expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap().to_vec();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            headers,
            body,
            bytes,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::PUT, path).json(&body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    /// Creates a virtual database and asserts it worked.
    pub async fn create_db(&self, db: &str) {
        let a = self.put(&format!("/{db}"), Value::Null).await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
}
