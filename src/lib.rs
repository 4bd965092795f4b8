//! couchgate: a CouchDB-compatible authenticating replication proxy.
//!
//! Clients (PouchDB, CouchDB's replicator) sync with a *virtual per-user database*; couchgate
//! authenticates every request, rewrites document ids into the caller's namespace inside one
//! shared backing database, and answers as if the user owned a database of their own.
//!
//! Map of the crate, in the order a request meets it:
//! - [`server`]: accepts connections (TCP or TLS), caps them, shuts down gracefully;
//!   [`conns`]: what each connection is doing, its header-read and idle timeouts, shedding.
//! - [`proxy`]: the one request entry point, `Proxy::handle`; CORS; errors become responses.
//! - [`routing`]: pure `method + path -> Route`.
//! - [`auth`]: credentials (bearer JWTs from static keys or JWKS URLs, session cookies, Basic
//!   auth checked by the backend), failure limits, and the service and read-only roles.
//! - [`handlers`]: one module per CouchDB endpoint family (`changes`, `all_docs`, `bulk_docs`, ...).
//! - [`namespace`]: pure id encoding (user, virtual db, client id) <-> backing `_id`, and the
//!   JSON rewriting of responses.
//! - [`changes_index`], [`changes_follower`]: the per-namespace changes index and the one
//!   upstream feed reader that maintains it; [`changes_filter`]: the filter-the-feed fallback.
//! - [`vdb`]: the life cycle of virtual databases (their metadata documents and epochs).
//! - [`seq`]: the opaque sequence tokens couchgate hands to clients.
//! - [`backend`]: the pooled HTTP client towards CouchDB.
//! - [`validate`]: CouchDB's shape checks of written documents and of revision parameters;
//!   [`multipart`]: `multipart/related` document bodies, parsed whole and rebuilt.
//! - [`json`]: JSON parsing with CouchDB's nesting limits (documents nest deeper than serde's default).
//! - [`mango`]: Mango selectors, normalised and matched as CouchDB does (`filter=_selector`).
//! - [`error`]: the one error type, mapped to CouchDB's `{"error","reason"}` bodies.
//! - [`config`]: command line, environment and TOML configuration.
//! - [`devbackend`]: demo mode, a local PouchDB Server when no CouchDB URL is configured.

pub mod access_log;
pub mod auth;
pub mod backend;
pub mod body;
pub mod changes;
pub mod config;
pub mod conns;
pub mod cors;
pub mod devbackend;
pub mod error;
pub mod handlers;
pub mod json;
pub mod mango;
pub mod multipart;
pub mod namespace;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod state;
pub mod tls;
pub mod validate;
pub mod vdb;

pub use config::Config;
pub use error::{Error, Result};
pub use proxy::Proxy;
