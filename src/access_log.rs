//! The access log: one line per request, written when its answer has been sent (or the client
//! went away), under the `couchgate::access` target: method, path (query values that may be
//! secrets redacted), status, body bytes sent, duration, the user, and the number of requests
//! it made to the backend. With `--log-format json` every log line, these included, is JSON.
//!
//! What a handler learns on the way (the user, each backend request) is noted on the
//! request's [`Notes`], reached through a task-local set by [`scope`]: nothing needs passing
//! through the handlers. Work a request leaves to other tasks (the changes follower catching
//! up for it) is not counted.

use crate::body::{Body, BoxError};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// What is learnt about one request while it is handled.
#[derive(Debug, Default)]
pub struct Notes {
    user: Mutex<Option<String>>,
    upstream: AtomicU32,
}

tokio::task_local! {
    static CURRENT: Arc<Notes>;
}

/// Whether access-log lines are written (the log filter lets `couchgate::access` through).
pub fn enabled() -> bool {
    tracing::enabled!(target: "couchgate::access", tracing::Level::INFO)
}

/// Runs `f` with `notes` as the current request's.
pub async fn scope<F: std::future::Future>(notes: Arc<Notes>, f: F) -> F::Output {
    CURRENT.scope(notes, f).await
}

/// Spawns a task that goes on with the current request's work (streaming the rest of its
/// answer): what it does is noted as the request's.
pub fn spawn<F>(f: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match CURRENT.try_with(Arc::clone) {
        Ok(notes) => tokio::spawn(CURRENT.scope(notes, f)),
        Err(_) => tokio::spawn(f),
    }
}

/// The current request's user (once authenticated).
pub fn note_user(name: &str) {
    let _ = CURRENT.try_with(|n| {
        if let Ok(mut u) = n.user.lock() {
            *u = Some(name.to_owned());
        }
    });
}

/// One request to the backend made for the current request.
pub fn note_upstream() {
    let _ = CURRENT.try_with(|n| n.upstream.fetch_add(1, Ordering::Relaxed));
}

/// Query parameters whose values are never logged: names that end in one of these.
const SECRET_NAMES: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "apikey",
    "api_key",
    "auth",
    "signature",
    "sig",
    "credential",
];

fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| k.ends_with(s))
}

/// A request target as logged: the path as sent, and the query with the values of
/// secret-looking parameters replaced by `***`.
pub fn redact(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if secret_key(k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// An answer's body that writes the request's access-log line when it is done.
pub struct Logged {
    inner: Body,
    line: Option<Line>,
}

struct Line {
    method: http::Method,
    target: String,
    status: u16,
    started: Instant,
    notes: Arc<Notes>,
    bytes: u64,
    complete: bool,
}

impl Line {
    fn write(&self) {
        let user = self.notes.user.lock().ok().and_then(|u| u.clone());
        tracing::info!(
            target: "couchgate::access",
            method = %self.method,
            path = %self.target,
            status = self.status,
            bytes = self.bytes,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            user = user.as_deref().unwrap_or("-"),
            upstream = self.notes.upstream.load(Ordering::Relaxed),
            complete = self.complete,
            "request"
        );
    }
}

impl Logged {
    /// Wraps an answer's body; the line is written when the body ends or is dropped.
    pub fn wrap(
        resp: http::Response<Body>,
        method: http::Method,
        target: String,
        started: Instant,
        notes: Arc<Notes>,
    ) -> http::Response<Body> {
        let status = resp.status().as_u16();
        resp.map(|inner| {
            let line = Line {
                method,
                target,
                status,
                started,
                notes,
                bytes: 0,
                complete: false,
            };
            http_body_util::BodyExt::boxed_unsync(Logged {
                inner,
                line: Some(line),
            })
        })
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(line)) = (frame.data_ref(), self.line.as_mut()) {
                    line.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(mut line) = self.line.take() {
                    line.complete = true;
                    line.write();
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // An empty body may never be polled; a cut one ends here.
        if let Some(mut line) = self.line.take() {
            line.complete = http_body::Body::is_end_stream(&self.inner);
            line.write();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_queries_are_redacted() {
        assert_eq!(redact("/db/_changes?since=0"), "/db/_changes?since=0");
        assert_eq!(
            redact("/db?access_token=abc&limit=1&Password=x&flag"),
            "/db?access_token=***&limit=1&Password=***&flag"
        );
        assert_eq!(redact("/_session"), "/_session");
        assert_eq!(
            redact("/db/_all_docs?startkey=%22a%22&endkey=%22b%22&X-Amz-Signature=s"),
            "/db/_all_docs?startkey=%22a%22&endkey=%22b%22&X-Amz-Signature=***"
        );
    }

    #[tokio::test]
    async fn notes_are_per_request_and_ignored_outside_one() {
        note_upstream();
        note_user("nobody");
        let notes = Arc::new(Notes::default());
        scope(Arc::clone(&notes), async {
            note_user("alice");
            note_upstream();
            note_upstream();
        })
        .await;
        assert_eq!(notes.upstream.load(Ordering::Relaxed), 2);
        assert_eq!(notes.user.lock().unwrap().as_deref(), Some("alice"));
    }
}
