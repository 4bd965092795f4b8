//! The shared state of one couchgate instance: configuration and the subsystems every request
//! may use. Handlers and the proxy both depend on it; it depends on neither.

use crate::auth::Authenticator;
use crate::backend::Backend;
use crate::changes::Changes;
use crate::config::Config;
use crate::cors::Cors;
use crate::error::Result;
use crate::namespace::Namespace;
use crate::vdb::Registry;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub struct State {
    pub config: Config,
    pub backend: Backend,
    pub registry: Arc<Registry>,
    pub auth: Authenticator,
    pub cors: Cors,
    /// The changes index, its follower and the sequence tokens.
    pub changes: Arc<Changes>,
    /// The shared database's `cluster` settings (q, n, w, r), read once: every virtual
    /// database has them, and they say nothing about other users.
    pub cluster: tokio::sync::OnceCell<serde_json::Value>,
}

impl State {
    /// Builds the state and starts its background tasks (so this runs inside a tokio runtime).
    pub fn start(config: Config, backend: Backend) -> Result<State> {
        let auth = Authenticator::new(&config, &backend)?;
        auth.start();
        let data_dir = config.data_dir.clone().unwrap_or_else(default_data_dir);
        let changes = Changes::start(
            backend.clone(),
            &data_dir,
            config.index_cache_bytes,
            &config.seq_secret(),
            config.changes_ready_wait,
        )?;
        let changes = Arc::new(changes);
        Ok(State {
            registry: Arc::new(Registry::new(backend.clone(), Arc::clone(&changes))),
            cors: Cors::new(&config.cors),
            changes,
            cluster: tokio::sync::OnceCell::new(),
            auth,
            backend,
            config,
        })
    }

    /// Records a write acknowledged to the client, for read-your-writes in `_changes`.
    /// An acknowledged write to `ns`, from the backend's answer: a `{"id", "rev"}` object or
    /// a `_bulk_docs` array of them (backing ids; errors skipped).
    pub fn note_write(&self, ns: &Namespace, answer: &serde_json::Value) {
        // `_local` documents are not in the feed: nothing to wait for; nor are rows of
        // documents that were not written (`error`, e.g. `all_or_nothing`'s `"rev": "0-"`).
        let one = |v: &serde_json::Value| {
            if v.get("error").is_some() {
                return None;
            }
            let (id, rev) = (v.get("id")?.as_str()?, v.get("rev")?.as_str()?);
            let id = ns.decode_id(id).filter(|id| !id.starts_with("_local/"))?;
            Some((id, rev.to_owned()))
        };
        let written: Vec<(String, String)> = match answer {
            serde_json::Value::Array(rows) => rows.iter().filter_map(one).collect(),
            v => one(v).into_iter().collect(),
        };
        self.changes.note_write(ns, &written);
    }
}

/// `$XDG_STATE_HOME/couchgate`, else `~/.local/state/couchgate`, else `./couchgate-data`.
pub fn default_data_dir() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(state) = non_empty("XDG_STATE_HOME") {
        return PathBuf::from(state).join("couchgate");
    }
    match non_empty("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/couchgate"),
        None => PathBuf::from("couchgate-data"),
    }
}
