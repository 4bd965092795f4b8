//! Demo mode: with no `--couchdb-url`, couchgate starts an in-memory PouchDB Server from the
//! repository's `conformance/node_modules` (running `npm ci` there first when needed), uses it as
//! its backend, and makes up a token secret. For trying couchgate out, never for production.

use crate::error::{Error, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running PouchDB Server; killed when dropped.
pub struct DevBackend {
    pub url: String,
    _child: Child,
    /// The backend's working folder.
    pub dir: PathBuf,
}

/// The Node project holding PouchDB Server.
pub fn node_project() -> PathBuf {
    std::env::var_os("COUCHGATE_NODE_PROJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance"))
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Internal(e.to_string()))?;
    Ok(l.local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?
        .port())
}

/// Installs PouchDB Server if needed and starts it on a free loopback port.
pub async fn start() -> Result<DevBackend> {
    let project = node_project();
    let bin = project.join("node_modules/pouchdb-server/bin/pouchdb-server");
    if !bin.exists() {
        eprintln!(
            "installing PouchDB Server with npm ci in {} ...",
            project.display()
        );
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&project)
            .stdout(Stdio::null())
            .status()
            .await
            .map_err(|e| Error::Internal(format!("running npm: {e}")))?;
        if !status.success() {
            return Err(Error::Internal("npm ci failed".into()));
        }
    }
    let dir = std::env::temp_dir().join(format!("couchgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Internal(e.to_string()))?;
    let port = free_port()?;
    let child = Command::new("node")
        .arg(&bin)
        .args([
            "--in-memory",
            "--no-stdout-logs",
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Internal(format!("starting PouchDB Server: {e}")))?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Internal(
                "PouchDB Server did not start within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(DevBackend {
        url,
        _child: child,
        dir,
    })
}

/// The demo's folder (PouchDB Server's working directory and couchgate's index) goes with
/// the demo: a stopped demo leaves nothing in the temporary directory.
impl Drop for DevBackend {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A random secret for demo tokens.
pub fn demo_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A token for user `demo`, valid for a day.
pub fn demo_token(secret: &str) -> Result<String> {
    let exp = jsonwebtoken::get_current_timestamp() + 24 * 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "demo", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::Internal(e.to_string()))
}
