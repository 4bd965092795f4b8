//! Virtual databases: their existence, their current epoch, creation and deletion.
//!
//! Each (user, virtual db) has one metadata document in the backing database,
//! `couchgate:db.{enc(user)}.{enc(db)}` (see [`crate::namespace::meta_id`]), holding the *epoch*
//! of its current incarnation. The epoch is part of every backing id of that incarnation, so
//! `DELETE /{db}` followed by `PUT /{db}` starts from an empty namespace at once: nothing the old
//! incarnation wrote, tombstones and `_changes` rows included, can be seen through the new one.
//! The old incarnation's documents are then removed from the backing database in the background
//! (`_purge` where the backend has it, otherwise deletion of every leaf revision).
//!
//! Backends cannot list `_local` documents portably, so each namespace keeps the list of its
//! `_local` ids in one more local document, `_local/{partition}` (see [`Registry::note_local`]);
//! deletion removes every listed one.
//!
//! Lookups are cached for [`CACHE_TTL`]. Another couchgate instance that deletes and re-creates
//! the same virtual database is therefore seen up to that long later; writes in that window land
//! in the old, invisible incarnation. Deletion through the instance itself is seen at once.

use crate::backend::{encode_doc_id, query_string, Backend};
use crate::error::{Error, Result};
use crate::namespace::{meta_id, Namespace};
use dashmap::DashMap;
use http::{Method, StatusCode};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a positive lookup is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most cached lookups; past this the cache is emptied.
const CACHE_MAX: usize = 100_000;
/// Documents removed per backend request when a virtual database is deleted.
const CLEANUP_PAGE: usize = 500;

#[derive(Debug)]
pub struct Registry {
    backend: Backend,
    cache: DashMap<(String, String), (Namespace, Instant)>,
    /// `_local` ids known to be listed in their namespace's local-id list (see `note_local`).
    locals: DashMap<String, HashSet<String>>,
}

fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Registry {
    pub fn new(backend: Backend) -> Self {
        Registry {
            backend,
            cache: DashMap::new(),
            locals: DashMap::new(),
        }
    }

    fn meta_url(user: &str, db: &str) -> String {
        format!("/{}", encode_doc_id(&meta_id(user, db)))
    }

    async fn read_meta(&self, user: &str, db: &str) -> Result<Option<Value>> {
        let url = self.backend.db_url(&Self::meta_url(user, db));
        match self.backend.json(Method::GET, &url, None).await {
            Ok((_, v)) => Ok(Some(v)),
            Err(e) if e.status() == StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The current namespace of `user`'s `db`, or `None` when it does not exist.
    pub async fn lookup(&self, user: &str, db: &str) -> Result<Option<Namespace>> {
        let key = (user.to_owned(), db.to_owned());
        if let Some(entry) = self.cache.get(&key) {
            if entry.1.elapsed() < CACHE_TTL {
                return Ok(Some(entry.0.clone()));
            }
        }
        let Some(meta) = self.read_meta(user, db).await? else {
            self.cache.remove(&key);
            return Ok(None);
        };
        let epoch = meta
            .get("epoch")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::BadGateway("a virtual database record has no epoch".into()))?;
        let ns = Namespace::new(user, db, epoch);
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, (ns.clone(), Instant::now()));
        Ok(Some(ns))
    }

    /// Like [`lookup`](Self::lookup), but a missing database is CouchDB's 404.
    pub async fn require(&self, user: &str, db: &str) -> Result<Namespace> {
        self.lookup(user, db)
            .await?
            .ok_or_else(|| Error::not_found("Database does not exist."))
    }

    /// Creates `user`'s `db`; 412 `file_exists` when it exists.
    pub async fn create(&self, user: &str, db: &str) -> Result<Namespace> {
        if self.read_meta(user, db).await?.is_some() {
            return Err(Error::FileExists(
                "The database could not be created, the file already exists.".into(),
            ));
        }
        let epoch = new_epoch();
        let doc = json!({
            "type": "couchgate.database",
            "user": user,
            "db": db,
            "epoch": epoch,
        });
        let url = self.backend.db_url(&Self::meta_url(user, db));
        match self.backend.json(Method::PUT, &url, Some(&doc)).await {
            Ok(_) => {}
            Err(e) if e.status() == StatusCode::CONFLICT => {
                return Err(Error::FileExists(
                    "The database could not be created, the file already exists.".into(),
                ))
            }
            Err(e) => return Err(e),
        }
        let ns = Namespace::new(user, db, &epoch);
        self.cache.insert(
            (user.to_owned(), db.to_owned()),
            (ns.clone(), Instant::now()),
        );
        Ok(ns)
    }

    /// Deletes `user`'s `db`: the namespace disappears at once, its documents leave the
    /// backing database in the background.
    /// Returns the namespace that was removed.
    pub async fn delete(self: &Arc<Self>, user: &str, db: &str) -> Result<Namespace> {
        let meta = self
            .read_meta(user, db)
            .await?
            .ok_or_else(|| Error::not_found("Database does not exist."))?;
        let rev = meta.get("_rev").and_then(Value::as_str).unwrap_or("");
        let epoch = meta.get("epoch").and_then(Value::as_str).unwrap_or("");
        let url = self.backend.db_url(&format!(
            "{}{}",
            Self::meta_url(user, db),
            query_string([("rev", rev.to_owned())])
        ));
        self.backend.json(Method::DELETE, &url, None).await?;
        self.cache.remove(&(user.to_owned(), db.to_owned()));
        let old = Namespace::new(user, db, epoch);
        let this = Arc::clone(self);
        let removed = old.clone();
        tokio::spawn(async move {
            match this.remove_namespace(&removed).await {
                Ok(n) => tracing::info!(
                    removed = n,
                    "removed a deleted virtual database's documents"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "cleaning up a deleted virtual database failed; its documents stay invisible")
                }
            }
        });
        Ok(old)
    }

    fn local_list_url(&self, ns: &Namespace) -> String {
        self.backend.db_url(&format!(
            "/{}",
            encode_doc_id(&format!("_local/{}", ns.partition()))
        ))
    }

    /// Records that the namespace has the `_local` document `id` (a client id), so that deleting
    /// the virtual database can remove it. Costs a backend round trip only the first time this
    /// instance sees an id.
    pub async fn note_local(&self, ns: &Namespace, id: &str) -> Result<()> {
        if self
            .locals
            .get(ns.partition())
            .is_some_and(|known| known.contains(id))
        {
            return Ok(());
        }
        let url = self.local_list_url(ns);
        for _ in 0..5 {
            let mut list = match self.backend.json(Method::GET, &url, None).await {
                Ok((_, v)) => v,
                Err(e) if e.status() == StatusCode::NOT_FOUND => json!({"ids": []}),
                Err(e) => return Err(e),
            };
            let ids = list["ids"].as_array().cloned().unwrap_or_default();
            if !ids.iter().any(|v| v == id) {
                let mut ids = ids;
                ids.push(json!(id));
                list["ids"] = Value::Array(ids);
                match self.backend.json(Method::PUT, &url, Some(&list)).await {
                    Ok(_) => {}
                    Err(e) if e.status() == StatusCode::CONFLICT => continue,
                    Err(e) => return Err(e),
                }
            }
            if self.locals.len() >= CACHE_MAX {
                self.locals.clear();
            }
            self.locals
                .entry(ns.partition().to_owned())
                .or_default()
                .insert(id.to_owned());
            return Ok(());
        }
        Err(Error::Conflict(
            "too many concurrent updates of the local-id list".into(),
        ))
    }

    /// Removes the namespace's `_local` documents and their list; returns how many.
    async fn remove_locals(&self, ns: &Namespace) -> Result<usize> {
        self.locals.remove(ns.partition());
        let url = self.local_list_url(ns);
        let list = match self.backend.json(Method::GET, &url, None).await {
            Ok((_, v)) => v,
            Err(e) if e.status() == StatusCode::NOT_FOUND => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for id in list["ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let Ok(backing) = ns.encode_id(id) else {
                continue;
            };
            let doc_url = self
                .backend
                .db_url(&format!("/{}", encode_doc_id(&backing)));
            if let Ok((_, doc)) = self.backend.json(Method::GET, &doc_url, None).await {
                let rev = doc["_rev"].as_str().unwrap_or("").to_owned();
                let del = format!("{doc_url}{}", query_string([("rev", rev)]));
                if self.backend.json(Method::DELETE, &del, None).await.is_ok() {
                    removed += 1;
                }
            }
        }
        let rev = list["_rev"].as_str().unwrap_or("").to_owned();
        let del = format!("{url}{}", query_string([("rev", rev)]));
        self.backend.json(Method::DELETE, &del, None).await?;
        Ok(removed)
    }

    /// Removes every document of a namespace from the backing database; returns how many.
    async fn remove_namespace(&self, ns: &Namespace) -> Result<usize> {
        let mut removed = self.remove_locals(ns).await?;
        let mut purge_supported = true;
        let mut start = ns.start_key();
        loop {
            let q = query_string([
                ("startkey", json!(start).to_string()),
                ("endkey", json!(ns.end_key()).to_string()),
                ("inclusive_end", "false".into()),
                ("include_docs", "true".into()),
                ("conflicts", "true".into()),
                ("limit", CLEANUP_PAGE.to_string()),
            ]);
            let url = self.backend.db_url(&format!("/_all_docs{q}"));
            let (_, page) = self.backend.json(Method::GET, &url, None).await?;
            let rows = page["rows"].as_array().cloned().unwrap_or_default();
            let Some(last) = rows.last().and_then(|r| r["id"].as_str()) else {
                break;
            };
            // Resume strictly after the last id seen, so a document that could not be removed
            // is never retried forever.
            start = format!("{last}\u{0}");
            // Every leaf: the winner and each conflict.
            let mut leaves: Vec<(String, Vec<String>)> = Vec::new();
            for row in &rows {
                let (Some(id), Some(rev)) = (row["id"].as_str(), row["value"]["rev"].as_str())
                else {
                    continue;
                };
                let mut revs = vec![rev.to_owned()];
                if let Some(c) = row["doc"]["_conflicts"].as_array() {
                    revs.extend(c.iter().filter_map(Value::as_str).map(String::from));
                }
                leaves.push((id.to_owned(), revs));
            }
            if purge_supported {
                let body: serde_json::Map<String, Value> = leaves
                    .iter()
                    .map(|(id, revs)| (id.clone(), json!(revs)))
                    .collect();
                let url = self.backend.db_url("/_purge");
                match self
                    .backend
                    .json(Method::POST, &url, Some(&Value::Object(body)))
                    .await
                {
                    Ok(_) => {
                        removed += leaves.len();
                        continue;
                    }
                    Err(e) if e.status().is_client_error() || e.status().as_u16() == 501 => {
                        purge_supported = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            let docs: Vec<Value> = leaves
                .iter()
                .flat_map(|(id, revs)| {
                    revs.iter()
                        .map(move |r| json!({"_id": id, "_rev": r, "_deleted": true}))
                })
                .collect();
            let url = self.backend.db_url("/_bulk_docs");
            self.backend
                .json(Method::POST, &url, Some(&json!({ "docs": docs })))
                .await?;
            removed += leaves.len();
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_fit_the_partition_alphabet() {
        let e = new_epoch();
        assert_eq!(e.len(), 10);
        assert!(e
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(new_epoch(), new_epoch());
    }
}
