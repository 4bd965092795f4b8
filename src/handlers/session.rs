//! `GET /_session`: who the token says the caller is, in CouchDB's shape.

use crate::auth::Identity;
use crate::body::{json_response, Body};
use http::{Response, StatusCode};
use serde_json::json;

pub fn get(who: &Identity) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "userCtx": {"name": who.user, "roles": who.roles},
            "info": {
                "authentication_handlers": ["jwt"],
                "authenticated": "jwt",
            },
        }),
    )
}
