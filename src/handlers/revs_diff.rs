//! `POST /{db}/_revs_diff`: which of the given revisions the namespace lacks.

use super::Req;
use crate::body::{json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::proxy::State;
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value};

pub async fn handle(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    let Value::Object(asked) = req.json().await? else {
        return Err(Error::bad_request(
            "_revs_diff expects an object of id: [revs]",
        ));
    };
    let mut forward = Map::new();
    let mut answer = Map::new();
    for (id, revs) in asked {
        if !revs.is_array() {
            return Err(Error::bad_request(format!(
                "revisions of `{id}` must be an array"
            )));
        }
        match ns.encode_doc_id(&id) {
            Ok(backing) => {
                forward.insert(backing, revs);
            }
            // An id no document can have: every revision is missing, as in CouchDB.
            Err(_) => {
                answer.insert(id, serde_json::json!({ "missing": revs }));
            }
        }
    }
    if !forward.is_empty() {
        let url = st.backend.db_url("/_revs_diff");
        let (_, diff) = st
            .backend
            .json(Method::POST, &url, Some(&Value::Object(forward)))
            .await?;
        let Value::Object(diff) = diff else {
            return Err(Error::BadGateway(
                "_revs_diff answer is not an object".into(),
            ));
        };
        for (backing, v) in diff {
            if let Some(id) = ns.decode_id(&backing) {
                answer.insert(id, v);
            }
        }
    }
    Ok(json_response(StatusCode::OK, &Value::Object(answer)))
}
