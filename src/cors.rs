//! CORS, as CouchDB's `[cors]` section does it: an origin allow-list (or `*`), optional
//! credentials, preflight answers, and the headers browsers need to read CouchDB responses.

use crate::body::{empty, Body};
use crate::config::CorsConfig;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

const ALLOW_METHODS: &str = "GET, PUT, POST, HEAD, DELETE";
/// Request headers a browser may send (lower case).
const ALLOW_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "authorization",
    "content-length",
    "content-range",
    "content-type",
    "destination",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "origin",
    "range",
    "referer",
    "x-csrf-token",
    "x-http-method-override",
    "x-requested-with",
];
const EXPOSE_HEADERS: &str = "content-type, cache-control, accept-ranges, etag, server, \
                              x-couch-request-id, x-couch-update-newrev, x-couchdb-body-time";

#[derive(Debug, Clone)]
pub struct Cors {
    /// `None`: CORS is off.
    origins: Option<Vec<String>>,
    any: bool,
    credentials: bool,
}

impl Cors {
    pub fn new(config: &CorsConfig) -> Cors {
        let any = config
            .origins
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o == "*"));
        Cors {
            any,
            origins: config.origins.clone(),
            // Any origin with credentials would let every web site act for its visitors; the
            // configuration refuses it, and it is never served.
            credentials: config.credentials && !any,
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if it is allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let origins = self.origins.as_ref()?;
        let o = origin.to_str().ok()?;
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        origins.iter().any(|a| a == o).then(|| origin.clone())
    }

    /// Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`).
    pub fn preflight<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        if req.method() != Method::OPTIONS || self.origins.is_none() {
            return None;
        }
        let origin = req.headers().get(header::ORIGIN)?;
        req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let Some(allow) = self.allow_origin(origin) else {
            return Some(resp);
        };
        let requested = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let all_allowed = requested
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .all(|h| ALLOW_HEADERS.contains(&h.as_str()));
        if !all_allowed {
            return Some(resp);
        }
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_str(&ALLOW_HEADERS.join(", ")).expect("static ASCII"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        self.common(h);
        Some(resp)
    }

    /// Adds CORS headers to an ordinary response.
    pub fn decorate(&self, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
        let Some(allow) = origin.and_then(|o| self.allow_origin(o)) else {
            return;
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        self.common(h);
    }

    fn common(&self, h: &mut HeaderMap) {
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::new(&CorsConfig {
            origins: Some(origins.iter().map(|s| s.to_string()).collect()),
            credentials,
        })
    }

    fn preflight(c: &Cors, origin: &str, headers: &str) -> Response<Body> {
        let req = Request::builder()
            .method(Method::OPTIONS)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .body(())
            .unwrap();
        c.preflight(&req).unwrap()
    }

    #[test]
    fn preflight_for_allowed_and_other_origins() {
        let c = cors(&["http://app.example"], true);
        let r = preflight(&c, "http://app.example", "authorization, content-type");
        assert_eq!(r.status(), 204);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "http://app.example"
        );
        assert_eq!(r.headers()["access-control-allow-credentials"], "true");
        let r = preflight(&c, "http://evil.example", "authorization");
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let r = preflight(&c, "http://app.example", "x-unknown");
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }

    #[test]
    fn wildcard() {
        let mut h = HeaderMap::new();
        cors(&["*"], false).decorate(Some(&HeaderValue::from_static("http://x")), &mut h);
        assert_eq!(h["access-control-allow-origin"], "*");
        let mut h = HeaderMap::new();
        cors(&["*"], true).decorate(Some(&HeaderValue::from_static("http://x")), &mut h);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(
            h.get("access-control-allow-credentials").is_none(),
            "never credentials for any origin"
        );
        let mut h = HeaderMap::new();
        Cors::new(&CorsConfig::default())
            .decorate(Some(&HeaderValue::from_static("http://x")), &mut h);
        assert!(h.is_empty(), "CORS off");
    }
}
