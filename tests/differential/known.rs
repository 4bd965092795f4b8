//! Differences between couchgate and the backend that remain, each with its reason: most are
//! deliberate, a few are work tracked elsewhere. The README's table lists the same cases
//! (checked by a test).

/// A case (or a prefix of case names) whose answers differ, and how.
pub struct Known {
    /// Prefix of the case names.
    pub case: &'static str,
    /// Prefix of the difference's description (`""`: any difference of those cases).
    pub what: &'static str,
    pub reason: &'static str,
    /// Only against PouchDB Server (which differs from CouchDB, the reference, there).
    pub pouchdb_server_only: bool,
}

const fn both(case: &'static str, what: &'static str, reason: &'static str) -> Known {
    Known {
        case,
        what,
        reason,
        pouchdb_server_only: false,
    }
}

const NO_JS: &str = "design-document JavaScript (views, filters) is never run by couchgate: 501";
const COUCHDB_500: &str =
    "CouchDB crashes on this input (500 function_clause/badarg); couchgate answers 400 bad_request";

pub const ALL: &[Known] = &[
    both("read/view-not-run", "", NO_JS),
    both("read/ddoc-info", "", NO_JS),
    both("changes/filter-design", "", NO_JS),
    both("changes/filter-view", "", NO_JS),
    both("repl/bulk-new-edits-string", "", COUCHDB_500),
    both("changes/bad-style", "", COUCHDB_500),
    both("changes/bad-limit", "", COUCHDB_500),
    both("changes/timeout-bad", "", COUCHDB_500),
    both("bulk_get/id-not-string", "", COUCHDB_500),
    both("bulk_get/docs-not-list", "", COUCHDB_500),
    both("revs_diff/not-list", "", COUCHDB_500),
    both(
        "form/long-",
        "",
        "CouchDB's HTTP layer refuses a request line over 8 KiB with a bare 400; couchgate's 400 has a CouchDB-shaped body",
    ),
    both(
        "server/favicon",
        "",
        "CouchDB serves Fauxton's favicon path (404 text, cached a year); couchgate has no Fauxton",
    ),
    both("changes/", "header etag", "couchgate's `_changes` has no ETag (it streams from its index; no client reads it)"),
    both("bad/query-array-param", "header etag", "`_changes` has no ETag, as above"),
    both("bad/changes-limit-huge", "header etag", "`_changes` has no ETag, as above"),
    both("form/gzip-changes", "header etag", "`_changes` has no ETag, as above"),
    both(
        "changes/seq-interval",
        "",
        "`seq_interval` is accepted and every row still carries its `seq` (CouchDB leaves most null)",
    ),
    both(
        "form/open-revs-multipart",
        "",
        "not yet: `open_revs` answers JSON even when `multipart/mixed` is asked for (issue 12)",
    ),
    both(
        "bad/security",
        "",
        "not yet: `_security` of a virtual database is refused with 403 (issue 15, sharing)",
    ),
    both(
        "all_docs/design-docs",
        "",
        "not yet: `_design_docs` answers 501; `_all_docs?startkey=\"_design/\"&endkey=\"_design0\"` serves",
    ),
    both("all_docs/local-docs", "", "not yet: `_local_docs` answers 501"),
];

/// The known differences that apply against this backend.
pub fn for_backend(couchdb: bool) -> Vec<&'static Known> {
    ALL.iter()
        .filter(|k| !(couchdb && k.pouchdb_server_only))
        .collect()
}
