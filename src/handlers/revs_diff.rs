//! `POST /{db}/_revs_diff` (which of the given revisions the namespace lacks, and their
//! possible ancestors) and its older form `POST /{db}/_missing_revs`.

use super::Req;
use crate::body::{json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::state::State;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

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
    let mut forward = Map::new();
    let mut answer = Map::new();
    for (id, revs) in asked {
        if !revs.is_array() {
            return Err(Error::bad_request(format!(
                "revisions of `{id}` must be an array"
            )));
        }
        crate::validate::rev_list(&revs)?;
        match ns.encode_doc_id(&id) {
            Ok(backing) => {
                forward.insert(backing, revs);
            }
            // An id no document can have: every revision is missing, as in CouchDB.
            Err(_) => {
                let missing = match form {
                    Form::RevsDiff => json!({ "missing": revs }),
                    Form::MissingRevs => revs,
                };
                answer.insert(id, missing);
            }
        }
    }
    let path = match form {
        Form::RevsDiff => "/_revs_diff",
        Form::MissingRevs => "/_missing_revs",
    };
    for chunk in super::map_chunks(forward, super::REVS_DIFF_CHUNK) {
        let (_, mut diff) = st
            .backend
            .json(
                Method::POST,
                &st.backend.db_url(path),
                Some(&Value::Object(chunk)),
            )
            .await?;
        if form == Form::MissingRevs {
            diff = diff
                .get_mut("missing_revs")
                .map(Value::take)
                .unwrap_or(Value::Null);
        }
        let Value::Object(diff) = diff else {
            return Err(Error::BadGateway(format!("{path} answer is not an object")));
        };
        for (backing, v) in diff {
            if let Some(id) = ns.decode_id(&backing) {
                answer.insert(id, v);
            }
        }
    }
    let answer = match form {
        Form::RevsDiff => Value::Object(answer),
        Form::MissingRevs => json!({ "missing_revs": answer }),
    };
    Ok(json_response(StatusCode::OK, &answer))
}
