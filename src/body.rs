//! The one body type couchgate sends (to clients and to the backend), and bounded reading of
//! bodies it receives.

use crate::error::{Error, Result};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body couchgate produces.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Any body, boxed into [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body fed chunk by chunk through a bounded channel: the producer waits while the client
/// is slow, so memory stays bounded whatever the length of the answer. Dropping the receiver
/// (the client went away) makes every send fail, which stops the producer.
pub fn channel(capacity: usize) -> (ChunkSender, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(capacity);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
    });
    (ChunkSender(tx), StreamBody::new(stream).boxed_unsync())
}

/// The producing side of [`channel`].
#[derive(Clone)]
pub struct ChunkSender(mpsc::Sender<Bytes>);

impl ChunkSender {
    /// Sends a chunk; `false` when the client has gone away.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> bool {
        self.0.send(chunk.into()).await.is_ok()
    }
}

/// A JSON response, with CouchDB's content type.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = serde_json::to_vec(value).expect("a serde_json::Value always serialises");
    text.push(b'\n');
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read_limited<B>(body: B, limit: u64) -> Result<Bytes>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge(format!(
            "the request body is larger than {limit} bytes"
        ))),
        Err(e) => Err(Error::bad_request(format!("reading the request body: {e}"))),
    }
}

/// Reads a JSON request body: checks the content type, the size and the syntax.
pub async fn read_json<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: u64,
) -> Result<serde_json::Value>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    require_json_content_type(headers)?;
    let bytes = read_limited(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::bad_request(format!("invalid JSON: {e}")))
}

/// CouchDB answers 415 when a JSON endpoint gets another content type.
pub fn require_json_content_type(headers: &http::HeaderMap) -> Result<()> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Error::BadContentType(
            "Content-Type must be application/json".into(),
        ))
    }
}
