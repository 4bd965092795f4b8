//! `POST /{db}/_revs_diff` (which of the given revisions the namespace lacks, and their
//! possible ancestors) and its older form `POST /{db}/_missing_revs`.

use super::Req;
use crate::body::{json_text_response, Body};
use crate::error::{Error, Result};
use crate::json::raw::{ObjectWriter, RawObject};
use crate::namespace::Namespace;
use crate::state::State;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// Which of the two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `_revs_diff`: `{id: {"missing": [...], "possible_ancestors": [...]}}`.
    RevsDiff,
    /// `_missing_revs`: `{"missing_revs": {id: [...]}}`.
    MissingRevs,
}

pub async fn handle(st: &State, ns: &Namespace, req: Req, form: Form) -> Result<Response<Body>> {
    let Value::Object(asked) = req.json().await? else {
        return Err(Error::bad_request("Request body must be a JSON object"));
    };
    // The answer is written as text: couchgate's own entries, then the backend's, whose
    // values pass as the backend wrote them (only the ids change).
    let mut answer = ObjectWriter::with_capacity(64 * asked.len());
    let mut bodies: Vec<ObjectWriter> = Vec::new();
    for (id, revs) in &asked {
        if !revs.is_array() {
            return Err(Error::bad_request(format!(
                "revisions of `{id}` must be an array"
            )));
        }
        crate::validate::rev_list(revs)?;
        match ns.encode_doc_id(id) {
            Ok(backing) => {
                let body = match bodies.last_mut() {
                    Some(body) if body.len() < super::REVS_DIFF_CHUNK => body,
                    _ => {
                        bodies.push(ObjectWriter::with_capacity(0));
                        bodies.last_mut().expect("a body was just pushed")
                    }
                };
                body.value(&backing, revs);
            }
            // An id no document can have: every revision is missing, as in CouchDB.
            Err(_) => match form {
                Form::RevsDiff => answer.value(id, &json!({ "missing": revs })),
                Form::MissingRevs => answer.value(id, revs),
            },
        }
    }
    let path = match form {
        Form::RevsDiff => "/_revs_diff",
        Form::MissingRevs => "/_missing_revs",
    };
    let url = st.backend.db_url(path);
    for body in bodies {
        let text = st
            .backend
            .json_text(Method::POST, &url, body.finish())
            .await?;
        let not_object = || Error::BadGateway(format!("{path} answer is not an object"));
        let diff = RawObject::parse(&text).ok_or_else(not_object)?;
        let inner;
        let diff = match form {
            Form::RevsDiff => &diff,
            Form::MissingRevs => {
                let revs = diff.get("missing_revs").ok_or_else(not_object)?;
                inner = RawObject::parse(revs.get().as_bytes()).ok_or_else(not_object)?;
                &inner
            }
        };
        for (backing, v) in diff.members() {
            if let Some(id) = ns.decode_id(backing) {
                answer.raw(&id, v);
            }
        }
    }
    let mut out = match form {
        Form::RevsDiff => answer.finish(),
        Form::MissingRevs => {
            let mut wrapped = ObjectWriter::with_capacity(0);
            wrapped.raw_text("missing_revs", &answer.finish());
            wrapped.finish()
        }
    };
    out.push(b'\n');
    Ok(json_text_response(StatusCode::OK, out))
}
