//! Routing: a request path to the [`Route`] that serves it. Pure; no I/O.
//!
//! Paths are split on `/` first and each segment is percent-decoded exactly once afterwards, so
//! `%2F` inside a segment is data (`/db/a%2Fb` is the document `a/b`), `%252F` is the literal
//! text `%2F`, and `..` is an ordinary id, never a path step. Only the `_`-prefixed endpoints
//! named here are served; every other `_` name answers an error and never reaches the backend.

use crate::error::{Error, Result};
use percent_encoding::percent_decode_str;

/// Database endpoints couchgate serves for a virtual database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbEndpoint {
    AllDocs,
    Changes,
    BulkDocs,
    BulkGet,
    RevsDiff,
    MissingRevs,
    EnsureFullCommit,
    /// `_compact` and `_view_cleanup`: acknowledged, nothing done (the shared database is the
    /// operator's to compact).
    Compact,
    ViewCleanup,
    /// `_find` and `_explain`: Mango queries.
    Find,
    Explain,
}

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`
    Welcome,
    /// `/_up`
    Up,
    /// `/_session`
    Session,
    /// `/_uuids`
    Uuids,
    /// A server-level endpoint couchgate refuses, with the error it answers.
    RefusedServer(Refusal),
    /// `/{db}`
    Db { db: String },
    /// `/{db}/_all_docs`, `/{db}/_changes`, ...
    DbEndpoint { db: String, endpoint: DbEndpoint },
    /// A database-level `_` endpoint couchgate refuses.
    RefusedDb { db: String, refusal: Refusal },
    /// `/{db}/_local/{id}`; `id` is the client id including `_local/`.
    Local { db: String, id: String },
    /// `/{db}/{id}` and `/{db}/_design/{name}`.
    Doc { db: String, id: String },
    /// `/{db}/_compact/{design doc name}`.
    CompactDesign { db: String, name: String },
    /// `/{db}/_index` and `/{db}/_index/{ddoc}/json/{name}`: Mango indexes; `rest` holds the
    /// decoded segments after `_index`.
    Index { db: String, rest: Vec<String> },
    /// `/{db}/{id}/{attachment name, may contain /}`.
    Attachment {
        db: String,
        id: String,
        name: String,
    },
}

/// Why an endpoint is refused; becomes the matching CouchDB error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403: exists in CouchDB but is an administrator's or a shared-database matter.
    Forbidden(&'static str),
    /// 501: a per-user version is not implemented.
    NotImplemented(&'static str),
    /// 404: not a CouchDB endpoint.
    NotFound,
    /// 400: an id starting with `_` that CouchDB reserves.
    IllegalDocId,
    /// A POST-only endpoint refused as `refusal` (other methods get CouchDB's 405).
    PostOnly(&'static Refusal),
    /// A name CouchDB does not accept for a database: 400 when creating it, else 404.
    BadDbName(String),
}

impl Refusal {
    pub fn into_error(self, what: &str, method: &http::Method) -> Error {
        match self {
            Refusal::Forbidden(why) => Error::Forbidden(format!("{what}: {why}")),
            Refusal::NotImplemented(why) => Error::NotImplemented(format!("{what}: {why}")),
            Refusal::NotFound => Error::NotFound("Database does not exist.".into()),
            Refusal::IllegalDocId => {
                Error::IllegalDocId("Only reserved document ids may start with underscore.".into())
            }
            Refusal::PostOnly(_) if method != http::Method::POST => {
                Error::MethodNotAllowed("Only POST allowed".into())
            }
            Refusal::PostOnly(inner) => inner.clone().into_error(what, method),
            Refusal::BadDbName(name) if method == http::Method::PUT => validate_db_name(&name)
                .err()
                .unwrap_or_else(|| Error::Internal("a refused database name is valid".into())),
            Refusal::BadDbName(_) => Error::NotFound("Database does not exist.".into()),
        }
    }
}

const ADMIN_ONLY: &str = "an administrator's endpoint, not exposed through couchgate";
const SHARED_DB: &str = "acts on the shared backing database and is not exposed through couchgate";

fn server_refusal(name: &str) -> Refusal {
    match name {
        "_all_dbs" | "_dbs_info" => {
            Refusal::NotImplemented("listing virtual databases is not supported")
        }
        "_users" | "_replicator" | "_global_changes" | "_config" | "_node" | "_replicate"
        | "_active_tasks" | "_scheduler" | "_membership" | "_cluster_setup" | "_reshard"
        | "_stats" | "_system" | "_db_updates" | "_restart" | "_search_analyze" => {
            Refusal::Forbidden(ADMIN_ONLY)
        }
        _ => Refusal::NotFound,
    }
}

const NOT_ON_VIRTUAL: &str = "not supported on virtual databases";

/// The refusal of a database-level `_` endpoint couchgate does not serve, `None` for a name
/// that is no CouchDB endpoint (it is then an illegal document id).
fn db_refusal(name: &str) -> Option<Refusal> {
    Some(match name {
        "_purge" => Refusal::PostOnly(&Refusal::Forbidden(SHARED_DB)),
        "_security"
        | "_purged_infos_limit"
        | "_revs_limit"
        | "_shards"
        | "_sync_shards"
        | "_partition" => Refusal::Forbidden(SHARED_DB),
        "_all_docs_queries" | "_search_cleanup" | "_nouveau_cleanup" => {
            Refusal::PostOnly(&Refusal::NotImplemented(NOT_ON_VIRTUAL))
        }
        "_design_docs" | "_local_docs" | "_temp_view" => Refusal::NotImplemented(NOT_ON_VIRTUAL),
        _ => return None,
    })
}

/// Checks a database name by CouchDB's rule: `^[a-z][a-z0-9_$()+/-]*$`, at most 238 bytes.
pub fn validate_db_name(name: &str) -> Result<()> {
    let ok = name.len() <= 238
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_$()+-/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::IllegalDatabaseName(format!(
            "Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the \
             characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."
        )))
    }
}

/// Decodes one path segment. A `%` not followed by two hex digits is CouchDB's 400; escapes
/// that decode to something other than UTF-8 name nothing that can exist (404).
fn decode(segment: &str) -> Result<String> {
    check_escapes(segment)?;
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::not_found("missing"))
}

/// CouchDB's 400 for a `%` not followed by two hex digits, in a path or a query string.
pub fn check_escapes(text: &str) -> Result<()> {
    let b = text.as_bytes();
    let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
    match text
        .match_indices('%')
        .all(|(i, _)| hex(i + 1) && hex(i + 2))
    {
        true => Ok(()),
        false => Err(Error::bad_request("invalid_url_encoding")),
    }
}

/// Routes a raw request path (without the query string).
pub fn route(path: &str) -> Result<Route> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Ok(Route::Welcome);
    }
    let raw: Vec<&str> = path.split('/').collect();
    if raw.iter().any(|s| s.is_empty()) {
        return Err(Error::bad_request("empty path segment"));
    }
    let first = decode(raw[0])?;
    if first.starts_with('_') {
        if raw.len() == 1 {
            match first.as_str() {
                "_up" => return Ok(Route::Up),
                "_session" => return Ok(Route::Session),
                "_uuids" => return Ok(Route::Uuids),
                _ => {}
            }
        }
        return Ok(Route::RefusedServer(server_refusal(&first)));
    }
    if validate_db_name(&first).is_err() {
        return Ok(Route::RefusedServer(Refusal::BadDbName(first)));
    }
    let db = first;
    let Some(&second_raw) = raw.get(1) else {
        return Ok(Route::Db { db });
    };
    let second = decode(second_raw)?;
    let rest = &raw[2..];

    // Work out the document id and how many segments it used.
    let (id, after) = match second.as_str() {
        // Without a name these are (illegal) ids, answered by the document handlers.
        "_design" | "_local" if rest.is_empty() => (second, rest),
        "_design" | "_local" => (format!("{second}/{}", decode(rest[0])?), &rest[1..]),
        "_compact" if rest.len() == 1 => {
            let name = decode(rest[0])?;
            return Ok(Route::CompactDesign { db, name });
        }
        "_index" => {
            let rest = rest.iter().map(|s| decode(s)).collect::<Result<Vec<_>>>()?;
            return Ok(Route::Index { db, rest });
        }
        s if s.starts_with('_') && !s.starts_with("_design/") && !s.starts_with("_local/") => {
            let endpoint = match s {
                _ if !rest.is_empty() => None,
                "_all_docs" => Some(DbEndpoint::AllDocs),
                "_changes" => Some(DbEndpoint::Changes),
                "_bulk_docs" => Some(DbEndpoint::BulkDocs),
                "_bulk_get" => Some(DbEndpoint::BulkGet),
                "_revs_diff" => Some(DbEndpoint::RevsDiff),
                "_missing_revs" => Some(DbEndpoint::MissingRevs),
                "_ensure_full_commit" => Some(DbEndpoint::EnsureFullCommit),
                "_compact" => Some(DbEndpoint::Compact),
                "_view_cleanup" => Some(DbEndpoint::ViewCleanup),
                "_find" => Some(DbEndpoint::Find),
                "_explain" => Some(DbEndpoint::Explain),
                _ => None,
            };
            let Some(endpoint) = endpoint else {
                return Ok(match db_refusal(s) {
                    Some(refusal) => Route::RefusedDb { db, refusal },
                    // Not an endpoint: an id CouchDB refuses, answered like one.
                    None if rest.is_empty() => Route::Doc { db, id: second },
                    None => Route::RefusedDb {
                        db,
                        refusal: Refusal::IllegalDocId,
                    },
                });
            };
            return Ok(Route::DbEndpoint { db, endpoint });
        }
        _ => (second, rest),
    };

    if id == "_local" || id.starts_with("_local/") {
        if !after.is_empty() {
            return Err(Error::bad_request(
                "_local documents do not accept attachments.",
            ));
        }
        return Ok(Route::Local { db, id });
    }
    if after.is_empty() {
        return Ok(Route::Doc { db, id });
    }
    let name = after
        .iter()
        .map(|s| decode(s))
        .collect::<Result<Vec<_>>>()?
        .join("/");
    if id.starts_with("_design/") && name.starts_with('_') {
        return Ok(Route::RefusedDb {
            db,
            refusal: Refusal::NotImplemented("design documents are stored as data and never run"),
        });
    }
    Ok(Route::Attachment { db, id, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(db: &str, id: &str) -> Route {
        Route::Doc {
            db: db.into(),
            id: id.into(),
        }
    }

    #[test]
    fn table() {
        let att = |db: &str, id: &str, name: &str| Route::Attachment {
            db: db.into(),
            id: id.into(),
            name: name.into(),
        };
        let ep = |endpoint| Route::DbEndpoint {
            db: "db".into(),
            endpoint,
        };
        let cases: Vec<(&str, Route)> = vec![
            ("/", Route::Welcome),
            ("/_up", Route::Up),
            ("/_session", Route::Session),
            ("/_uuids", Route::Uuids),
            ("/db", Route::Db { db: "db".into() }),
            ("/db/", Route::Db { db: "db".into() }),
            ("/a%2Fb", Route::Db { db: "a/b".into() }),
            ("/db/_all_docs", ep(DbEndpoint::AllDocs)),
            ("/db/_changes", ep(DbEndpoint::Changes)),
            ("/db/_bulk_docs", ep(DbEndpoint::BulkDocs)),
            ("/db/_bulk_get", ep(DbEndpoint::BulkGet)),
            ("/db/_revs_diff", ep(DbEndpoint::RevsDiff)),
            ("/db/_ensure_full_commit", ep(DbEndpoint::EnsureFullCommit)),
            ("/db/x", doc("db", "x")),
            ("/db/a%2Fb", doc("db", "a/b")),
            ("/db/a%252Fb", doc("db", "a%2Fb")),
            ("/db/..", doc("db", "..")),
            ("/db/_design/v", doc("db", "_design/v")),
            ("/db/_design%2Fv", doc("db", "_design/v")),
            (
                "/db/_local/c",
                Route::Local {
                    db: "db".into(),
                    id: "_local/c".into(),
                },
            ),
            (
                "/db/_local%2Fc",
                Route::Local {
                    db: "db".into(),
                    id: "_local/c".into(),
                },
            ),
            ("/db/x/a.txt", att("db", "x", "a.txt")),
            ("/db/x/dir/a.txt", att("db", "x", "dir/a.txt")),
            ("/db/x/dir%2Fa.txt", att("db", "x", "dir/a.txt")),
            ("/db/_design/v/logo.png", att("db", "_design/v", "logo.png")),
            ("/db/_missing_revs", ep(DbEndpoint::MissingRevs)),
            ("/db/_compact", ep(DbEndpoint::Compact)),
            ("/db/_view_cleanup", ep(DbEndpoint::ViewCleanup)),
            (
                "/db/_compact/app",
                Route::CompactDesign {
                    db: "db".into(),
                    name: "app".into(),
                },
            ),
            ("/db/_find", ep(DbEndpoint::Find)),
            ("/db/_explain", ep(DbEndpoint::Explain)),
            (
                "/db/_index",
                Route::Index {
                    db: "db".into(),
                    rest: vec![],
                },
            ),
            (
                "/db/_index/_design/a%2Fb/json/n",
                Route::Index {
                    db: "db".into(),
                    rest: vec!["_design".into(), "a/b".into(), "json".into(), "n".into()],
                },
            ),
            (
                "/db/_all_docs_queries",
                Route::RefusedDb {
                    db: "db".into(),
                    refusal: Refusal::PostOnly(&Refusal::NotImplemented(NOT_ON_VIRTUAL)),
                },
            ),
            (
                "/db/_security",
                Route::RefusedDb {
                    db: "db".into(),
                    refusal: Refusal::Forbidden(SHARED_DB),
                },
            ),
            // Not an endpoint: an id, refused by the document handler.
            ("/db/_foo", doc("db", "_foo")),
            ("/db/_design", doc("db", "_design")),
            (
                "/db/_local",
                Route::Local {
                    db: "db".into(),
                    id: "_local".into(),
                },
            ),
            ("/Db", Route::RefusedServer(Refusal::BadDbName("Db".into()))),
            (
                "/db/_changes/x",
                Route::RefusedDb {
                    db: "db".into(),
                    refusal: Refusal::IllegalDocId,
                },
            ),
            (
                "/_all_dbs",
                Route::RefusedServer(server_refusal("_all_dbs")),
            ),
            (
                "/_config",
                Route::RefusedServer(Refusal::Forbidden(ADMIN_ONLY)),
            ),
            (
                "/_node/_local/_config",
                Route::RefusedServer(Refusal::Forbidden(ADMIN_ONLY)),
            ),
            ("/_utils", Route::RefusedServer(Refusal::NotFound)),
            ("/_session/x", Route::RefusedServer(Refusal::NotFound)),
        ];
        for (path, want) in cases {
            assert_eq!(route(path).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn design_functions_are_never_run() {
        for p in [
            "/db/_design/v/_view/x",
            "/db/_design/v/_show/x",
            "/db/_design/v/_update/u",
        ] {
            assert!(matches!(
                route(p).unwrap(),
                Route::RefusedDb {
                    refusal: Refusal::NotImplemented(_),
                    ..
                }
            ));
        }
    }

    #[test]
    fn bad_paths() {
        for (p, name) in [
            ("/db/%FF", "not_found"),
            ("/db/a%ZZ", "bad_request"),
            ("/db/a%2", "bad_request"),
            ("/db//x", "bad_request"),
            ("/db/_local/x/y", "bad_request"),
        ] {
            assert_eq!(route(p).unwrap_err().name(), name, "{p}");
        }
        assert!(check_escapes("a=%22x%22&b=%e2%84%a6").is_ok());
        assert!(check_escapes("a=%2").is_err());
    }

    #[test]
    fn bad_database_names_are_404_but_to_put() {
        for p in ["/Db", "/1db", "/%2E%2E", "/favicon.ico"] {
            let Route::RefusedServer(r) = route(p).unwrap() else {
                panic!("{p}")
            };
            assert_eq!(
                r.clone().into_error("x", &http::Method::GET).status(),
                404,
                "{p}"
            );
            assert_eq!(
                r.into_error("x", &http::Method::PUT).name(),
                "illegal_database_name",
                "{p}"
            );
        }
    }

    #[test]
    fn db_names() {
        assert!(validate_db_name("a-b_c$d(e)f+g/h9").is_ok());
        assert!(validate_db_name(&"a".repeat(239)).is_err());
        assert!(validate_db_name("").is_err());
        assert!(validate_db_name("_users").is_err());
    }
}
