//! `GET|POST /{db}/_index` and `DELETE /{db}/_index/{ddoc}/json/{name}`: a user's Mango
//! indexes.
//!
//! A user's index never becomes a design document of their own in the shared database (one per
//! user would make CouchDB build every user's index over every user's documents). Instead:
//! - the backend holds **shared** indexes, one per distinct definition (`fields`, and a
//!   `partial_filter_selector` without `_id`), in design documents named
//!   `_design/couchgate-mango-{hash of the definition}`, index `idx`; CouchDB builds each once
//!   for all users, and `_find` confines every query to the caller's namespace;
//! - each namespace keeps its own list of indexes (the `ddoc` and `name` the user chose, the
//!   definition, the shared index behind it) in a `_local` document of its own
//!   ([`Namespace::mango_indexes_id`]), at most [`MAX_INDEXES`] of them; `GET _index` lists only
//!   those, and `use_index` names only those.
//!
//! Deleting an index removes it from the user's list; the shared index stays for the users who
//! still list it (removing unused shared indexes is the operator's `_view_cleanup`).

use super::Req;
use crate::backend::encode_doc_id;
use crate::body::{self, json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::state::State;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Most Mango indexes one virtual database may list.
pub const MAX_INDEXES: usize = 16;

/// Prefix of the shared index design documents.
pub const SHARED_PREFIX: &str = "_design/couchgate-mango-";

/// One index of a user's list.
#[derive(Debug, Clone, PartialEq)]
pub struct UserIndex {
    /// `_design/...`, as the user named it.
    pub ddoc: String,
    pub name: String,
    /// The definition as CouchDB shows it (`{"fields": [{"a": "asc"}], ...}`).
    pub def: Value,
    /// The shared index's design document id.
    pub shared: String,
}

/// A namespace's list of indexes and the revision of the document holding it.
#[derive(Debug, Default)]
pub struct UserIndexes {
    pub list: Vec<UserIndex>,
    rev: Option<String>,
}

fn meta_url(st: &State, ns: &Namespace) -> String {
    st.backend
        .db_url(&format!("/{}", encode_doc_id(&ns.mango_indexes_id())))
}

impl UserIndexes {
    pub async fn load(st: &State, ns: &Namespace) -> Result<UserIndexes> {
        match st.backend.json(Method::GET, &meta_url(st, ns), None).await {
            Ok((_, doc)) => Ok(UserIndexes {
                list: doc["indexes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        Some(UserIndex {
                            ddoc: i["ddoc"].as_str()?.to_owned(),
                            name: i["name"].as_str()?.to_owned(),
                            def: i["def"].clone(),
                            shared: i["shared"].as_str()?.to_owned(),
                        })
                    })
                    .collect(),
                rev: doc["_rev"].as_str().map(str::to_owned),
            }),
            Err(e) if e.status() == StatusCode::NOT_FOUND => Ok(UserIndexes::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the list back; a concurrent change is a 409 `conflict` for the caller to retry.
    async fn save(&self, st: &State, ns: &Namespace) -> Result<()> {
        let list: Vec<Value> = self
            .list
            .iter()
            .map(|i| json!({"ddoc": i.ddoc, "name": i.name, "def": i.def, "shared": i.shared}))
            .collect();
        let mut doc = json!({ "indexes": list });
        if let Some(rev) = &self.rev {
            doc["_rev"] = json!(rev);
        }
        st.backend
            .json(Method::PUT, &meta_url(st, ns), Some(&doc))
            .await
            .map(|_| ())
    }

    /// The user's index `use_index` names: `"ddoc"`, `"_design/ddoc"` or `["ddoc", "name"]`.
    pub fn named(&self, use_index: &Value) -> Option<&UserIndex> {
        let ddoc = design_id;
        match use_index {
            Value::String(d) => {
                let d = ddoc(d);
                self.list.iter().find(|i| i.ddoc == d)
            }
            Value::Array(a) => match a.as_slice() {
                [Value::String(d)] => self.named(&json!(d)),
                [Value::String(d), Value::String(n)] => {
                    let d = ddoc(d);
                    self.list.iter().find(|i| i.ddoc == d && &i.name == n)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The user's index behind a shared design document id.
    pub fn by_shared(&self, shared: &str) -> Option<&UserIndex> {
        self.list.iter().find(|i| i.shared == shared)
    }
}

/// A design document named with or without its `_design/` prefix, as Mango takes both.
pub fn design_id(d: &str) -> String {
    if d.starts_with("_design/") {
        d.to_owned()
    } else {
        format!("_design/{d}")
    }
}

/// Mango's error for a required member of a request body that is missing.
pub fn missing_key(key: &str) -> Error {
    Error::Mango {
        name: "missing_required_key",
        reason: format!("Missing required key: {key}"),
    }
}

/// Whether a backend design document id is one of the shared Mango indexes.
pub fn is_shared(ddoc: &str) -> bool {
    ddoc.starts_with(SHARED_PREFIX)
}

pub async fn handle(
    st: &State,
    ns: &Namespace,
    req: Req,
    rest: &[String],
) -> Result<Response<Body>> {
    match (&req.method, rest) {
        (&Method::GET, []) => list(st, ns).await,
        (&Method::POST, []) => create(st, ns, req).await,
        (&Method::DELETE, [ddoc @ .., ty, name]) if !ddoc.is_empty() && ty == "json" => {
            let ddoc = ddoc.join("/");
            delete(st, ns, &ddoc, name).await
        }
        (&Method::DELETE, _) => Err(Error::not_found("Index not found")),
        (_, []) => Err(Error::MethodNotAllowed("Only GET, POST allowed".into())),
        _ => Err(Error::MethodNotAllowed("Only DELETE allowed".into())),
    }
}

/// The special `_all_docs` index every database has.
fn special() -> Value {
    json!({"ddoc": null, "name": "_all_docs", "type": "special",
           "def": {"fields": [{"_id": "asc"}]}})
}

fn shown(i: &UserIndex, partitioned: bool) -> Value {
    json!({"ddoc": i.ddoc, "name": i.name, "type": "json", "partitioned": partitioned,
           "def": i.def})
}

async fn list(st: &State, ns: &Namespace) -> Result<Response<Body>> {
    let mine = UserIndexes::load(st, ns).await?;
    let partitioned = st.backend.is_partitioned().await?;
    let mut indexes = vec![special()];
    indexes.extend(mine.list.iter().map(|i| shown(i, partitioned)));
    Ok(json_response(
        StatusCode::OK,
        &json!({"total_rows": indexes.len(), "indexes": indexes}),
    ))
}

/// The name CouchDB-like defaults give an index of this definition: a hash of it.
fn default_name(def: &Value) -> String {
    let hash = Sha256::digest(def.to_string().as_bytes());
    hash.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

async fn create(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    body::require_json_content_type(&req.headers)?;
    let Value::Object(body) = req.json().await? else {
        return Err(Error::bad_request("Request body must be a JSON object"));
    };
    let Some(index) = body.get("index") else {
        return Err(missing_key("index"));
    };
    match body.get("type") {
        None => {}
        Some(Value::String(t)) if t == "json" => {}
        Some(other) => {
            return Err(Error::Mango {
                name: "invalid_index_type",
                reason: format!(
                    "couchgate serves json indexes only, not: {}",
                    crate::mango::selector::erlang_term(other)
                ),
            })
        }
    }
    if let Some(pfs) = index.get("partial_filter_selector") {
        if pfs.to_string().contains("\"_id\"") {
            return Err(Error::bad_request(
                "a partial_filter_selector naming _id is not supported by couchgate (indexes \
                 are shared by all users; _find confines every query to its namespace)",
            ));
        }
    }
    // The shared index: named by its definition, created (or found) on the backend first, so
    // CouchDB checks the definition and answers its own errors.
    let canonical =
        json!({"fields": index.get("fields"), "pfs": index.get("partial_filter_selector")});
    let shared = format!("{SHARED_PREFIX}{}", default_name(&canonical));
    let mut fwd = Map::new();
    fwd.insert("index".into(), index.clone());
    // The design document's name without `_design/` (CouchDB takes both; PouchDB Server adds
    // the prefix again).
    fwd.insert(
        "ddoc".into(),
        json!(shared.strip_prefix("_design/").unwrap_or(&shared)),
    );
    fwd.insert("name".into(), json!("idx"));
    fwd.insert("type".into(), json!("json"));
    st.backend
        .json(
            Method::POST,
            &st.backend.db_url("/_index"),
            Some(&Value::Object(fwd)),
        )
        .await?;
    let def = shown_def(index);

    let name = match body.get("name") {
        None => default_name(&def),
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        Some(_) => return Err(invalid_name()),
    };
    let ddoc = match body.get("ddoc") {
        None => format!("_design/{}", default_name(&def)),
        Some(Value::String(d)) if !d.is_empty() && d != "_design/" => design_id(d),
        Some(_) => return Err(invalid_name()),
    };
    // Recorded in the user's list; a concurrent writer of the list makes this retry.
    for _ in 0..5 {
        let mut mine = UserIndexes::load(st, ns).await?;
        let entry = UserIndex {
            ddoc: ddoc.clone(),
            name: name.clone(),
            def: def.clone(),
            shared: shared.clone(),
        };
        let result = match mine
            .list
            .iter()
            .position(|i| i.ddoc == ddoc && i.name == name)
        {
            Some(at) if mine.list[at] == entry => {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({"result": "exists", "id": ddoc, "name": name}),
                ))
            }
            Some(at) => {
                mine.list[at] = entry;
                "created"
            }
            None if mine.list.len() >= MAX_INDEXES => {
                return Err(Error::Forbidden(format!(
                    "index quota: at most {MAX_INDEXES} Mango indexes per database"
                )))
            }
            None => {
                mine.list.push(entry);
                "created"
            }
        };
        match mine.save(st, ns).await {
            Ok(()) => {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({"result": result, "id": ddoc, "name": name}),
                ))
            }
            Err(e) if e.status() == StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict("Document update conflict.".into()))
}

fn invalid_name() -> Error {
    Error::Mango {
        name: "invalid_empty_string",
        reason: "Index name or ddoc cannot be empty string".into(),
    }
}

/// The definition as CouchDB's `GET _index` shows it, of an index CouchDB has accepted: each
/// field as `{"name": "asc"|"desc"}`, then the partial filter as given. (Built here rather than
/// read back: right after a write CouchDB's `_index` list may not show it yet.)
fn shown_def(index: &Value) -> Value {
    let fields: Vec<Value> = index["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| match f {
            Value::String(name) => json!({ name.as_str(): "asc" }),
            other => other.clone(),
        })
        .collect();
    let mut def = json!({ "fields": fields });
    if let Some(pfs) = index.get("partial_filter_selector") {
        def["partial_filter_selector"] = pfs.clone();
    }
    def
}

async fn delete(st: &State, ns: &Namespace, ddoc: &str, name: &str) -> Result<Response<Body>> {
    let ddoc = design_id(ddoc);
    for _ in 0..5 {
        let mut mine = UserIndexes::load(st, ns).await?;
        let before = mine.list.len();
        mine.list.retain(|i| !(i.ddoc == ddoc && i.name == name));
        if mine.list.len() == before {
            return Err(Error::not_found("Index not found"));
        }
        match mine.save(st, ns).await {
            Ok(()) => return Ok(json_response(StatusCode::OK, &json!({"ok": true}))),
            Err(e) if e.status() == StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict("Document update conflict.".into()))
}
