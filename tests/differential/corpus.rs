//! The corpus: the requests PouchDB 9 and CouchDB's replicator send, with every query parameter
//! and body form they use, and the bad inputs around them. Steps run in order against both
//! targets, so each sees the same history; templates (`${rev:ID}`, `${seq}`, see
//! [`crate::target::Target::expand`]) stand for what each target answered earlier.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The path follows `/{db}`.
    Db,
    /// The path is from the server root.
    Server,
}

#[derive(Debug, Clone)]
pub enum Payload {
    None,
    /// JSON text sent as `application/json`.
    Json(String),
    /// Text sent with the content type given as a header (or none).
    Text(String),
    /// Bytes with an optional content type.
    Raw {
        content_type: Option<String>,
        bytes: Vec<u8>,
    },
    /// JSON text, gzip-compressed, with `Content-Encoding: gzip`.
    Gzip(String),
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub method: &'static str,
    pub scope: Scope,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub payload: Payload,
    /// Sent without credentials.
    pub anon: bool,
    /// Only these top-level members of the body are compared.
    pub only_keys: Option<Vec<&'static str>>,
    /// The body is not compared (only status and headers).
    pub ignore_body: bool,
    /// An ETag that is not a revision is compared by presence only.
    pub volatile_etag: bool,
    /// Why this request is not sent when the backend is PouchDB Server (see
    /// [`POUCHDB_SERVER_SKIPS`]); CouchDB's behaviour is the one that matters.
    pub pouchdb_server_skip: Option<&'static str>,
    /// Against PouchDB Server, sent to couchgate only, which must answer this status and error
    /// name itself (see [`ANSWERED_BY_COUCHGATE`]).
    pub pouchdb_server_gate_only: Option<(u16, Option<&'static str>)>,
}

fn step(method: &'static str, name: &str, path: &str) -> Step {
    Step {
        name: name.to_owned(),
        method,
        scope: Scope::Db,
        path: path.to_owned(),
        headers: vec![],
        payload: Payload::None,
        anon: false,
        only_keys: None,
        ignore_body: false,
        volatile_etag: false,
        pouchdb_server_skip: None,
        pouchdb_server_gate_only: None,
    }
}

fn get(name: &str, path: &str) -> Step {
    step("GET", name, path)
}
fn head(name: &str, path: &str) -> Step {
    step("HEAD", name, path)
}
fn put(name: &str, path: &str) -> Step {
    step("PUT", name, path)
}
fn post(name: &str, path: &str) -> Step {
    step("POST", name, path)
}
fn delete(name: &str, path: &str) -> Step {
    step("DELETE", name, path)
}

impl Step {
    fn json(mut self, v: Value) -> Step {
        self.payload = Payload::Json(v.to_string());
        self
    }
    fn json_text(mut self, text: &str) -> Step {
        self.payload = Payload::Json(text.to_owned());
        self
    }
    fn text(mut self, content_type: Option<&str>, text: &str) -> Step {
        if let Some(ct) = content_type {
            self.headers.push(("Content-Type".into(), ct.into()));
        }
        self.payload = Payload::Text(text.to_owned());
        self
    }
    fn raw(mut self, content_type: &str, bytes: &[u8]) -> Step {
        self.payload = Payload::Raw {
            content_type: Some(content_type.to_owned()),
            bytes: bytes.to_vec(),
        };
        self
    }
    fn gzip(mut self, v: Value) -> Step {
        self.payload = Payload::Gzip(v.to_string());
        self
    }
    fn header(mut self, k: &str, v: &str) -> Step {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn accept_json(self) -> Step {
        self.header("Accept", "application/json")
    }
    fn server(mut self) -> Step {
        self.scope = Scope::Server;
        self
    }
    fn anon(mut self) -> Step {
        self.anon = true;
        self
    }
    fn keys(mut self, keys: &[&'static str]) -> Step {
        self.only_keys = Some(keys.to_vec());
        self
    }
    fn no_body(mut self) -> Step {
        self.ignore_body = true;
        self
    }
    fn volatile_etag(mut self) -> Step {
        self.volatile_etag = true;
        self
    }
}

/// A 32-hex revision hash made from a number, for replicated revisions.
fn h(n: u32) -> String {
    format!("{n:032x}")
}

/// A document with a replicated revision history (`new_edits: false`).
fn replicated(id: &str, start: u32, ids: &[u32], extra: Value) -> Value {
    let mut doc = json!({
        "_id": id,
        "_rev": format!("{start}-{}", h(ids[0])),
        "_revisions": {"start": start, "ids": ids.iter().map(|i| h(*i)).collect::<Vec<_>>()},
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    doc
}

/// Ids that exercise encoding: separators, percent signs, unicode, spaces.
pub const ODD_IDS: &[(&str, &str)] = &[
    ("slash", "a%2Fb"),
    ("unicode", "%C3%A9t%C3%A9"),
    ("space", "with%20space"),
    ("colon", "x%3Ay"),
    ("tilde", "z~"),
    ("percent", "100%25"),
    ("upper", "UPPER"),
    ("omega", "%E2%84%A6"),
];

pub fn steps() -> Vec<Step> {
    let mut v = Vec::new();
    database(&mut v);
    writes(&mut v);
    replicated_history(&mut v);
    attachments(&mut v);
    doc_reads(&mut v);
    all_docs(&mut v);
    changes(&mut v);
    selectors(&mut v);
    bulk_get_and_revs_diff(&mut v);
    local_docs(&mut v);
    request_forms(&mut v);
    bad_input(&mut v);
    server(&mut v);
    teardown(&mut v);
    for s in &mut v {
        s.pouchdb_server_skip = POUCHDB_SERVER_SKIPS
            .iter()
            .find(|(prefix, _)| s.name.starts_with(prefix))
            .map(|(_, why)| *why);
        s.pouchdb_server_gate_only = ANSWERED_BY_COUCHGATE
            .iter()
            .find(|(prefix, ..)| s.name.starts_with(prefix))
            .map(|(_, status, error)| (*status, *error));
    }
    v
}

/// Cases that kill, hang or corrupt PouchDB Server when sent to it, and that couchgate answers
/// itself: against PouchDB Server they are sent to couchgate only, which must answer CouchDB's
/// status and error name (`revs_diff/not-list`: the 400 listed in [`crate::known`]); the cases
/// after them show that the backend lived.
const ANSWERED_BY_COUCHGATE: &[(&str, u16, Option<&str>)] = &[
    ("att/data-not-string", 400, Some("bad_request")),
    ("att/stub-missing", 412, Some("missing_stub")),
    ("bulk_get/empty", 200, None),
    ("bulk_get/latest-unknown-rev", 200, None),
    ("revs_diff/not-list", 400, Some("bad_request")),
    ("read/latest-unknown-rev", 200, None),
    ("bad/revisions-", 400, Some("doc_validation")),
    // PouchDB Server dies on `filter=_selector`; couchgate answers it from its own index.
    ("selector/refused-", 400, Some("bad_request")),
    ("selector/", 200, None),
];

const CRASHES: &str = "kills or hangs the PouchDB Server process when sent to it";
const NEVER_ENDS: &str = "PouchDB Server's live feeds do not end at `timeout` (its heartbeat \
                          default keeps them open)";
const DIVERGES: &str = "PouchDB Server writes where CouchDB refuses (or the reverse); the state \
                        would differ in every later answer";

/// Cases (name prefixes) not sent to PouchDB Server, and why.
const POUCHDB_SERVER_SKIPS: &[(&str, &str)] = &[
    ("changes/filter-", CRASHES),
    ("changes/doc-ids-missing", CRASHES),
    ("changes/doc-ids-not-list", CRASHES),
    ("changes/post-doc-ids-not-list", CRASHES),
    ("changes/longpoll-at-end", NEVER_ENDS),
    ("changes/longpoll-now", NEVER_ENDS),
    ("changes/post-longpoll-", NEVER_ENDS),
    ("changes/continuous", NEVER_ENDS),
    ("changes/eventsource", NEVER_ENDS),
    ("write/put-if-match", DIVERGES),
    ("write/put-body-id-ignored", DIVERGES),
    ("local/attachment-put", DIVERGES),
    ("local/copy", DIVERGES),
    ("form/copy", DIVERGES),
    ("form/post-untyped", DIVERGES),
    ("bad/empty-body", DIVERGES),
    ("bad/deleted-not-bool", DIVERGES),
    ("bad/attachments-not-object", DIVERGES),
    ("bad/empty-rev", DIVERGES),
    ("bad/id-mismatch-ok", DIVERGES),
    ("bad/x-read", DIVERGES),
    ("bad/bulk-id-null", DIVERGES),
    ("bad/design-no-name", DIVERGES),
    ("bad/local-no-name", DIVERGES),
    ("bad/huge-number", DIVERGES),
    ("bad/duplicate-id-keys", DIVERGES),
    ("bad/duplicate-read", DIVERGES),
    ("bad/utf8-invalid", DIVERGES),
    ("server/bad-db-name-put", DIVERGES),
    // PouchDB Server refuses a stub that names no digest (CouchDB keeps the attachment) and
    // takes one naming a digest stored anywhere in the database (CouchDB refuses it).
    ("att/stub-keep", DIVERGES),
    ("att/stub-missing", DIVERGES),
];

fn database(v: &mut Vec<Step>) {
    v.push(get("db/get-missing", ""));
    v.push(put("db/create", ""));
    v.push(put("db/create-again", ""));
    v.push(get("db/info-empty", "").volatile_etag());
    v.push(head("db/head", ""));
    v.push(get("db/info-trailing-slash", "/"));
    v.push(step("PATCH", "db/patch", ""));
    v.push(delete("db/delete-with-rev", "?rev=1-abc"));
    v.push(post("db/ensure-full-commit", "/_ensure_full_commit"));
    v.push(post("db/compact", "/_compact").json(json!({})));
    v.push(post("db/compact-ddoc", "/_compact/app").json(json!({})));
    v.push(post("db/view-cleanup", "/_view_cleanup").json(json!({})));
    v.push(get("db/compact-get", "/_compact"));
    v.push(post("db/compact-no-json", "/_compact").text(Some("text/plain"), "x"));
}

fn writes(v: &mut Vec<Step>) {
    v.push(put("write/put-a", "/a").json(json!({"v": 1, "id": "not an id"})));
    v.push(put("write/put-b", "/b").json(json!({"v": 2})));
    v.push(put("write/put-c", "/c").json(json!({"v": 3, "nested": {"_id": "inner"}})));
    v.push(put("write/put-a-conflict", "/a").json(json!({"v": 9})));
    v.push(
        put("write/put-a-stale-rev", "/a")
            .json(json!({"_rev": "1-00000000000000000000000000000000", "v": 9})),
    );
    v.push(put("write/put-a-update", "/a").json_text(r#"{"_rev":"${rev:a}","v":10}"#));
    v.push(put("write/put-a-rev-query", "/a?rev=${rev:a}").json(json!({"v": 11})));
    v.push(
        put("write/put-a-rev-mismatch", "/a?rev=${rev:a@1}")
            .json_text(r#"{"_rev":"${rev:a}","v":12}"#),
    );
    v.push(put("write/put-body-id-ignored", "/e").json(json!({"_id": "other", "v": 5})));
    v.push(put("write/put-batch-ok", "/batched?batch=ok").json(json!({"v": 1})));
    v.push(post("write/post-with-id", "").json(json!({"_id": "posted", "v": 1})));
    v.push(post("write/post-generated-id", "").json(json!({"v": 1})));
    // Generated ids differ between the targets; removed so they do not reorder `_all_docs`.
    v.push(delete("write/delete-generated-id", "/${gen}?rev=${genrev}"));
    v.push(post("write/post-existing-id", "").json(json!({"_id": "posted", "v": 2})));
    v.push(post("write/post-batch", "?batch=ok").json(json!({"_id": "posted-batch"})));
    v.push(put("write/put-d", "/d").json(json!({"v": "to delete"})));
    v.push(delete("write/delete-d-no-rev", "/d"));
    v.push(delete(
        "write/delete-d-bad-rev",
        "/d?rev=1-00000000000000000000000000000000",
    ));
    v.push(delete("write/delete-d", "/d?rev=${rev:d}"));
    v.push(delete("write/delete-d-again", "/d?rev=${rev:d}"));
    v.push(put("write/recreate-after-delete", "/d2").json(json!({"v": 1})));
    v.push(delete("write/delete-d2", "/d2?rev=${rev:d2}"));
    v.push(put("write/recreate-d2", "/d2").json(json!({"v": 2})));
    v.push(put("write/put-deleted-flag", "/gone").json(json!({"_deleted": true})));
    v.push(put("write/put-ddoc", "/_design/app").json(json!({
        "views": {"by_v": {"map": "function (doc) { emit(doc.v, null); }"}},
        "filters": {"f": "function (doc) { return true; }"},
    })));
    v.push(
        put("write/put-ddoc-encoded-slash", "/_design%2Fother").json(json!({"language": "query"})),
    );
    v.push(
        put("write/put-ddoc-update", "/_design/app")
            .json_text(r#"{"_rev":"${rev:_design/app}","views":{}}"#),
    );
    for (name, id) in ODD_IDS {
        v.push(put(&format!("write/odd-id-{name}"), &format!("/{id}")).json(json!({"odd": name})));
    }
    v.push(delete("write/delete-if-match", "/posted").header("If-Match", "${rev:posted}"));
    v.push(
        put("write/put-if-match", "/b")
            .header("If-Match", "${rev:b}")
            .json(json!({"v": 20})),
    );
    v.push(
        put("write/put-if-match-stale", "/b")
            .header("If-Match", "${rev:b@1}")
            .json(json!({"v": 21})),
    );
    v.push(
        put("write/put-new-edits-false", "/ne?new_edits=false")
            .json(json!({"_rev": format!("1-{}", h(77)), "v": 1})),
    );
}

fn replicated_history(v: &mut Vec<Step>) {
    // k: a conflict between 2-h(2) and 2-h(3); winner is the higher hash.
    v.push(
        post("repl/bulk-new-edits-false", "/_bulk_docs").json(json!({
            "new_edits": false,
            "docs": [
                replicated("k", 2, &[2, 1], json!({"branch": "two"})),
                replicated("k", 2, &[3, 1], json!({"branch": "three"})),
                // w: a deleted leaf at generation 3 and a live one at 2; the live one wins.
                replicated("w", 2, &[12, 11], json!({"live": true})),
                replicated("w", 3, &[14, 13, 11], json!({"_deleted": true})),
                // t: every leaf deleted; the highest deleted one wins.
                replicated("t", 2, &[22, 21], json!({"_deleted": true})),
                replicated("t", 2, &[23, 21], json!({"_deleted": true})),
                // m: three live leaves of different generations.
                replicated("m", 3, &[33, 32, 31], json!({"g": 3})),
                replicated("m", 2, &[34, 31], json!({"g": 2})),
                replicated("m", 3, &[35, 36, 31], json!({"g": 3})),
            ],
        })),
    );
    v.push(
        post("repl/bulk-new-edits-false-again", "/_bulk_docs").json(json!({
            "new_edits": false,
            "docs": [replicated("k", 2, &[2, 1], json!({"branch": "two"}))],
        })),
    );
    v.push(
        post("repl/bulk-new-edits-false-no-rev", "/_bulk_docs").json(json!({
            "new_edits": false, "docs": [{"_id": "norev"}],
        })),
    );
    v.push(
        post("repl/bulk-new-edits-string", "/_bulk_docs").json(json!({
            "new_edits": "false", "docs": [replicated("s", 1, &[41], json!({}))],
        })),
    );
    v.push(
        post("repl/bulk-edit-conflicted", "/_bulk_docs").json(json!({
            "docs": [{"_id": "k", "_rev": format!("2-{}", h(2)), "branch": "two-edited"}],
        })),
    );
    v.push(post("repl/bulk-mixed", "/_bulk_docs").json(json!({
        "docs": [
            {"_id": "bulk1", "v": 1},
            {"_id": "bulk2", "v": 2},
            {"_id": "a", "v": "conflict"},
            {"_id": "bulk3", "_deleted": true},
        ],
    })));
    v.push(post("repl/bulk-all-or-nothing", "/_bulk_docs").json(json!({
        "all_or_nothing": true, "docs": [{"_id": "aon"}],
    })));
    v.push(post("repl/bulk-empty", "/_bulk_docs").json(json!({"docs": []})));
    v.push(
        post("repl/bulk-delete", "/_bulk_docs")
            .json_text(r#"{"docs":[{"_id":"bulk2","_rev":"${rev:bulk2}","_deleted":true}]}"#),
    );
    v.push(post("repl/bulk-local", "/_bulk_docs").json(json!({
        "docs": [{"_id": "_local/viabulk", "v": 1}],
    })));
    v.push(post("repl/bulk-ddoc", "/_bulk_docs").json(json!({
        "docs": [{"_id": "_design/bulk", "views": {}}],
    })));
}

fn attachments(v: &mut Vec<Step>) {
    v.push(put("att/inline", "/att").json(json!({
        "_attachments": {
            "hello.txt": {"content_type": "text/plain", "data": "aGVsbG8gd29ybGQ="},
            "dir/nested.txt": {"content_type": "text/plain", "data": "bmVzdGVk"},
        },
    })));
    v.push(
        put("att/standalone", "/att/blob.bin?rev=${rev:att}")
            .raw("application/octet-stream", &[0, 1, 2, 3, 255]),
    );
    v.push(put("att/standalone-no-rev", "/att/late.bin").raw("application/octet-stream", b"x"));
    v.push(put("att/standalone-new-doc", "/attnew/first.txt").raw("text/plain", b"first"));
    v.push(
        put("att/standalone-if-match", "/attnew/second.txt")
            .header("If-Match", "${rev:attnew}")
            .raw("text/plain", b"second"),
    );
    v.push(
        put(
            "att/standalone-slash-name",
            "/att/sub%2Fdir.txt?rev=${rev:att}",
        )
        .raw("text/plain", b"sub"),
    );
    v.push(get("att/get", "/att/hello.txt"));
    v.push(get("att/get-nested-raw-slash", "/att/dir/nested.txt"));
    v.push(get("att/get-nested-encoded", "/att/dir%2Fnested.txt"));
    v.push(get("att/get-binary", "/att/blob.bin"));
    v.push(head("att/head", "/att/hello.txt"));
    v.push(get("att/get-missing-name", "/att/nope.txt"));
    v.push(get("att/get-missing-doc", "/nodoc/hello.txt"));
    v.push(get("att/get-old-rev", "/att/hello.txt?rev=${rev:att@1}"));
    v.push(
        get("att/if-none-match", "/att/hello.txt")
            .header("If-None-Match", "\"${rev:att}\"")
            .volatile_etag(),
    );
    v.push(get("att/range", "/att/hello.txt").header("Range", "bytes=0-4"));
    v.push(
        put("att/json-content-type", "/att/j.json?rev=${rev:att}")
            .raw("application/json", b"{\"x\":1}"),
    );
    v.push(delete("att/delete", "/att/j.json?rev=${rev:att}"));
    v.push(delete("att/delete-no-rev", "/att/hello.txt"));
    v.push(delete("att/delete-missing", "/att/none.txt?rev=${rev:att}"));
    v.push(delete("att/delete-missing-no-atts", "/b/none.txt"));
    v.push(delete(
        "att/delete-missing-no-atts-rev",
        "/b/none.txt?rev=${rev:b}",
    ));
    v.push(put("att/stub-keep", "/att").json_text(
        r#"{"_rev":"${rev:att}","_attachments":{"hello.txt":{"stub":true}},"kept":"stub"}"#,
    ));
    v.push(put("att/stub-missing", "/att2").json(json!({
        "_attachments": {"x.txt": {"stub": true, "content_type": "text/plain", "digest": "md5-XrY7u+Ae7tCTyyK7j1rNww==", "length": 11}},
    })));
    v.push(put("att/bad-base64", "/att3").json(json!({
        "_attachments": {"x.txt": {"content_type": "text/plain", "data": "not base64!!"}},
    })));
    v.push(put("att/data-not-string", "/att4").json(json!({
        "_attachments": {"x.txt": {"content_type": "text/plain", "data": 5}},
    })));
    v.push(
        put(
            "att/ddoc-attachment",
            "/_design/app/readme.txt?rev=${rev:_design/app}",
        )
        .raw("text/plain", b"docs"),
    );
    v.push(get("att/ddoc-attachment-get", "/_design/app/readme.txt"));
    let boundary = "AbCdEf";
    let doc = r#"{"_id":"mp","kind":"multipart","_attachments":{"part.txt":{"follows":true,"content_type":"text/plain","length":5}}}"#;
    let body = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{doc}\r\n--{boundary}\r\nContent-Disposition: attachment; filename=\"part.txt\"\r\n\r\nhello\r\n--{boundary}--"
    );
    v.push(put("att/multipart-mixed-case-boundary", "/mp").raw(
        &format!("multipart/related; boundary=\"{boundary}\""),
        body.as_bytes(),
    ));
    v.push(get("att/multipart-get", "/mp/part.txt"));
}

fn doc_reads(v: &mut Vec<Step>) {
    let docs = [
        ("a", "a"),
        ("k", "k"),
        ("w", "w"),
        ("t", "t"),
        ("m", "m"),
        ("att", "att"),
        ("ddoc", "_design/app"),
        ("deleted", "d"),
    ];
    let params = [
        ("plain", ""),
        ("revs", "?revs=true"),
        ("revs-info", "?revs_info=true"),
        ("conflicts", "?conflicts=true"),
        ("deleted-conflicts", "?deleted_conflicts=true"),
        ("open-revs-all", "?open_revs=all"),
        ("open-revs-all-revs", "?open_revs=all&revs=true"),
        ("attachments", "?attachments=true"),
        ("att-encoding-info", "?att_encoding_info=true"),
        ("local-seq", "?local_seq=true"),
        ("meta", "?meta=true"),
        (
            "atts-since",
            "?attachments=true&atts_since=[\"1-00000000000000000000000000000000\"]",
        ),
    ];
    for (dn, id) in docs {
        for (pn, q) in params {
            v.push(get(&format!("read/{dn}/{pn}"), &format!("/{id}{q}")).accept_json());
        }
    }
    // Multipart answers: CouchDB's replicator reads documents with attachments this way, and
    // CouchDB answers `*/*` (curl, reqwest) in multipart too.
    for (dn, id) in [
        ("a", "a"),
        ("k", "k"),
        ("att", "att"),
        ("ddoc", "_design/app"),
        ("deleted", "d"),
    ] {
        let revs = "?open_revs=all&revs=true&attachments=true";
        v.push(
            get(
                &format!("multipart/{dn}/open-revs"),
                &format!("/{id}{revs}"),
            )
            .header("Accept", "multipart/mixed"),
        );
        v.push(get(
            &format!("multipart/{dn}/open-revs-any"),
            &format!("/{id}?open_revs=all"),
        ));
        v.push(
            get(
                &format!("multipart/{dn}/attachments"),
                &format!("/{id}?attachments=true&revs=true"),
            )
            .header("Accept", "multipart/related"),
        );
    }
    v.push(
        get(
            "multipart/att/replicator-form",
            "/att?revs=true&open_revs=[\"${rev:att}\"]&latest=true&atts_since=[\"${rev:att@1}\"]",
        )
        .header("Accept", "multipart/mixed"),
    );
    v.push(
        get(
            "multipart/a/open-revs-missing",
            "/a?open_revs=[\"${rev:a}\",\"9-00000000000000000000000000000000\"]",
        )
        .header("Accept", "multipart/mixed"),
    );
    v.push(
        post(
            "multipart/bulk-get",
            "/_bulk_get?revs=true&attachments=true",
        )
        .json_text(
            r#"{"docs":[{"id":"att"},{"id":"a"},{"id":"nothing"},{"id":"a","rev":"${rev:a@1}"}]}"#,
        )
        .header("Accept", "multipart/mixed"),
    );
    v.push(get("read/a/rev-first", "/a?rev=${rev:a@1}"));
    v.push(get("read/a/rev-first-revs", "/a?rev=${rev:a@1}&revs=true"));
    v.push(
        get(
            "read/a/open-revs-list",
            "/a?open_revs=[\"${rev:a@1}\",\"${rev:a}\",\"9-00000000000000000000000000000000\"]",
        )
        .accept_json(),
    );
    v.push(
        get(
            "read/a/open-revs-latest",
            "/a?open_revs=[\"${rev:a@1}\"]&latest=true&revs=true",
        )
        .accept_json(),
    );
    v.push(
        get(
            "read/k/open-revs-branches",
            &format!("/k?open_revs=[\"2-{}\",\"2-{}\"]&revs=true", h(2), h(3)),
        )
        .accept_json(),
    );
    v.push(get("read/k/rev-loser", &format!("/k?rev=2-{}", h(2))));
    v.push(get(
        "read/w/rev-deleted-leaf",
        &format!("/w?rev=3-{}", h(14)),
    ));
    v.push(get("read/deleted/rev", "/d?rev=${rev:d}"));
    v.push(get("read/deleted/rev-before", "/d?rev=${rev:d@1}"));
    v.push(get("read/a/if-none-match", "/a").header("If-None-Match", "\"${rev:a}\""));
    v.push(get("read/a/if-none-match-stale", "/a").header("If-None-Match", "\"${rev:a@1}\""));
    v.push(head("read/a/head", "/a"));
    v.push(head("read/missing/head", "/nothing"));
    v.push(get("read/missing", "/nothing"));
    v.push(get(
        "read/missing-rev",
        "/a?rev=9-00000000000000000000000000000000",
    ));
    v.push(get("read/bad-rev", "/a?rev=abc"));
    v.push(get("read/bad-open-revs", "/a?open_revs=notjson").accept_json());
    v.push(get("read/open-revs-not-list", "/a?open_revs={}").accept_json());
    v.push(get("read/bad-bool", "/a?revs=yes"));
    v.push(get(
        "read/latest-unknown-rev",
        "/a?latest=true&rev=9-00000000000000000000000000000000",
    ));
    v.push(get("read/e-body-id-ignored", "/e"));
    v.push(get("read/other-not-created", "/other"));
    v.push(get("read/ddoc-encoded-slash", "/_design%2Fother"));
    v.push(get("read/ddoc-no-name", "/_design/"));
    for (name, id) in ODD_IDS {
        v.push(get(&format!("read/odd-id-{name}"), &format!("/{id}")));
    }
    v.push(get("read/double-encoded", "/a%252Fb"));
    v.push(get("read/view-not-run", "/_design/app/_view/by_v"));
    v.push(get("read/ddoc-info", "/_design/app/_info"));
}

fn all_docs(v: &mut Vec<Step>) {
    let variants = [
        ("plain", ""),
        ("include-docs", "?include_docs=true"),
        ("descending", "?descending=true"),
        ("limit-0", "?limit=0"),
        ("limit-2", "?limit=2"),
        ("skip-2", "?skip=2"),
        ("skip-limit", "?skip=1&limit=2"),
        ("skip-past-end", "?skip=1000"),
        ("startkey", "?startkey=\"b\""),
        ("start-key", "?start_key=\"b\""),
        ("endkey", "?endkey=\"c\""),
        ("end-key", "?end_key=\"c\""),
        ("endkey-exclusive", "?endkey=\"c\"&inclusive_end=false"),
        ("range", "?startkey=\"a\"&endkey=\"m\""),
        (
            "range-descending",
            "?startkey=\"m\"&endkey=\"a\"&descending=true",
        ),
        (
            "range-descending-wrong-way",
            "?startkey=\"a\"&endkey=\"m\"&descending=true",
        ),
        ("range-reversed", "?startkey=\"m\"&endkey=\"a\""),
        ("key", "?key=\"b\""),
        ("key-missing", "?key=\"nope\""),
        ("keys", "?keys=[\"b\",\"nope\",\"d\",\"a\"]"),
        (
            "keys-include-docs",
            "?keys=[\"b\",\"nope\",\"d\"]&include_docs=true",
        ),
        ("keys-descending", "?keys=[\"b\",\"a\"]&descending=true"),
        ("keys-limit", "?keys=[\"b\",\"a\",\"c\"]&limit=2"),
        ("keys-skip", "?keys=[\"b\",\"a\",\"c\"]&skip=1"),
        ("keys-with-key", "?keys=[\"b\"]&key=\"a\""),
        ("keys-with-startkey", "?keys=[\"b\"]&startkey=\"a\""),
        ("keys-with-endkey", "?keys=[\"b\"]&endkey=\"z\""),
        ("keys-not-list", "?keys=\"b\""),
        ("conflicts", "?include_docs=true&conflicts=true"),
        ("update-seq", "?update_seq=true"),
        (
            "attachments",
            "?include_docs=true&attachments=true&keys=[\"att\"]",
        ),
        (
            "att-encoding-info",
            "?include_docs=true&att_encoding_info=true&keys=[\"att\"]",
        ),
        ("design-range", "?startkey=\"_design/\"&endkey=\"_design0\""),
        ("local-range", "?startkey=\"_local/\"&endkey=\"_local0\""),
        ("unicode-range", "?startkey=\"z\""),
        ("startkey-docid", "?startkey_docid=\"b\""),
        ("limit-negative", "?limit=-1"),
        ("limit-text", "?limit=ten"),
        ("skip-negative", "?skip=-1"),
        ("startkey-not-json", "?startkey=b"),
        ("descending-bad", "?descending=yes"),
        ("include-docs-bad", "?include_docs=1"),
        ("stale", "?stale=ok"),
        ("sorted-false", "?sorted=false"),
        ("non-string-key", "?key=1"),
    ];
    for (name, q) in variants {
        v.push(get(&format!("all_docs/get-{name}"), &format!("/_all_docs{q}")).volatile_etag());
    }
    v.push(head("all_docs/head", "/_all_docs").volatile_etag());
    let bodies = [
        ("keys", json!({"keys": ["b", "nope", "d", "a"]})),
        ("keys-empty", json!({"keys": []})),
        ("keys-ddoc", json!({"keys": ["_design/app", "_local/x"]})),
        ("keys-with-key", json!({"keys": ["b"], "key": "a"})),
        (
            "keys-with-startkey",
            json!({"keys": ["b"], "startkey": "a"}),
        ),
        ("keys-not-list", json!({"keys": "b"})),
        ("keys-non-string", json!({"keys": [1, null, "a"]})),
        ("no-keys", json!({})),
        (
            "include-docs-in-body",
            json!({"keys": ["a"], "include_docs": true}),
        ),
    ];
    for (name, body) in bodies {
        v.push(
            post(&format!("all_docs/post-{name}"), "/_all_docs")
                .json(body)
                .volatile_etag(),
        );
    }
    v.push(
        post("all_docs/post-keys-and-query-key", "/_all_docs?key=\"a\"")
            .json(json!({"keys": ["b"]}))
            .volatile_etag(),
    );
    v.push(
        post(
            "all_docs/post-include-docs-query",
            "/_all_docs?include_docs=true",
        )
        .json(json!({"keys": ["a", "c"]}))
        .volatile_etag(),
    );
    v.push(
        post("all_docs/post-not-json", "/_all_docs")
            .json_text("{nope")
            .volatile_etag(),
    );
    v.push(
        post("all_docs/post-array", "/_all_docs")
            .json(json!(["a"]))
            .volatile_etag(),
    );
    v.push(step("PUT", "all_docs/put", "/_all_docs").json(json!({})));
    v.push(get("all_docs/design-docs", "/_design_docs"));
    v.push(get("all_docs/local-docs", "/_local_docs"));
}

fn changes(v: &mut Vec<Step>) {
    let variants = [
        ("plain", ""),
        ("all-docs-style", "?style=all_docs"),
        ("include-docs", "?include_docs=true"),
        ("include-docs-all-docs", "?include_docs=true&style=all_docs"),
        ("conflicts", "?include_docs=true&conflicts=true"),
        ("attachments", "?include_docs=true&attachments=true"),
        ("limit-1", "?limit=1"),
        ("limit-3-all-docs", "?limit=3&style=all_docs"),
        ("limit-0", "?limit=0"),
        ("descending", "?descending=true"),
        ("descending-limit", "?descending=true&limit=2"),
        ("since-0", "?since=0"),
        ("since-now", "?since=now"),
        (
            "doc-ids-get",
            "?filter=_doc_ids&doc_ids=[\"a\",\"k\",\"nope\"]",
        ),
        (
            "doc-ids-get-all-docs",
            "?filter=_doc_ids&doc_ids=[\"w\",\"m\"]&style=all_docs",
        ),
        ("seq-interval", "?seq_interval=3"),
        ("bad-style", "?style=bogus"),
        ("bad-feed", "?feed=bogus"),
        ("bad-limit", "?limit=x"),
        ("bad-since", "?since=bogus"),
        ("heartbeat-0", "?feed=longpoll&heartbeat=0"),
        ("heartbeat-bad", "?feed=longpoll&heartbeat=x"),
        ("timeout-bad", "?feed=longpoll&timeout=x"),
        ("filter-design", "?filter=app/f"),
        ("filter-view", "?filter=_view&view=app/by_v"),
        ("filter-unknown", "?filter=_bogus"),
        ("doc-ids-missing", "?filter=_doc_ids"),
        ("doc-ids-not-list", "?filter=_doc_ids&doc_ids=\"a\""),
        (
            "descending-longpoll",
            "?descending=true&feed=longpoll&timeout=100",
        ),
    ];
    for (name, q) in variants {
        v.push(get(&format!("changes/{name}"), &format!("/_changes{q}")));
    }
    v.push(get("changes/capture", "/_changes?style=all_docs"));
    v.push(get("changes/since-last", "/_changes?since=${seq}"));
    v.push(get(
        "changes/since-row-2",
        "/_changes?since=${seq:2}&style=all_docs",
    ));
    v.push(get(
        "changes/longpoll-at-end",
        "/_changes?feed=longpoll&since=${seq}&timeout=300",
    ));
    v.push(get(
        "changes/longpoll-now",
        "/_changes?feed=longpoll&since=now&timeout=300",
    ));
    v.push(get(
        "changes/longpoll-has-rows",
        "/_changes?feed=longpoll&since=${seq:2}&limit=2",
    ));
    v.push(get(
        "changes/continuous",
        "/_changes?feed=continuous&timeout=300",
    ));
    v.push(get(
        "changes/continuous-limit",
        "/_changes?feed=continuous&limit=2&since=0",
    ));
    v.push(get(
        "changes/continuous-include-docs",
        "/_changes?feed=continuous&include_docs=true&timeout=300&limit=4",
    ));
    v.push(get(
        "changes/eventsource",
        "/_changes?feed=eventsource&timeout=300&limit=3",
    ));
    v.push(
        post("changes/post-doc-ids", "/_changes?filter=_doc_ids")
            .json(json!({"doc_ids": ["a", "b", "t"]})),
    );
    v.push(
        post(
            "changes/post-doc-ids-all-docs",
            "/_changes?filter=_doc_ids&style=all_docs&include_docs=true",
        )
        .json(json!({"doc_ids": ["m", "k"]})),
    );
    v.push(post("changes/post-empty", "/_changes").json(json!({})));
    v.push(
        post("changes/post-doc-ids-not-list", "/_changes?filter=_doc_ids")
            .json(json!({"doc_ids": "a"})),
    );
    v.push(post("changes/post-not-json", "/_changes").json_text("nope"));
    v.push(
        post(
            "changes/post-longpoll-doc-ids",
            "/_changes?filter=_doc_ids&feed=longpoll&since=${seq}&timeout=200",
        )
        .json(json!({"doc_ids": ["a"]})),
    );
    v.push(step("PUT", "changes/put", "/_changes").json(json!({})));
    // A write, then the feed from the captured position shows exactly it.
    v.push(put("changes/write-after", "/after").json(json!({"v": 1})));
    v.push(get("changes/since-shows-write", "/_changes?since=${seq}"));
    v.push(get(
        "changes/since-shows-write-all-docs",
        "/_changes?since=${seq:0}&style=all_docs",
    ));
}

/// `_changes?filter=_selector`: every case of the Mango verdict table
/// (`tests/fixtures/mango_selectors.json`, which couchgate's matcher is unit-tested against),
/// over the table's documents, and the refusals.
fn selectors(v: &mut Vec<Step>) {
    let table: Value =
        serde_json::from_str(include_str!("../fixtures/mango_selectors.json")).unwrap();
    let docs: Vec<Value> = table["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.as_object_mut().unwrap().remove("_rev");
            d
        })
        .collect();
    v.push(post("write/selector-docs", "/_bulk_docs").json(json!({ "docs": docs })));
    let feed = "/_changes?filter=_selector&since=${seq}";
    for (i, case) in table["cases"].as_array().unwrap().iter().enumerate() {
        v.push(post(&format!("selector/{i:02}"), feed).json(json!({"selector": case["selector"]})));
    }
    let variants = [
        (
            "include-docs",
            "&include_docs=true",
            json!({"selector": {"year": {"$gt": 2000}}}),
        ),
        (
            "fields",
            "&include_docs=true",
            json!({"selector": {"genre": {"$size": 1}}, "fields": ["title", "cast.0.name", "nope"]}),
        ),
        (
            "fields-empty",
            "&include_docs=true",
            json!({"selector": {"n": -7}, "fields": []}),
        ),
        (
            "all-docs",
            "&style=all_docs",
            json!({"selector": {"director": "Lars von Trier"}}),
        ),
        (
            "limit",
            "&limit=1",
            json!({"selector": {"director": "Lars von Trier"}}),
        ),
        (
            "limit-deleted",
            "&limit=1",
            json!({"selector": {"_deleted": true}}),
        ),
        (
            "descending",
            "&descending=true",
            json!({"selector": {"_id": {"$gt": "f"}}}),
        ),
        (
            "longpoll",
            "&feed=longpoll&timeout=100",
            json!({"selector": {"year": 1973}}),
        ),
        (
            "with-doc-ids",
            "",
            json!({"selector": {"n": -7}, "doc_ids": ["film1"]}),
        ),
        ("refused-in", "", json!({"selector": {"a": {"$in": 1}}})),
        (
            "refused-exists",
            "",
            json!({"selector": {"a": {"$exists": "yes"}}}),
        ),
        (
            "refused-mod",
            "",
            json!({"selector": {"a": {"$mod": [2.5, 1]}}}),
        ),
        (
            "refused-size",
            "",
            json!({"selector": {"a": {"$size": -1}}}),
        ),
        ("refused-and", "", json!({"selector": {"$and": {"a": 1}}})),
        (
            "refused-operator",
            "",
            json!({"selector": {"a": {"$foo": 1}}}),
        ),
        (
            "refused-unsupported-operator",
            "",
            json!({"selector": {"a": {"$where": "x"}}}),
        ),
        (
            "refused-missing-field-name",
            "",
            json!({"selector": {"": 1}}),
        ),
        ("refused-not-object", "", json!({"selector": [1]})),
        ("refused-missing", "", json!({"fields": ["a"]})),
        (
            "refused-fields-not-list",
            "",
            json!({"selector": {}, "fields": "a"}),
        ),
        (
            "refused-fields-bad",
            "",
            json!({"selector": {}, "fields": [1]}),
        ),
    ];
    for (name, q, body) in variants {
        v.push(post(&format!("selector/{name}"), &format!("{feed}{q}")).json(body));
    }
    v.push(get("selector/refused-get", "/_changes?filter=_selector"));
    // A selector without `filter=_selector` is ignored.
    v.push(
        post("selector/no-filter", "/_changes?since=${seq}").json(json!({"selector": {"n": 1}})),
    );
}

fn bulk_get_and_revs_diff(v: &mut Vec<Step>) {
    v.push(post("bulk_get/one", "/_bulk_get").json(json!({"docs": [{"id": "a"}]})));
    v.push(post("bulk_get/revs", "/_bulk_get?revs=true").json_text(
        r#"{"docs":[{"id":"a","rev":"${rev:a}"},{"id":"b"},{"id":"nope"},{"id":"d","rev":"${rev:d}"}]}"#,
    ));
    v.push(post("bulk_get/replicator-form", "/_bulk_get?revs=true&attachments=true&latest=true").json_text(
        r#"{"docs":[{"id":"att","rev":"${rev:att}"},{"id":"k","rev":"2-00000000000000000000000000000002"},{"id":"w"},{"id":"m"}]}"#,
    ));
    v.push(
        post("bulk_get/latest-old-rev", "/_bulk_get?latest=true")
            .json_text(r#"{"docs":[{"id":"a","rev":"${rev:a@1}"}]}"#),
    );
    v.push(
        post("bulk_get/atts-since", "/_bulk_get?attachments=true").json_text(
            r#"{"docs":[{"id":"att","rev":"${rev:att}","atts_since":["${rev:att@1}"]}]}"#,
        ),
    );
    v.push(
        post("bulk_get/missing-rev", "/_bulk_get")
            .json(json!({"docs": [{"id": "a", "rev": "9-00000000000000000000000000000000"}]})),
    );
    v.push(
        post("bulk_get/bad-rev", "/_bulk_get").json(json!({"docs": [{"id": "a", "rev": "abc"}]})),
    );
    v.push(post("bulk_get/no-id", "/_bulk_get").json(json!({"docs": [{"rev": "1-abc"}]})));
    v.push(post("bulk_get/id-not-string", "/_bulk_get").json(json!({"docs": [{"id": 5}]})));
    v.push(
        post("bulk_get/ddoc-and-local", "/_bulk_get")
            .json(json!({"docs": [{"id": "_design/app"}, {"id": "_local/x"}]})),
    );
    v.push(
        post("bulk_get/odd-ids", "/_bulk_get")
            .json(json!({"docs": [{"id": "a/b"}, {"id": "été"}, {"id": "x:y"}]})),
    );
    v.push(
        post("bulk_get/duplicates", "/_bulk_get")
            .json(json!({"docs": [{"id": "a"}, {"id": "a"}, {"id": "b"}]})),
    );
    v.push(post("bulk_get/empty", "/_bulk_get").json(json!({"docs": []})));
    v.push(
        post("bulk_get/latest-unknown-rev", "/_bulk_get?latest=true")
            .json(json!({"docs": [{"id": "a", "rev": "9-00000000000000000000000000000000"}]})),
    );
    v.push(post("bulk_get/no-docs", "/_bulk_get").json(json!({})));
    v.push(post("bulk_get/docs-not-list", "/_bulk_get").json(json!({"docs": {}})));
    v.push(post("bulk_get/not-object", "/_bulk_get").json(json!([])));
    v.push(get("bulk_get/get", "/_bulk_get"));
    v.push(post("revs_diff/some-missing", "/_revs_diff").json_text(
        r#"{"a":["${rev:a}","3-00000000000000000000000000000abc"],"nope":["1-00000000000000000000000000000001"],"k":["2-00000000000000000000000000000002","2-00000000000000000000000000000009"]}"#,
    ));
    v.push(
        post("revs_diff/none-missing", "/_revs_diff")
            .json_text(r#"{"a":["${rev:a}"],"b":["${rev:b}"]}"#),
    );
    v.push(post("revs_diff/ancestors", "/_revs_diff").json(json!({"m": [format!("4-{}", h(99))]})));
    v.push(post("revs_diff/empty", "/_revs_diff").json(json!({})));
    v.push(post("revs_diff/odd-ids", "/_revs_diff").json(json!({"a/b": ["1-00000000000000000000000000000001"], "_design/app": ["9-00000000000000000000000000000001"]})));
    v.push(post("revs_diff/local", "/_revs_diff").json(json!({"_local/x": ["0-1"]})));
    v.push(post("revs_diff/not-list", "/_revs_diff").json(json!({"a": "1-x"})));
    v.push(post("revs_diff/bad-rev", "/_revs_diff").json(json!({"a": ["abc"]})));
    v.push(post("revs_diff/not-object", "/_revs_diff").json(json!(["a"])));
    v.push(post("revs_diff/not-json", "/_revs_diff").json_text("{"));
    v.push(post("revs_diff/missing-revs", "/_missing_revs").json(json!({"a": ["1-x"]})));
}

fn local_docs(v: &mut Vec<Step>) {
    v.push(get("local/get-missing", "/_local/ckpt"));
    v.push(put("local/put", "/_local/ckpt").json(json!({"last_seq": "0", "history": []})));
    v.push(get("local/get", "/_local/ckpt"));
    v.push(put("local/put-no-rev", "/_local/ckpt").json(json!({"v": 2})));
    v.push(
        put("local/put-with-rev", "/_local/ckpt")
            .json_text(r#"{"_rev":"${rev:_local/ckpt}","v":3}"#),
    );
    v.push(put("local/put-bad-rev", "/_local/ckpt").json(json!({"_rev": "0-99", "v": 4})));
    v.push(
        put(
            "local/rev-not-local-query",
            "/_local/r1?rev=2-bf88bfd823b8b1cd7f667b4b00f32a3d",
        )
        .json(json!({"v": 1})),
    );
    v.push(put("local/rev-not-local-body", "/_local/r2").json(json!({"_rev": "0-x", "v": 1})));
    v.push(
        put("local/rev-not-local-revisions", "/_local/r3").json(json!({
            "_revisions": {"start": 2, "ids": ["a", "b"]}, "v": 1,
        })),
    );
    v.push(post("local/rev-not-local-post", "").json(json!({"_id": "_local/r4", "_rev": "2-abc"})));
    v.push(put("local/put-encoded-slash", "/_local%2Fenc").json(json!({"v": 1})));
    v.push(get("local/get-encoded-slash", "/_local%2Fenc"));
    v.push(put("local/id-with-slash", "/_local/a%2Fb").json(json!({"v": 1})));
    v.push(get("local/get-id-with-slash", "/_local/a%2Fb"));
    v.push(get("local/revs", "/_local/ckpt?revs=true"));
    v.push(get(
        "local/rev-query",
        "/_local/ckpt?rev=${rev:_local/ckpt}",
    ));
    v.push(get("local/via-bulk", "/_local/viabulk"));
    v.push(put("local/attachment-put", "/_local/ckpt/att.txt").raw("text/plain", b"x"));
    v.push(get("local/attachment-get", "/_local/ckpt/att.txt"));
    v.push(
        put("local/inline-attachment", "/_local/withatt").json(json!({
            "_attachments": {"x.txt": {"content_type": "text/plain", "data": "eA=="}},
        })),
    );
    v.push(delete("local/delete-no-rev", "/_local/ckpt"));
    v.push(delete("local/delete-bad-rev", "/_local/ckpt?rev=0-99"));
    v.push(delete(
        "local/delete",
        "/_local/ckpt?rev=${rev:_local/ckpt}",
    ));
    v.push(get("local/get-deleted", "/_local/ckpt"));
    v.push(put("local/recreate", "/_local/ckpt").json(json!({"v": 5})));
    v.push(get("local/not-in-all-docs", "/_all_docs?keys=[\"_local/ckpt\"]").volatile_etag());
    v.push(step("POST", "local/post", "/_local/ckpt").json(json!({})));
    v.push(step("COPY", "local/copy", "/_local/ckpt").header("Destination", "_local/copied"));
}

fn request_forms(v: &mut Vec<Step>) {
    v.push(put("form/no-content-type", "/form1").text(None, r#"{"v":"untyped"}"#));
    v.push(put("form/urlencoded", "/form2").text(
        Some("application/x-www-form-urlencoded"),
        r#"{"v":"curl -d"}"#,
    ));
    v.push(put("form/text-plain", "/form3").text(Some("text/plain"), r#"{"v":"text"}"#));
    v.push(put("form/json-charset", "/form4").text(
        Some("application/json; charset=utf-8"),
        r#"{"v":"charset"}"#,
    ));
    v.push(put("form/other-type", "/form5").text(Some("application/xml"), r#"{"v":"xml"}"#));
    v.push(
        get(
            "form/read-back",
            "/_all_docs?keys=[\"form1\",\"form2\",\"form3\",\"form4\",\"form5\"]&include_docs=true",
        )
        .volatile_etag(),
    );
    v.push(post("form/post-untyped", "").text(None, r#"{"_id":"form6"}"#));
    v.push(post("form/bulk-untyped", "/_bulk_docs").text(None, r#"{"docs":[{"_id":"form7"}]}"#));
    v.push(
        post("form/bulk-text-plain", "/_bulk_docs")
            .text(Some("text/plain"), r#"{"docs":[{"_id":"form8"}]}"#),
    );
    v.push(put("form/gzip-put", "/gz1").gzip(json!({"v": "gzipped"})));
    v.push(get("form/gzip-read", "/gz1"));
    v.push(
        post("form/gzip-bulk-docs", "/_bulk_docs")
            .gzip(json!({"docs": [{"_id": "gz2"}, {"_id": "gz3"}]})),
    );
    v.push(
        post("form/gzip-revs-diff", "/_revs_diff")
            .gzip(json!({"gz2": ["1-00000000000000000000000000000001"]})),
    );
    v.push(
        post("form/gzip-all-docs", "/_all_docs")
            .gzip(json!({"keys": ["gz1", "gz2"]}))
            .volatile_etag(),
    );
    v.push(
        post("form/gzip-changes", "/_changes?filter=_doc_ids").gzip(json!({"doc_ids": ["gz1"]})),
    );
    v.push(
        put("form/gzip-bad", "/gz4")
            .header("Content-Encoding", "gzip")
            .raw("application/json", b"not gzip at all"),
    );
    v.push(
        put("form/unknown-encoding", "/gz5")
            .header("Content-Encoding", "br")
            .raw("application/json", b"{}"),
    );
    v.push(step("COPY", "form/copy", "/a").header("Destination", "a-copy"));
    v.push(get("form/copy-read", "/a-copy"));
    v.push(step("COPY", "form/copy-over-existing", "/a").header("Destination", "b"));
    v.push(step("COPY", "form/copy-over-with-rev", "/a").header("Destination", "b?rev=${rev:b}"));
    v.push(
        step("COPY", "form/copy-old-rev", "/a?rev=${rev:a@1}").header("Destination", "a-copy-old"),
    );
    v.push(step("COPY", "form/copy-no-destination", "/a"));
    v.push(step("COPY", "form/copy-missing-source", "/nothing").header("Destination", "x"));
    v.push(step("COPY", "form/copy-to-ddoc", "/a").header("Destination", "_design/copied"));
    v.push(step("COPY", "form/copy-to-reserved", "/a").header("Destination", "_bad"));
    v.push(get("form/accept-html", "/a").header("Accept", "text/html"));
    v.push(get("form/accept-any", "/a").header("Accept", "*/*"));
    v.push(get("form/open-revs-multipart", "/a?open_revs=all").header("Accept", "multipart/mixed"));
    v.push(get("form/long-id", &format!("/{}", "x".repeat(9000))));
    v.push(
        get(
            "form/long-query",
            &format!("/_all_docs?keys=[\"{}\"]", "y".repeat(12000)),
        )
        .volatile_etag(),
    );
    v.push(get("form/long-url-ok", &format!("/{}", "x".repeat(2000))));
}

fn bad_input(v: &mut Vec<Step>) {
    v.push(put("bad/reserved-id", "/_bad").json(json!({})));
    v.push(put("bad/reserved-id-encoded", "/%5Fbad").json(json!({})));
    v.push(get("bad/reserved-id-get", "/_bad"));
    v.push(put("bad/not-object", "/x").json(json!([1, 2])));
    v.push(put("bad/string-body", "/x").json(json!("text")));
    v.push(put("bad/invalid-json", "/x").json_text("{\"v\":"));
    v.push(put("bad/empty-body", "/x").json_text(""));
    v.push(put("bad/bad-rev-in-body", "/x").json(json!({"_rev": "abc"})));
    v.push(put("bad/rev-not-string", "/x").json(json!({"_rev": 5})));
    v.push(put("bad/unknown-underscore-field", "/x").json(json!({"_foo": 1})));
    v.push(
        put("bad/revisions-malformed", "/x?new_edits=false")
            .json(json!({"_rev": "1-abc", "_revisions": "nope"})),
    );
    v.push(
        put("bad/revisions-ids-not-list", "/x?new_edits=false")
            .json(json!({"_rev": "1-abc", "_revisions": {"start": 1, "ids": "abc"}})),
    );
    v.push(
        put("bad/revisions-start-not-int", "/x?new_edits=false")
            .json(json!({"_rev": "1-abc", "_revisions": {"start": "1", "ids": ["abc"]}})),
    );
    v.push(
        put("bad/revisions-id-not-string", "/x?new_edits=false")
            .json(json!({"_rev": "1-abc", "_revisions": {"start": 1, "ids": [5]}})),
    );
    v.push(put("bad/deleted-not-bool", "/x").json(json!({"_deleted": "yes"})));
    v.push(put("bad/attachments-not-object", "/x").json(json!({"_attachments": []})));
    v.push(put("bad/id-mismatch-ok", "/x").json(json!({"_id": "y"})));
    v.push(get("bad/x-read", "/x"));
    v.push(post("bad/post-not-object", "").json(json!([1])));
    v.push(post("bad/post-reserved-id", "").json(json!({"_id": "_bad"})));
    v.push(post("bad/post-id-not-string", "").json(json!({"_id": 5})));
    v.push(post("bad/post-design", "").json(json!({"_id": "_design/posted"})));
    v.push(post("bad/post-local", "").json(json!({"_id": "_local/posted"})));
    v.push(post("bad/post-not-json", "").json_text("{"));
    v.push(
        post("bad/bulk-reserved-id", "/_bulk_docs")
            .json(json!({"docs": [{"_id": "ok1"}, {"_id": "_bad"}]})),
    );
    v.push(
        post("bad/bulk-id-not-string", "/_bulk_docs")
            .json(json!({"docs": [{"_id": "ok2"}, {"_id": 5}]})),
    );
    v.push(post("bad/bulk-id-null", "/_bulk_docs").json(json!({"docs": [{"_id": null}]})));
    v.push(post("bad/bulk-doc-not-object", "/_bulk_docs").json(json!({"docs": [1]})));
    v.push(post("bad/bulk-no-docs", "/_bulk_docs").json(json!({})));
    v.push(post("bad/bulk-docs-not-list", "/_bulk_docs").json(json!({"docs": {}})));
    v.push(post("bad/bulk-not-object", "/_bulk_docs").json(json!([])));
    v.push(post("bad/bulk-not-json", "/_bulk_docs").json_text("[{"));
    v.push(
        post("bad/bulk-bad-rev", "/_bulk_docs")
            .json(json!({"docs": [{"_id": "br", "_rev": "abc"}]})),
    );
    v.push(
        post("bad/bulk-read-back", "/_all_docs")
            .json(json!({"keys": ["ok1", "ok2", "br"]}))
            .volatile_etag(),
    );
    v.push(get("bad/unknown-db-endpoint", "/_bogus"));
    v.push(post("bad/unknown-db-endpoint-post", "/_bogus").json(json!({})));
    v.push(put("bad/unknown-db-endpoint-put", "/_bogus").json(json!({})));
    v.push(get("bad/find-not-doc", "/_find"));
    v.push(get("bad/security", "/_security").keys(&["error"]));
    v.push(get("bad/purge", "/_purge"));
    v.push(put("bad/design-no-name", "/_design").json(json!({})));
    v.push(put("bad/local-no-name", "/_local").json(json!({})));
    v.push(get("bad/deep-attachment", "/a/b/c/d"));
    v.push(step("PATCH", "bad/patch-doc", "/a").json(json!({})));
    v.push(step("DELETE", "bad/delete-all-docs", "/_all_docs"));
    v.push(step("GET", "bad/get-bulk-docs", "/_bulk_docs"));
    v.push(step("GET", "bad/get-revs-diff", "/_revs_diff"));
    v.push(step(
        "GET",
        "bad/get-ensure-full-commit",
        "/_ensure_full_commit",
    ));
    v.push(get("bad/percent-invalid", "/a%ZZ"));
    v.push(get("bad/percent-not-utf8", "/%FF%FE"));
    v.push(get("bad/query-percent-invalid", "/_all_docs?keys=%ZZ").volatile_etag());
    v.push(get("bad/query-array-param", "/_changes?since[]=1"));
    v.push(get("bad/limit-huge", "/_all_docs?limit=99999999999999999999999").volatile_etag());
    v.push(get(
        "bad/changes-limit-huge",
        "/_changes?limit=99999999999999999999999",
    ));
    v.push(get("bad/skip-huge", "/_all_docs?skip=99999999999999999999999").volatile_etag());
    v.push(put("bad/huge-number", "/num").json_text(r#"{"n":1e400}"#));
    v.push(
        put("bad/deep-nesting", "/deep").json_text(
            &format!("{}{}", "[".repeat(200), "]".repeat(200))
                .replacen('[', "{\"d\":[", 1)
                .replacen(&"]".repeat(200), &format!("{}}}", "]".repeat(200)), 1),
        ),
    );
    v.push(put("bad/duplicate-id-keys", "/dup").json_text(r#"{"_id":"dup","_id":"other","v":1}"#));
    v.push(get("bad/duplicate-read", "/dup"));
    v.push(put("bad/utf8-invalid", "/utf").raw("application/json", b"{\"v\":\"\xff\"}"));
    v.push(put("bad/null-byte-id", "/nul%00l").json(json!({})));
    v.push(put("bad/empty-rev", "/x").json(json!({"_rev": ""})));
}

fn server(v: &mut Vec<Step>) {
    v.push(get("server/welcome", "/").server().keys(&["couchdb"]));
    v.push(
        get("server/session-anonymous", "/_session")
            .server()
            .anon()
            .keys(&["ok", "userCtx"]),
    );
    v.push(get("server/uuids", "/_uuids").server().volatile_etag());
    v.push(
        get("server/uuids-count", "/_uuids?count=3")
            .server()
            .volatile_etag(),
    );
    v.push(get("server/uuids-bad-count", "/_uuids?count=x").server());
    v.push(get("server/anonymous-db", "").anon().keys(&["error"]));
    v.push(get("server/bad-db-name", "/Bad_Name").server());
    v.push(put("server/bad-db-name-put", "/Bad_Name").server());
    v.push(get("server/missing-db", "/nosuchdb-for-couchgate").server());
    v.push(get("server/favicon", "/favicon.ico").server().no_body());
}

fn teardown(v: &mut Vec<Step>) {
    v.push(get("db/info-full", "").volatile_etag());
    // Last, because the backend makes up an id that differs between the targets.
    v.push(
        post("repl/bulk-new-edits-false-no-id", "/_bulk_docs").json(json!({
            "new_edits": false, "docs": [{"_rev": "1-abc"}],
        })),
    );
    v.push(delete("db/delete", ""));
    v.push(get("db/get-after-delete", ""));
    v.push(get("db/doc-after-delete", "/a"));
    v.push(delete("db/delete-again", ""));
}
