//! A scriptable backend for fault injection and for counting what couchgate asks: passes
//! every request through to a real one, except those an armed fault matches, which get the
//! fault instead, and records every request's method and target.

use super::Client;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500` with a CouchDB error body.
    Status500,
    /// `200` with an HTML body.
    NotJson,
    /// Reads the request and never answers.
    Hang,
    /// Reads the request and closes the connection.
    Close,
    /// Announces 1000 bytes, sends 10 and closes.
    CutBody,
    /// Announces 1000 bytes, sends 10 and then nothing.
    StallBody,
}

/// Armed faults and the log of requests seen, shared with the serving thread.
#[derive(Default)]
struct Shared {
    faults: Mutex<Vec<(String, Fault)>>,
    log: Mutex<Vec<String>>,
    /// Until then every `_changes` answer is empty and ends where it began: a cluster copy
    /// that has not received the latest writes yet.
    stale_until: Mutex<Option<std::time::Instant>>,
}

type Script = Arc<Shared>;

pub struct Fake {
    pub port: u16,
    upstream: String,
    script: Script,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    /// A fake in front of `upstream` on a free port.
    pub fn start(upstream: &str) -> Fake {
        Fake::start_on(upstream, 0, Script::default())
    }

    fn start_on(upstream: &str, port: u16, script: Script) -> Fake {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (up, sc) = (upstream.to_owned(), Arc::clone(&script));
        // Its own thread and runtime: couchgate's start-up blocks the test's thread.
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let http = reqwest::Client::new();
                tokio::pin!(rx);
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        r = listener.accept() => {
                            if let Ok((s, _)) = r {
                                tokio::spawn(serve(s, up.clone(), Arc::clone(&sc), http.clone()));
                            }
                        }
                    }
                }
            });
            // Dropping the runtime closes the listener and every connection.
        });
        Fake {
            port,
            upstream: upstream.to_owned(),
            script,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next request whose target contains `pattern` gets `fault`.
    pub fn arm(&self, pattern: &str, fault: Fault) {
        self.script
            .faults
            .lock()
            .unwrap()
            .push((pattern.to_owned(), fault));
    }

    /// For `d` from now, every `_changes` answer is empty and ends at its own `since` (what a
    /// feed read from a CouchDB cluster copy behind the acknowledged writes looks like). The
    /// answers already on their way when it starts are hidden too.
    pub fn hide_changes_for(&self, d: std::time::Duration) {
        *self.script.stale_until.lock().unwrap() = Some(std::time::Instant::now() + d);
    }

    /// Every request seen so far, as `METHOD target`.
    pub fn requests(&self) -> Vec<String> {
        self.script.log.lock().unwrap().clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.script.log.lock().unwrap().clear();
    }

    /// Faults armed and not yet served.
    pub fn armed(&self) -> usize {
        self.script.faults.lock().unwrap().len()
    }

    /// Stops listening and closes every connection: the backend is down.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        *self = Fake::start_on(&self.upstream, self.port, Arc::clone(&self.script));
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn respond(s: &mut TcpStream, status: u16, ct: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.is_ok() && s.write_all(body).await.is_ok()
}

/// Waits until the peer closes the connection.
async fn until_closed(s: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = s.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// An empty `_changes` answer that ends at the request's own `since`.
fn stale_changes(target: &str) -> String {
    let since = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("since="))
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_else(|| "0".into());
    let since = match since.parse::<u64>() {
        Ok(n) => serde_json::json!(n),
        Err(_) => serde_json::json!(since),
    };
    serde_json::json!({"results": [], "last_seq": since, "pending": 0}).to_string()
}

async fn serve(mut s: TcpStream, upstream: String, script: Script, http: reqwest::Client) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("GET").to_owned();
        let target = first.next().unwrap_or("/").to_owned();
        let (mut len, mut ct, mut chunked) = (0usize, None, false);
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "content-type" => ct = Some(v.trim().to_owned()),
                    "transfer-encoding" => chunked = v.contains("chunked"),
                    _ => {}
                }
            }
        }
        if chunked {
            respond(
                &mut s,
                501,
                "application/json",
                b"{\"error\":\"fake\",\"reason\":\"chunked\"}",
            )
            .await;
            return;
        }
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);

        script
            .log
            .lock()
            .unwrap()
            .push(format!("{method} {target}"));
        let fault = {
            let mut sc = script.faults.lock().unwrap();
            sc.iter()
                .position(|(p, _)| target.contains(p.as_str()))
                .map(|i| sc.remove(i).1)
        };
        let partial = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"_id\":\"x";
        match fault {
            None => {
                let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let mut r = http.request(m, format!("{upstream}{target}")).body(body);
                if let Some(ct) = ct {
                    r = r.header("content-type", ct);
                }
                let Ok(resp) = r.header("accept", "application/json").send().await else {
                    return;
                };
                let status = resp.status().as_u16();
                let ct = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/json")
                    .to_owned();
                let Ok(bytes) = resp.bytes().await else {
                    return;
                };
                let stale = script
                    .stale_until
                    .lock()
                    .unwrap()
                    .is_some_and(|t| std::time::Instant::now() < t);
                let bytes = if stale && target.contains("/_changes") && status == 200 {
                    stale_changes(&target).into_bytes().into()
                } else {
                    bytes
                };
                if !respond(&mut s, status, &ct, &bytes).await {
                    return;
                }
            }
            Some(Fault::Status500) => {
                let body = br#"{"error":"unknown_error","reason":"injected failure"}"#;
                if !respond(&mut s, 500, "application/json", body).await {
                    return;
                }
            }
            Some(Fault::NotJson) => {
                if !respond(&mut s, 200, "text/html", b"<html>not CouchDB</html>").await {
                    return;
                }
            }
            Some(Fault::Hang) => return until_closed(&mut s).await,
            Some(Fault::Close) => return,
            Some(Fault::CutBody) => {
                let _ = s.write_all(partial).await;
                return;
            }
            Some(Fault::StallBody) => {
                let _ = s.write_all(partial).await;
                return until_closed(&mut s).await;
            }
        }
    }
}

/// A couchgate started over `backend_url` by hand (the harness's [`Gate`] wants a [`Backend`]).
pub struct FakeGate {
    pub url: String,
    child: Child,
    _data: Option<tempfile::TempDir>,
}

impl Drop for FakeGate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeGate {
    pub fn start(backend_url: &str, extra: &[&str]) -> FakeGate {
        FakeGate::start_on(backend_url, &super::unique_db(), extra)
    }

    /// couchgate over `backend_url` using the backing database `database`.
    pub fn start_on(backend_url: &str, database: &str, extra: &[&str]) -> FakeGate {
        let (data_flag, data) = super::data_dir_unless_given(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_couchgate"))
            .args(["--listen", "127.0.0.1:0", "--couchdb-url", backend_url])
            .args(["--database", database, "--jwt-secret", super::SECRET])
            .args(extra)
            .args(&data_flag)
            .env("COUCHGATE_LOG", "error")
            .stdout(Stdio::piped())
            // Why it could not start, if it cannot, shows in the test's output.
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("couchgate listening on ")
            .unwrap_or_else(|| panic!("couchgate did not start: {line:?}"))
            .to_owned();
        FakeGate {
            url,
            child,
            _data: data,
        }
    }

    pub fn client(&self, user: &str) -> Client {
        Client::new(&self.url, Some(super::token(user, 3600)))
    }

    pub fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "couchgate exited");
    }
}
