//! `/_session`, as CouchDB has it: `GET` says who the credentials name; `POST` opens a session
//! (an `AuthSession` cookie) from a token (the `Authorization` header or `{"token": ...}`) or
//! from a name and password (JSON or form body, when Basic auth is enabled); `DELETE` ends it.

use super::Req;
use crate::auth::Identity;
use crate::body::{json_response, read_limited, Body};
use crate::error::{Error, Result};
use crate::state::State;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use std::net::IpAddr;

/// Largest `POST /_session` body read.
const MAX_BODY: u64 = 64 * 1024;

/// `GET /_session` without credentials: CouchDB's answer for an anonymous caller.
pub fn anonymous() -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "userCtx": {"name": null, "roles": []},
            "info": {"authentication_handlers": ["jwt", "cookie", "default"]},
        }),
    )
}

pub fn get(who: &Identity) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "userCtx": {"name": who.user, "roles": who.roles},
            "info": {
                "authentication_handlers": ["jwt", "cookie", "default"],
                "authenticated": who.method.couchdb_name(),
            },
        }),
    )
}

pub async fn post(st: &State, req: Req, peer: Option<IpAddr>) -> Result<Response<Body>> {
    let auth = &st.auth;
    let who = if req.headers.contains_key(header::AUTHORIZATION) {
        auth.authenticate(&req.headers, peer).await?
    } else {
        let form = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = read_limited(req.body, MAX_BODY).await?;
        let fields: Value = if form {
            url::form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        } else {
            serde_json::from_slice(&bytes)?
        };
        let text = |k: &str| fields.get(k).and_then(Value::as_str);
        match (text("token"), text("name"), text("password")) {
            (Some(token), _, _) => auth.verify_token(token).await?,
            (None, Some(name), Some(password)) => auth.check_password(name, password, peer).await?,
            _ => return Err(Error::bad_request("give `token`, or `name` and `password`")),
        }
    };
    let cookie = auth
        .open_session(&who, jsonwebtoken::get_current_timestamp())
        .await?;
    let mut r = json_response(
        StatusCode::OK,
        &json!({"ok": true, "name": who.user, "roles": who.roles}),
    );
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| Error::Internal("bad cookie".into()))?,
    );
    Ok(r)
}

pub fn delete(st: &State) -> Response<Body> {
    let mut r = json_response(StatusCode::OK, &json!({"ok": true}));
    if let Ok(v) = HeaderValue::from_str(&st.auth.sessions().close()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
