//! Virtual databases: their existence, their current epoch, creation and deletion.
//!
//! Each (user, virtual db) has one metadata document in the backing database,
//! `couchgate:db.{enc(user)}.{enc(db)}` (see [`crate::namespace::meta_id`]), holding the *epoch*
//! of its current incarnation, if it exists, and the epochs of deleted incarnations whose
//! documents are still to be removed (`dropped`). The epoch is part of every backing id of that
//! incarnation, so `DELETE /{db}` followed by `PUT /{db}` starts from an empty namespace at
//! once: nothing the old incarnation wrote, tombstones and `_changes` rows included, can be seen
//! through the new one.
//!
//! # Deletion
//! `DELETE /{db}` is one write of the metadata document: the epoch moves to `dropped`. From
//! then on the incarnation is invisible, and its removal from the backing database is
//! retry-safe: a background task ([`Registry::delete`]) removes every backing document of the
//! namespace and then the epoch from `dropped`. When couchgate stops before that is done, the
//! next start ([`Registry::resume_cleanup`]) or the next `PUT`/`DELETE` of the same database
//! finishes it. Removal means:
//! - `_local` documents: found by listing (`_local_docs` over the namespace's key range) where
//!   the backend has it (CouchDB), and from the namespace's recorded list of `_local` ids
//!   (`_local/{partition}`, see [`Registry::note_local`]); each is deleted, which removes a
//!   `_local` document entirely, then the namespace's list of Mango indexes, and the list
//!   last;
//! - every other document, live or deleted, every leaf revision: listed by the changes index
//!   (brought past the deletion first, so it holds every acknowledged write; the cost is the
//!   namespace's own documents, and no document body is read, so none can stop the cleanup),
//!   then purged
//!   (`_purge`, CouchDB) or, where the backend has no purge (PouchDB Server), each leaf
//!   overwritten by a body-less tombstone and the database compacted, so no body of the
//!   namespace's documents, tombstones included, remains: only body-less tombstones of its
//!   ids.
//!
//! Lookups are cached for [`CACHE_TTL`]. Another couchgate instance that deletes and re-creates
//! the same virtual database is therefore seen up to that long later; writes in that window land
//! in the old, invisible incarnation. Deletion through the instance itself is seen at once.

use crate::backend::{encode_doc_id, query_string, Backend};
use crate::changes::Changes;
use crate::error::{Error, Result};
use crate::namespace::{meta_id, Namespace, META_PARTITION};
use dashmap::DashMap;
use http::{Method, StatusCode};
use rand::Rng;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a positive lookup is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Most cached lookups; past this the cache is emptied.
const CACHE_MAX: usize = 100_000;
/// Documents removed per backend request when a virtual database is deleted.
const CLEANUP_PAGE: usize = 500;
/// How long removing a deleted database waits for the changes index to hold all its writes.
const SETTLE_WAIT: Duration = Duration::from_secs(600);
/// Documents purged per request (CouchDB's default `max_document_id_number`).
const PURGE_BATCH: usize = 100;
/// Attempts at an update of a database record that others update at the same time.
const META_RETRIES: usize = 5;

/// What a metadata document says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Meta {
    rev: Option<String>,
    /// The current incarnation, if the database exists.
    epoch: Option<String>,
    /// Deleted incarnations whose documents may still be in the backing database.
    dropped: Vec<String>,
}

impl Meta {
    fn of(doc: &Value) -> Meta {
        Meta {
            rev: doc["_rev"].as_str().map(String::from),
            epoch: doc["epoch"].as_str().map(String::from),
            dropped: crate::json::strings(&doc["dropped"]),
        }
    }

    fn doc(&self, user: &str, db: &str) -> Value {
        let mut doc = json!({"type": "couchgate.database", "user": user, "db": db});
        if let Some(rev) = &self.rev {
            doc["_rev"] = json!(rev);
        }
        if let Some(epoch) = &self.epoch {
            doc["epoch"] = json!(epoch);
        }
        if !self.dropped.is_empty() {
            doc["dropped"] = json!(self.dropped);
        }
        doc
    }
}

#[derive(Debug)]
pub struct Registry {
    backend: Backend,
    /// Lists a deleted namespace's documents (see [`Registry::remove_docs`]).
    changes: Arc<Changes>,
    cache: DashMap<(String, String), (Namespace, Instant)>,
    /// `_local` ids known to be listed in their namespace's local-id list (see `note_local`).
    locals: DashMap<String, HashSet<String>>,
    /// Databases whose cleanup runs here, and whether it must run once more.
    cleaning: DashMap<(String, String), bool>,
}

fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Registry {
    pub fn new(backend: Backend, changes: Arc<Changes>) -> Self {
        Registry {
            backend,
            changes,
            cache: DashMap::new(),
            locals: DashMap::new(),
            cleaning: DashMap::new(),
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
        // A record without an epoch: the database was deleted, its cleanup is not done.
        let Some(epoch) = Meta::of(&meta).epoch else {
            self.cache.remove(&key);
            return Ok(None);
        };
        let ns = Namespace::new(user, db, &epoch);
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
    pub async fn create(self: &Arc<Self>, user: &str, db: &str) -> Result<Namespace> {
        let exists = || {
            Error::FileExists("The database could not be created, the file already exists.".into())
        };
        // A conflict is another writer of the record: a concurrent create (then it exists)
        // or the cleanup of an earlier incarnation finishing (then try again).
        let mut written = None;
        for _ in 0..META_RETRIES {
            let current = self.read_meta(user, db).await?;
            let current = current.as_ref().map(Meta::of).unwrap_or_default();
            if current.epoch.is_some() {
                return Err(exists());
            }
            let next = Meta {
                epoch: Some(new_epoch()),
                ..current
            };
            match self.write_meta(user, db, &next).await {
                Ok(()) => {
                    written = Some(next);
                    break;
                }
                Err(e) if e.status() == StatusCode::CONFLICT => continue,
                Err(e) => return Err(e),
            }
        }
        let Some(next) = written else {
            return Err(Error::Conflict(
                "too many concurrent updates of the database record".into(),
            ));
        };
        let epoch = next.epoch.clone().unwrap_or_default();
        if !next.dropped.is_empty() {
            // An earlier incarnation's cleanup did not finish.
            self.clean(user, db);
        }
        let ns = Namespace::new(user, db, &epoch);
        self.cache.insert(
            (user.to_owned(), db.to_owned()),
            (ns.clone(), Instant::now()),
        );
        Ok(ns)
    }

    /// Deletes `user`'s `db`: the namespace disappears at once (its epoch moves to the
    /// record's `dropped` list in one write), its documents leave the backing database in the
    /// background. Returns the namespace that was removed.
    pub async fn delete(self: &Arc<Self>, user: &str, db: &str) -> Result<Namespace> {
        let missing = || Error::not_found("Database does not exist.");
        for _ in 0..META_RETRIES {
            let meta = self.read_meta(user, db).await?.ok_or_else(missing)?;
            let mut meta = Meta::of(&meta);
            let epoch = meta.epoch.take().ok_or_else(missing)?;
            meta.dropped.push(epoch.clone());
            match self.write_meta(user, db, &meta).await {
                Ok(()) => {}
                Err(e) if e.status() == StatusCode::CONFLICT => continue,
                Err(e) => return Err(e),
            }
            self.cache.remove(&(user.to_owned(), db.to_owned()));
            self.clean(user, db);
            return Ok(Namespace::new(user, db, &epoch));
        }
        Err(Error::Conflict(
            "too many concurrent updates of the database record".into(),
        ))
    }

    /// Writes a metadata document (over the revision it was read at).
    async fn write_meta(&self, user: &str, db: &str, meta: &Meta) -> Result<()> {
        let url = self.backend.db_url(&Self::meta_url(user, db));
        self.backend
            .json(Method::PUT, &url, Some(&meta.doc(user, db)))
            .await
            .map(|_| ())
    }

    /// Finds the databases whose deletion did not finish (couchgate stopped first) and finishes
    /// it, one database after the other, in the background. Inside a tokio runtime.
    pub fn resume_cleanup(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match this.unfinished().await {
                Ok(pending) => {
                    for (user, db) in pending {
                        if this.claim(&user, &db) {
                            this.run_cleanup(user, db).await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e.reason(), "cannot list unfinished database deletions")
                }
            }
        });
    }

    /// The (user, db) of every metadata document with dropped epochs, read page by page.
    async fn unfinished(&self) -> Result<Vec<(String, String)>> {
        let mut pending = Vec::new();
        let end = format!("{META_PARTITION}:db/");
        let mut start = format!("{META_PARTITION}:db.");
        loop {
            let q = query_string([
                ("startkey", json!(start).to_string()),
                ("endkey", json!(end).to_string()),
                ("inclusive_end", "false".into()),
                ("include_docs", "true".into()),
                ("limit", CLEANUP_PAGE.to_string()),
            ]);
            let url = self.backend.db_url(&format!("/_all_docs{q}"));
            let (_, page) = self.backend.json(Method::GET, &url, None).await?;
            let rows = page["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            for doc in rows.iter().map(|r| &r["doc"]) {
                if let (Some(user), Some(db)) = (doc["user"].as_str(), doc["db"].as_str()) {
                    if !Meta::of(doc).dropped.is_empty() {
                        pending.push((user.to_owned(), db.to_owned()));
                    }
                }
            }
            match rows.last().and_then(|r| r["id"].as_str()) {
                Some(last) if rows.len() == CLEANUP_PAGE => start = format!("{last}\u{0}"),
                _ => return Ok(pending),
            }
        }
    }

    /// Makes sure a cleanup of `user`'s `db` runs: starts one, or tells the running one to
    /// look at the record once more when it is done.
    fn clean(self: &Arc<Self>, user: &str, db: &str) {
        if !self.claim(user, db) {
            return;
        }
        let this = Arc::clone(self);
        let (user, db) = (user.to_owned(), db.to_owned());
        tokio::spawn(async move { this.run_cleanup(user, db).await });
    }

    /// Whether the caller is to run the cleanup of `user`'s `db`: `false` when one is running,
    /// which is then asked to run once more.
    fn claim(&self, user: &str, db: &str) -> bool {
        use dashmap::mapref::entry::Entry;
        match self.cleaning.entry((user.to_owned(), db.to_owned())) {
            Entry::Occupied(mut again) => {
                *again.get_mut() = true;
                false
            }
            Entry::Vacant(v) => {
                v.insert(false);
                true
            }
        }
    }

    /// Cleans up `user`'s `db` (claimed by [`claim`](Self::claim)) until nobody asks for
    /// another round. A failure is logged; the next start or deletion resumes the work.
    async fn run_cleanup(&self, user: String, db: String) {
        let key = (user, db);
        loop {
            if let Some(mut again) = self.cleaning.get_mut(&key) {
                *again = false;
            }
            match self.clean_dropped(&key.0, &key.1).await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(removed, "removed a deleted virtual database's documents")
                }
                Err(e) => tracing::warn!(
                    error = %e.reason(),
                    "cleaning up a deleted virtual database failed; its documents stay \
                     invisible, and the next start or deletion resumes the cleanup"
                ),
            }
            if self.cleaning.remove_if(&key, |_, again| !*again).is_some() {
                return;
            }
        }
    }

    /// Removes the namespaces of every dropped epoch of `user`'s `db`, each one's epoch from
    /// the record once it is gone, and the record itself once nothing is left of the database.
    async fn clean_dropped(&self, user: &str, db: &str) -> Result<usize> {
        let mut removed = 0;
        loop {
            let Some(doc) = self.read_meta(user, db).await? else {
                return Ok(removed);
            };
            let meta = Meta::of(&doc);
            let Some(epoch) = meta.dropped.first().cloned() else {
                if meta.epoch.is_none() {
                    let url = self.backend.db_url(&format!(
                        "{}{}",
                        Self::meta_url(user, db),
                        query_string([("rev", meta.rev.unwrap_or_default())])
                    ));
                    match self.backend.json(Method::DELETE, &url, None).await {
                        // Re-created meanwhile: the record stays.
                        Err(e) if e.status() != StatusCode::CONFLICT => return Err(e),
                        _ => {}
                    }
                }
                return Ok(removed);
            };
            removed += self
                .remove_namespace(&Namespace::new(user, db, &epoch))
                .await?;
            self.undrop(user, db, &epoch).await?;
        }
    }

    /// Takes `epoch` off the record's `dropped` list.
    async fn undrop(&self, user: &str, db: &str, epoch: &str) -> Result<()> {
        for _ in 0..META_RETRIES {
            let Some(doc) = self.read_meta(user, db).await? else {
                return Ok(());
            };
            let mut meta = Meta::of(&doc);
            meta.dropped.retain(|e| e != epoch);
            match self.write_meta(user, db, &meta).await {
                Err(e) if e.status() == StatusCode::CONFLICT => continue,
                other => return other,
            }
        }
        Err(Error::Conflict(
            "too many concurrent updates of the database record".into(),
        ))
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

    /// Removes every document of a namespace from the backing database (see the module
    /// documentation); returns how many.
    async fn remove_namespace(&self, ns: &Namespace) -> Result<usize> {
        let locals = self.remove_locals(ns).await?;
        let docs = self.remove_docs(ns).await?;
        // The namespace's list of Mango indexes (the shared indexes stay for other users).
        self.remove_local(&ns.mango_indexes_id(), None).await?;
        // The list goes last: until then, a resumed cleanup still finds what it names.
        self.remove_local(&format!("_local/{}", ns.partition()), None)
            .await?;
        Ok(locals + docs)
    }

    /// Removes the namespace's `_local` documents: those the backend lists in the namespace's
    /// range, where it can, and those recorded in its list. Returns how many.
    async fn remove_locals(&self, ns: &Namespace) -> Result<usize> {
        self.locals.remove(ns.partition());
        let mut found: Vec<(String, Option<String>)> = Vec::new();
        let url = self.local_list_url(ns);
        match self.backend.json(Method::GET, &url, None).await {
            Ok((_, list)) => found.extend(
                list["ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|id| ns.encode_id(id).ok())
                    .map(|backing| (backing, None)),
            ),
            Err(e) if e.status() == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
        if self.backend.is_couchdb().await {
            found.extend(self.list_locals(ns).await?);
        }
        let mut seen = HashSet::new();
        let mut removed = 0;
        for (backing, rev) in found {
            if seen.insert(backing.clone()) && self.remove_local(&backing, rev).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The namespace's `_local` documents and revisions, from `_local_docs` (CouchDB 2.2 on);
    /// none when the backend has no such listing.
    async fn list_locals(&self, ns: &Namespace) -> Result<Vec<(String, Option<String>)>> {
        let lo = format!("_local/{}:", ns.partition());
        let end = format!("_local/{};", ns.partition());
        let mut start = lo.clone();
        let mut found = Vec::new();
        loop {
            let q = query_string([
                ("startkey", json!(start).to_string()),
                ("endkey", json!(end).to_string()),
                ("inclusive_end", "false".into()),
                ("limit", CLEANUP_PAGE.to_string()),
            ]);
            let url = self.backend.db_url(&format!("/_local_docs{q}"));
            let page = match self.backend.json(Method::GET, &url, None).await {
                Ok((_, page)) => page,
                Err(e) if e.status().is_client_error() => return Ok(found),
                Err(e) => return Err(e),
            };
            let rows = page["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            for row in rows {
                if let Some(id) = row["id"].as_str().filter(|id| id.starts_with(&lo)) {
                    let rev = row["value"]["rev"].as_str().map(String::from);
                    found.push((id.to_owned(), rev));
                }
            }
            match rows.last().and_then(|r| r["id"].as_str()) {
                Some(last) if rows.len() == CLEANUP_PAGE => start = format!("{last}\u{0}"),
                _ => return Ok(found),
            }
        }
    }

    /// Deletes the `_local` document `backing` (at `rev`, else at the revision it has); `false`
    /// when there is none.
    async fn remove_local(&self, backing: &str, rev: Option<String>) -> Result<bool> {
        let url = self.backend.db_url(&format!("/{}", encode_doc_id(backing)));
        let rev = match rev {
            Some(rev) => rev,
            None => match self.backend.json(Method::GET, &url, None).await {
                Ok((_, doc)) => doc["_rev"].as_str().unwrap_or_default().to_owned(),
                Err(e) if e.status() == StatusCode::NOT_FOUND => return Ok(false),
                Err(e) => return Err(e),
            },
        };
        let del = format!("{url}{}", query_string([("rev", rev)]));
        match self.backend.json(Method::DELETE, &del, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == StatusCode::NOT_FOUND => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes every revision of the namespace's documents, live and deleted, as the changes
    /// index lists them (every leaf of every document), page by page; returns how many
    /// documents. The index is first brought past the deletion, so it holds every write the
    /// backend acknowledged before it; the cost is the namespace's own documents, whatever
    /// the shared database holds.
    async fn remove_docs(&self, ns: &Namespace) -> Result<usize> {
        self.changes.settle(ns, SETTLE_WAIT).await?;
        let mut purge = self.backend.is_couchdb().await;
        // Documents overwritten with tombstones by this run: the index files them again, later.
        let mut done: HashSet<String> = HashSet::new();
        let mut after = 0;
        let mut removed = 0;
        loop {
            let page = self.changes.documents(ns, after, CLEANUP_PAGE).await?;
            let full = page.len() == CLEANUP_PAGE;
            after = page.last().map_or(after, |c| c.n);
            let leaves: Vec<(String, Vec<String>)> = page
                .into_iter()
                .map(|c| (format!("{}:{}", ns.partition(), c.id), c.revs))
                .filter(|(id, revs)| !revs.is_empty() && !done.contains(id))
                .collect();
            removed += leaves.len();
            if purge {
                match self.purge(&leaves).await {
                    Ok(()) => {}
                    // Not allowed or not there: tombstones instead.
                    Err(e) if e.status().is_client_error() || e.status().as_u16() == 501 => {
                        purge = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !purge {
                self.tombstone(&leaves).await?;
                done.extend(leaves.into_iter().map(|(id, _)| id));
            }
            if !full {
                break;
            }
        }
        if !purge && removed > 0 {
            // The bodies the tombstones replaced are gone once the backend compacts.
            let url = self.backend.db_url("/_compact");
            self.backend
                .json(Method::POST, &url, Some(&json!({})))
                .await?;
        }
        // The tombstones just written are read back before the namespace is forgotten.
        self.changes.settle(ns, SETTLE_WAIT).await?;
        self.changes.forget(ns).await?;
        Ok(removed)
    }

    /// Purges every given leaf, in batches CouchDB accepts.
    async fn purge(&self, leaves: &[(String, Vec<String>)]) -> Result<()> {
        let url = self.backend.db_url("/_purge");
        for batch in leaves.chunks(PURGE_BATCH) {
            let body: Map<String, Value> = batch
                .iter()
                .map(|(id, revs)| (id.clone(), json!(revs)))
                .collect();
            self.backend
                .json(Method::POST, &url, Some(&Value::Object(body)))
                .await?;
        }
        Ok(())
    }

    /// Writes a body-less tombstone over every given leaf. One request per round in which
    /// each id appears once (several leaves of one document go in later rounds).
    async fn tombstone(&self, leaves: &[(String, Vec<String>)]) -> Result<()> {
        let url = self.backend.db_url("/_bulk_docs");
        let rounds = leaves.iter().map(|(_, revs)| revs.len()).max().unwrap_or(0);
        for round in 0..rounds {
            let docs: Vec<Value> = leaves
                .iter()
                .filter_map(|(id, revs)| {
                    let rev = revs.get(round)?;
                    Some(json!({"_id": id, "_rev": rev, "_deleted": true}))
                })
                .collect();
            self.backend
                .json(Method::POST, &url, Some(&json!({ "docs": docs })))
                .await?;
        }
        Ok(())
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

    #[test]
    fn records_keep_dropped_epochs() {
        let meta = Meta::of(&json!({"_rev": "2-a", "epoch": "e2", "dropped": ["e1"]}));
        assert_eq!(meta.epoch.as_deref(), Some("e2"));
        assert_eq!(meta.dropped, ["e1"]);
        let deleted = Meta {
            epoch: None,
            dropped: vec!["e1".into(), "e2".into()],
            ..meta
        };
        assert_eq!(
            deleted.doc("u", "d"),
            json!({"_rev": "2-a", "type": "couchgate.database", "user": "u", "db": "d",
                   "dropped": ["e1", "e2"]})
        );
        // Records written before `dropped` existed read as nothing to clean.
        assert_eq!(
            Meta::of(&json!({"epoch": "e"})).dropped,
            Vec::<String>::new()
        );
    }
}
