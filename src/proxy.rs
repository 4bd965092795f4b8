//! The one request entry point: [`Proxy::handle`] routes, authenticates, authorizes and hands
//! the request to its handler; every error becomes a CouchDB-shaped response here.

use crate::access_log;
use crate::auth::{Authenticator, ClientAddr, Identity};
use crate::backend::Backend;
use crate::body::{json_response, require_json_content_type, Body};
use crate::config::Config;
use crate::error::{Error, Fault, Result};
use crate::handlers::revs_diff::Form;
use crate::handlers::{self, only, Req};
use crate::routing::{self, DbEndpoint, Route};
use crate::state::State;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::Instrument;

/// Cheap to clone; one per connection.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub state: Arc<State>,
}

const SERVER: &str = concat!("couchgate/", env!("CARGO_PKG_VERSION"));

impl Proxy {
    /// Builds the proxy and starts its background tasks (so this runs inside a tokio
    /// runtime).
    pub fn new(config: Config, backend: Backend) -> Result<Proxy> {
        Ok(Proxy {
            state: Arc::new(State::start(config, backend)?),
        })
    }

    /// Serves one request. Never fails: errors become CouchDB-shaped responses.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, std::convert::Infallible> {
        let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path());
        let origin = req.headers().get(header::ORIGIN).cloned();
        let method = req.method().clone();
        let started = std::time::Instant::now();
        // The access log's work is only done when its lines are written.
        let log = access_log::enabled().then(|| {
            let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            (
                access_log::redact(target),
                Arc::new(access_log::Notes::default()),
            )
        });
        let inner = self.handle_inner(req).instrument(span.clone());
        let answered = match &log {
            Some((_, notes)) => access_log::scope(Arc::clone(notes), inner).await,
            None => inner.await,
        };
        let mut resp = match answered {
            Ok(resp) => resp,
            Err(e) => {
                let _g = span.enter();
                match e.fault() {
                    Fault::Client => {
                        tracing::info!(status = %e.status(), error = e.name(), reason = %e.reason(), "refused")
                    }
                    Fault::Backend => {
                        tracing::warn!(status = %e.status(), error = e.name(), reason = %e.reason(), "backend failure")
                    }
                    // The index being built is an expected state with its own 503, not a fault.
                    Fault::Couchgate if matches!(e, Error::NotReady(_)) => {
                        tracing::warn!(status = %e.status(), reason = %e.reason(), "not ready")
                    }
                    Fault::Couchgate => tracing::error!(reason = %e.reason(), "internal error"),
                }
                let mut r = json_response(e.status(), &e.body());
                if e.status() == StatusCode::UNAUTHORIZED {
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"couchgate\""),
                    );
                }
                if matches!(
                    e.status(),
                    StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
                ) {
                    // The rest of the body is never read: the connection cannot carry another
                    // request, and the client must not put one on it.
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                if matches!(e, Error::NotReady(_)) {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                }
                if let Error::TooManyRequests { retry_after, .. } = e {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                }
                r
            }
        };
        if method == Method::HEAD {
            *resp.body_mut() = crate::body::empty();
        }
        let not_modified = resp.status() == StatusCode::NOT_MODIFIED;
        let h = resp.headers_mut();
        h.insert(header::SERVER, HeaderValue::from_static(SERVER));
        // CouchDB's multipart answers are streamed without one; every other answer has it.
        let multipart = h
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"multipart/"));
        if !not_modified && !multipart {
            h.entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("must-revalidate"));
        }
        self.state.cors.decorate(origin.as_ref(), h);
        Ok(match log {
            Some((target, notes)) => access_log::Logged::wrap(resp, method, target, started, notes),
            None => resp,
        })
    }

    async fn handle_inner(&self, req: Request<Incoming>) -> Result<Response<Body>> {
        let st = &self.state;
        if let Some(resp) = st.cors.preflight(&req) {
            return Ok(resp);
        }
        let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if target_len > crate::backend::MAX_URL_BYTES {
            return Err(Error::bad_request(crate::backend::URL_TOO_LONG));
        }
        let route = routing::route(req.uri().path())?;
        let peer = req.extensions().get::<ClientAddr>().map(|a| a.0);
        let (parts, body) = req.into_parts();
        let req = Req::new(
            parts,
            body,
            st.config.max_body_bytes,
            st.config.body_read_timeout,
        )?;
        let method = req.method.clone();

        match route {
            Route::Welcome => {
                only(&method, &[Method::GET, Method::HEAD])?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "couchdb": "Welcome",
                        "version": "3.3.3",
                        "vendor": {"name": "couchgate", "version": env!("CARGO_PKG_VERSION")},
                        "features": [],
                        "couchgate": env!("CARGO_PKG_VERSION"),
                    }),
                ))
            }
            Route::Up => {
                only(&method, &[Method::GET, Method::HEAD])?;
                Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
            }
            Route::Session => match method {
                // Without credentials CouchDB answers who is asking: nobody.
                Method::GET | Method::HEAD
                    if !Authenticator::presents_credentials(&req.headers) =>
                {
                    Ok(handlers::session::anonymous())
                }
                Method::GET | Method::HEAD => {
                    let who = Box::pin(self.identify(&req, peer)).await?;
                    Ok(with_renewal(handlers::session::get(&who), &who))
                }
                Method::POST => Box::pin(handlers::session::post(st, req, peer)).await,
                Method::DELETE => Ok(handlers::session::delete(st)),
                _ => Err(handlers::not_allowed(&[
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::DELETE,
                ])),
            },
            Route::Uuids => {
                only(&method, &[Method::GET, Method::HEAD])?;
                handlers::db::uuids(&req)
            }
            Route::RefusedServer(refusal) => Err(refusal.into_error("this endpoint", &method)),
            route => Box::pin(self.db_route(route, req, peer)).await,
        }
    }

    /// A route inside a virtual database: authenticate, authorize, then the handler.
    async fn db_route(
        &self,
        route: Route,
        req: Req,
        peer: Option<IpAddr>,
    ) -> Result<Response<Body>> {
        let st = &self.state;
        let method = req.method.clone();
        let db = match &route {
            Route::Db { db }
            | Route::RefusedDb { db, .. }
            | Route::DbEndpoint { db, .. }
            | Route::Local { db, .. }
            | Route::Doc { db, .. }
            | Route::CompactDesign { db, .. }
            | Route::Index { db, .. }
            | Route::Attachment { db, .. } => db.clone(),
            Route::Welcome
            | Route::Up
            | Route::Session
            | Route::Uuids
            | Route::RefusedServer(_) => {
                return Err(Error::Internal("not a database route".into()))
            }
        };
        let who = Box::pin(self.authorize(&req, peer, &db, is_write(&route, &method))).await?;
        // Each handler's future is boxed: held inline, the largest would size (and be copied
        // with) every request's future, whatever its route.
        let resp = match route {
            Route::Db { db } => Box::pin(handlers::db::handle(st, &who, &db, req)).await,
            Route::RefusedDb { refusal, .. } => Err(refusal.into_error("this endpoint", &method)),
            Route::DbEndpoint { db, endpoint } => {
                let ns = st.registry.require(&who.user, &db).await?;
                match endpoint {
                    DbEndpoint::AllDocs => {
                        only(&method, &[Method::GET, Method::HEAD, Method::POST])?;
                        Box::pin(handlers::all_docs::handle(st, &ns, req)).await
                    }
                    DbEndpoint::Changes => {
                        only(&method, &[Method::GET, Method::POST, Method::HEAD])?;
                        Box::pin(handlers::changes::handle(st, &ns, req, who.expires)).await
                    }
                    DbEndpoint::BulkDocs => {
                        only(&method, &[Method::POST])?;
                        Box::pin(handlers::bulk_docs::handle(st, &ns, req)).await
                    }
                    DbEndpoint::BulkGet => {
                        only(&method, &[Method::POST])?;
                        Box::pin(handlers::bulk_get::handle(st, &ns, req)).await
                    }
                    DbEndpoint::RevsDiff => {
                        only(&method, &[Method::POST])?;
                        Box::pin(handlers::revs_diff::handle(st, &ns, req, Form::RevsDiff)).await
                    }
                    DbEndpoint::MissingRevs => {
                        only(&method, &[Method::POST])?;
                        Box::pin(handlers::revs_diff::handle(st, &ns, req, Form::MissingRevs)).await
                    }
                    DbEndpoint::EnsureFullCommit => {
                        only(&method, &[Method::POST])?;
                        require_json_content_type(&req.headers)?;
                        Ok(json_response(
                            StatusCode::CREATED,
                            &json!({"ok": true, "instance_start_time": "0"}),
                        ))
                    }
                    // A per-user compaction of the shared database means nothing; CouchDB
                    // acknowledges these with 202 and so does couchgate, without a backend call.
                    DbEndpoint::Find | DbEndpoint::Explain => {
                        only(&method, &[Method::POST])?;
                        let explain = endpoint == DbEndpoint::Explain;
                        Box::pin(handlers::find::handle(st, &ns, req, explain)).await
                    }
                    DbEndpoint::Compact | DbEndpoint::ViewCleanup => {
                        only(&method, &[Method::POST])?;
                        require_json_content_type(&req.headers)?;
                        Ok(json_response(StatusCode::ACCEPTED, &json!({"ok": true})))
                    }
                }
            }
            Route::Index { db, rest } => {
                let ns = st.registry.require(&who.user, &db).await?;
                Box::pin(handlers::index::handle(st, &ns, req, &rest)).await
            }
            Route::CompactDesign { db, name } => {
                let ns = st.registry.require(&who.user, &db).await?;
                only(&method, &[Method::POST])?;
                require_json_content_type(&req.headers)?;
                handlers::doc::require_exists(st, &ns, &format!("_design/{name}")).await?;
                Ok(json_response(StatusCode::ACCEPTED, &json!({"ok": true})))
            }
            Route::Local { db, id } => {
                let ns = st.registry.require(&who.user, &db).await?;
                Box::pin(handlers::local::handle(st, &ns, &id, req)).await
            }
            Route::Doc { db, id } => {
                let ns = st.registry.require(&who.user, &db).await?;
                Box::pin(handlers::doc::handle(st, &ns, &id, req)).await
            }
            Route::Attachment { db, id, name } => {
                let ns = st.registry.require(&who.user, &db).await?;
                Box::pin(handlers::attachment::handle(st, &ns, &id, &name, req)).await
            }
            Route::Welcome
            | Route::Up
            | Route::Session
            | Route::Uuids
            | Route::RefusedServer(_) => Err(Error::Internal("not a database route".into())),
        }?;
        Ok(with_renewal(resp, &who))
    }

    /// The caller's identity: their credentials, then the act-as header.
    async fn identify(&self, req: &Req, peer: Option<IpAddr>) -> Result<Identity> {
        let auth = &self.state.auth;
        let who = auth.authenticate(&req.headers, peer).await?;
        let who = auth.act_as(who, &req.headers)?;
        access_log::note_user(&who.user);
        Ok(who)
    }

    /// Authenticates the caller and checks that `db` is a name they may use, and that they
    /// may write when the request is a write.
    async fn authorize(
        &self,
        req: &Req,
        peer: Option<IpAddr>,
        db: &str,
        write: bool,
    ) -> Result<Identity> {
        let who = self.identify(req, peer).await?;
        if !self.state.config.allowed_databases.allows(db) {
            return Err(Error::Forbidden(format!(
                "the database name `{db}` is not allowed on this server"
            )));
        }
        if write {
            self.state.auth.may_write(&who)?;
        }
        Ok(who)
    }
}

/// Whether a request to a database route writes: everything but GET and HEAD, except the
/// POST endpoints that only read.
fn is_write(route: &Route, method: &Method) -> bool {
    if method == Method::GET || method == Method::HEAD {
        return false;
    }
    !matches!(
        route,
        Route::DbEndpoint {
            endpoint: DbEndpoint::AllDocs
                | DbEndpoint::Changes
                | DbEndpoint::BulkGet
                | DbEndpoint::RevsDiff
                | DbEndpoint::Find
                | DbEndpoint::Explain,
            ..
        } if method == Method::POST
    )
}

/// Adds the renewed session cookie, if the caller's session was renewed.
fn with_renewal(mut resp: Response<Body>, who: &Identity) -> Response<Body> {
    if let Some(c) = who.renewed_cookie.as_deref() {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes() {
        let ep = |endpoint| Route::DbEndpoint {
            db: "d".into(),
            endpoint,
        };
        let doc = Route::Doc {
            db: "d".into(),
            id: "x".into(),
        };
        assert!(!is_write(&doc, &Method::GET));
        assert!(!is_write(&doc, &Method::HEAD));
        assert!(is_write(&doc, &Method::PUT));
        assert!(is_write(&doc, &Method::DELETE));
        assert!(is_write(&Route::Db { db: "d".into() }, &Method::PUT));
        for e in [
            DbEndpoint::AllDocs,
            DbEndpoint::Changes,
            DbEndpoint::BulkGet,
            DbEndpoint::RevsDiff,
        ] {
            assert!(!is_write(&ep(e), &Method::POST), "{e:?}");
        }
        assert!(is_write(&ep(DbEndpoint::BulkDocs), &Method::POST));
        assert!(is_write(&ep(DbEndpoint::EnsureFullCommit), &Method::POST));
    }
}
