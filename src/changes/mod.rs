//! The changes machinery: everything behind `_changes`, `update_seq` and the per-namespace
//! document counts.
//!
//! - [`index`]: the per-namespace changes index on disk (one entry per document, numbered in
//!   the namespace's own history);
//! - [`follower`]: the one upstream reader of the shared database's feed that fills it, and
//!   read-your-writes;
//! - [`positions`]: the `N-opaque` sequence tokens clients see;
//! - [`feed`]: a namespace's feed framed as normal, longpoll, continuous or eventsource;
//! - [`select`]: `filter=_selector`, Mango selectors over the revisions a batch lists.
//!
//! [`Changes`] is the handle the rest of couchgate holds. Handlers parse requests
//! (`handlers::changes`) and ask it; it depends on the backend client and the namespace codec,
//! never on handlers.

pub mod feed;
pub mod follower;
pub mod index;
pub mod positions;
pub mod select;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use follower::Follower;
use index::ChangesIndex;
use positions::{SeqCodec, Since};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for the index to hold this instance's writes to its namespace.
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// The changes subsystem of one instance.
#[derive(Debug)]
pub struct Changes {
    pub index: Arc<ChangesIndex>,
    follower: Arc<Follower>,
    codec: SeqCodec,
    backend: Backend,
    /// How long `_changes` waits for an index built for the first time.
    ready_wait: Duration,
}

/// The index file of a backing database in `data_dir`: named by a digest of the database's
/// URL (credentials are not part of it), so one directory serves several backends.
pub fn index_path(data_dir: &Path, source: &str) -> PathBuf {
    let digest = Sha256::digest(source.as_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    data_dir.join(format!("index-{name}.redb"))
}

impl Changes {
    /// The codec of this instance's opaque tokens (sequences, and Mango bookmarks).
    pub fn codec(&self) -> &SeqCodec {
        &self.codec
    }

    /// Opens the index in `data_dir` and starts following the backend (so this runs inside a
    /// tokio runtime).
    pub fn start(
        backend: Backend,
        data_dir: &Path,
        cache_bytes: usize,
        secret: &[u8],
        ready_wait: Duration,
    ) -> Result<Changes> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let source = backend.db_url("");
        let path = index_path(data_dir, &source);
        let index = Arc::new(ChangesIndex::open(&path, &source, cache_bytes)?);
        let (namespaces, docs) = index.size()?;
        tracing::info!(path = %path.display(), opened = ?index.opened(), namespaces, docs, "changes index opened");
        let follower = Follower::start(backend.clone(), Arc::clone(&index));
        Ok(Changes {
            index,
            follower,
            codec: SeqCodec::new(secret),
            backend,
            ready_wait,
        })
    }

    /// Records a write acknowledged to the client, for read-your-writes.
    pub fn note_write(&self, ns: &Namespace, written: &[(String, String)]) {
        self.follower.note_write(ns.partition(), written);
    }

    /// Whether the index holds every write acknowledged through this instance to `ns` (waiting
    /// a bounded time for it).
    pub async fn synced(&self, ns: &Namespace) -> bool {
        self.follower.wait_synced(ns.partition(), SYNC_WAIT).await
    }

    /// Waits until the index may answer `_changes` for `ns`: built once and holding this
    /// instance's writes. A first build that takes longer than the configured wait is a 503
    /// the client retries; answering from a half-built index would end a one-shot
    /// replication with half the documents.
    async fn ready_for(&self, ns: &Namespace) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.ready_wait;
        while !self.index.is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotReady(
                    "the changes index is still being built; retry shortly".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Read-your-writes: an answer without a write this instance acknowledged would be a
        // lie the client cannot detect, so a follower that cannot catch up is a 503.
        if self.synced(ns).await {
            Ok(())
        } else {
            Err(Error::NotReady(
                "the changes index has not caught up with the backend; retry shortly".into(),
            ))
        }
    }

    /// Runs `f` with the index on the blocking pool (index reads touch the disk).
    async fn with_index<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ChangesIndex) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let index = Arc::clone(&self.index);
        tokio::task::spawn_blocking(move || f(&index))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// The namespace's current position as a token (`update_seq`).
    pub async fn update_seq(&self, ns: &Namespace) -> Result<String> {
        let p = ns.partition().to_owned();
        let pos = self.with_index(move |ix| ix.position(&p)).await?;
        Ok(self.codec.seal(ns.partition(), pos))
    }

    /// The namespace's live and deleted document counts, when the index is complete for it.
    pub async fn counts(&self, ns: &Namespace) -> Result<Option<(u64, u64)>> {
        if !self.index.is_ready() || !self.synced(ns).await {
            return Ok(None);
        }
        let p = ns.partition().to_owned();
        self.with_index(move |ix| ix.counts(&p)).await.map(Some)
    }

    /// How many live documents of `ns` sort before the client id `key`, when the index is
    /// complete for it.
    pub async fn live_below(&self, ns: &Namespace, key: &str) -> Result<Option<u64>> {
        if !self.index.is_ready() || !self.synced(ns).await {
            return Ok(None);
        }
        let (p, key) = (ns.partition().to_owned(), key.to_owned());
        self.with_index(move |ix| ix.live_below(&p, &key))
            .await
            .map(Some)
    }

    /// Waits until the index holds every change of `ns` the backend had when this was called:
    /// it has been built, and the follower has read the feed to its end since. For work that
    /// must see the whole namespace (removing a deleted database); bounded by `wait`.
    pub async fn settle(&self, ns: &Namespace, wait: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        let late =
            || Error::NotReady("the changes index has not caught up with the backend".into());
        while !self.index.is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return Err(late());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.note_write(ns, &[]);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if self.follower.wait_synced(ns.partition(), left).await {
            Ok(())
        } else {
            Err(late())
        }
    }

    /// The namespace's documents after position `after`, at most `limit`, with every leaf
    /// revision: what removing a deleted database works through.
    pub async fn documents(
        &self,
        ns: &Namespace,
        after: u64,
        limit: usize,
    ) -> Result<Vec<index::Change>> {
        let p = ns.partition().to_owned();
        self.with_index(move |ix| ix.query(&p, after, limit, false, None))
            .await
            .map(|q| q.rows)
    }

    /// Forgets a namespace whose virtual database was deleted.
    pub async fn forget(&self, ns: &Namespace) -> Result<()> {
        let p = ns.partition().to_owned();
        self.with_index(move |ix| ix.forget(&p)).await
    }

    /// A client's `since` in `ns`; `None` when it is no sequence of any kind.
    pub fn since(&self, ns: &Namespace, raw: &str) -> Option<Since> {
        self.codec.since(ns.partition(), raw)
    }

    /// Marks the index closed cleanly; call once serving has stopped.
    pub async fn close(&self) -> Result<()> {
        self.with_index(|ix| ix.close()).await
    }
}
