//! The one body type couchgate sends (to clients and to the backend), and bounded reading of
//! bodies it receives.

use crate::error::{Error, Result};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
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
/// (the client went away) makes every send fail, which stops the producer; so does a client
/// that takes nothing for [`STALLED_CLIENT`], whose answer then ends in error.
pub fn channel(capacity: usize) -> (ChunkSender, Body) {
    let (tx, rx) = mpsc::channel::<std::result::Result<Bytes, BoxError>>(capacity);
    let cut = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&cut);
    let stream = futures_util::stream::unfold((rx, seen), |(mut rx, seen)| async move {
        match rx.recv().await {
            Some(b) => Some((b.map(Frame::data), (rx, seen))),
            // Every sender is gone: an answer cut short ends in error, never as if complete.
            None if seen.swap(false, Ordering::SeqCst) => {
                Some((Err("the answer was cut short".into()), (rx, seen)))
            }
            None => None,
        }
    });
    (
        ChunkSender { tx, cut },
        StreamBody::new(stream).boxed_unsync(),
    )
}

/// How long a streamed answer waits for its reader to take a chunk before giving it up.
pub const STALLED_CLIENT: Duration = Duration::from_secs(60);

/// The producing side of [`channel`].
#[derive(Clone)]
pub struct ChunkSender {
    tx: mpsc::Sender<std::result::Result<Bytes, BoxError>>,
    cut: Arc<AtomicBool>,
}

impl ChunkSender {
    /// Sends a chunk; `false` when the reader has gone away, or has taken nothing for
    /// [`STALLED_CLIENT`] (its answer is then cut).
    pub async fn send(&self, chunk: impl Into<Bytes>) -> bool {
        match tokio::time::timeout(STALLED_CLIENT, self.tx.send(Ok(chunk.into()))).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                self.cut.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    /// Ends the body with an error: the reader's connection is cut rather than the answer
    /// ended as if it were complete. Never waits: with the channel full, the error comes
    /// once the reader has taken what is queued and the producer is gone.
    pub fn abort(&self, reason: impl Into<BoxError>) {
        self.cut.store(true, Ordering::SeqCst);
        let _ = self.tx.try_send(Err(reason.into()));
    }
}

/// A 200 response of the given content type (a multipart answer's, with its boundary).
pub fn typed_response(content_type: &str, body: Body) -> Result<Response<Body>> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).map_err(|e| Error::BadGateway(e.to_string()))?,
    );
    Ok(r)
}

/// A JSON response, with CouchDB's content type.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = serde_json::to_vec(value).expect("a serde_json::Value always serialises");
    text.push(b'\n');
    json_text_response(status, text)
}

/// A JSON response of a JSON text (ending in a newline, as CouchDB's do).
pub fn json_text_response(status: StatusCode, text: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A client's request body whose pauses are bounded: waiting longer than `gap` for its next
/// piece fails it with [`BodyTimeout`]. Only waiting for the client counts: the clock starts
/// when the next piece is asked for, not while couchgate is busy elsewhere (authenticating,
/// or waiting for the backend to take what it was sent).
pub struct TimedBody<B> {
    inner: B,
    gap: Duration,
    /// Armed while a piece is awaited.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, gap: Duration) -> Self {
        TimedBody {
            inner,
            gap,
            sleep: None,
            waiting: false,
        }
    }
}

/// The error of a [`TimedBody`] whose client paused too long.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stopped arriving for {} s",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyTimeout {}

impl<B> http_body::Body for TimedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let sleep = match &mut this.sleep {
            Some(s) if this.waiting => s,
            Some(s) => {
                s.as_mut().reset(tokio::time::Instant::now() + this.gap);
                s
            }
            None => this.sleep.insert(Box::pin(tokio::time::sleep(this.gap))),
        };
        this.waiting = true;
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.waiting = false;
                Poll::Ready(Some(Err(Box::new(BodyTimeout(this.gap)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What a failure to read a request body means for the client.
pub fn read_error(e: &BoxError, limit: u64) -> Error {
    if e.is::<http_body_util::LengthLimitError>() {
        Error::TooLarge(format!("the request body is larger than {limit} bytes"))
    } else if let Some(t) = e.downcast_ref::<BodyTimeout>() {
        Error::RequestTimeout(t.to_string())
    } else {
        Error::bad_request(format!("reading the request body: {e}"))
    }
}

/// The next piece of data of a request body of which `read` bytes were taken so far, held to
/// `limit` bytes in all; `None` at its end.
pub async fn next_data<B>(body: &mut B, read: &mut u64, limit: u64) -> Result<Option<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(read_error(&e.into(), limit)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    *read += data.len() as u64;
                    if *read > limit {
                        return Err(Error::TooLarge(format!(
                            "the request body is larger than {limit} bytes"
                        )));
                    }
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// A request body read piece by piece ([`next_data`]) at the reader's pace. What is left of it
/// when it is dropped (an answer given before the client finished sending, such as an error
/// found part-way) is read and discarded in the background, within the same limit and
/// timeouts: a client still sending then reads the answer instead of a reset connection.
pub struct ClientBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    body: Option<B>,
    read: u64,
    limit: u64,
}

impl<B> ClientBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    pub fn new(body: B, limit: u64) -> Self {
        ClientBody {
            body: Some(body),
            read: 0,
            limit,
        }
    }

    /// The most it may hold.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The next piece of data; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        let next = next_data(body, &mut self.read, self.limit).await;
        if !matches!(next, Ok(Some(_))) {
            // Ended or failed: nothing is left to discard.
            self.body = None;
        }
        next
    }
}

impl<B> Drop for ClientBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        let (mut read, limit) = (self.read, self.limit);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                while let Ok(Some(_)) = next_data(&mut body, &mut read, limit).await {}
            });
        }
    }
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read_limited<B>(body: B, limit: u64) -> Result<Bytes>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(read_error(&e, limit)),
    }
}

/// Reads a whole request body of at most `limit` bytes, decoding `Content-Encoding: gzip` (the
/// decoded body is held to the same limit, so a gzip bomb gets 413).
pub async fn read_request<B>(headers: &http::HeaderMap, body: B, limit: u64) -> Result<Bytes>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let raw = read_limited(body, limit).await?;
    decode_content_encoding(headers, raw, limit)
}

/// Undoes the request's `Content-Encoding`: CouchDB accepts `gzip` (and `identity`).
pub fn decode_content_encoding(headers: &http::HeaderMap, raw: Bytes, limit: u64) -> Result<Bytes> {
    use std::io::Read;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") => Ok(raw),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|_| Error::bad_request("Request body is not properly gzipped."))?;
            if out.len() as u64 > limit {
                return Err(Error::TooLarge(format!(
                    "the decompressed request body is larger than {limit} bytes"
                )));
            }
            Ok(Bytes::from(out))
        }
        Some(other) => Err(Error::BadContentType(format!(
            "{other} is not a supported content encoding."
        ))),
    }
}

/// Parses a JSON request body, with CouchDB's reasons for what is wrong with it.
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value> {
    if bytes.is_empty() {
        return Err(Error::bad_request("Missing request body"));
    }
    crate::json::parse(bytes).map_err(|_| Error::bad_request("invalid UTF-8 JSON"))
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
    parse_json(&read_request(headers, body, limit).await?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    fn with_encoding(enc: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(enc).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_bodies_are_decoded_within_the_limit() {
        let h = with_encoding("gzip");
        let body = decode_content_encoding(&h, gzip(b"{\"a\":1}"), 100).unwrap();
        assert_eq!(&body[..], b"{\"a\":1}");
        let bomb = gzip(&vec![b' '; 1 << 20]);
        assert!(bomb.len() < 10_000);
        let e = decode_content_encoding(&h, bomb, 64 * 1024).unwrap_err();
        assert_eq!(e.status(), 413);
        let e = decode_content_encoding(&h, Bytes::from_static(b"plain"), 100).unwrap_err();
        assert_eq!(e.reason(), "Request body is not properly gzipped.");
        let e = decode_content_encoding(&with_encoding("br"), Bytes::new(), 100).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.reason().as_str()),
            (415, "br is not a supported content encoding.")
        );
        let plain = decode_content_encoding(&http::HeaderMap::new(), Bytes::from_static(b"x"), 1);
        assert_eq!(&plain.unwrap()[..], b"x");
    }

    #[tokio::test(start_paused = true)]
    async fn only_waiting_for_the_client_counts_against_a_body() {
        let gap = Duration::from_secs(5);
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
        });
        let mut body = TimedBody::new(StreamBody::new(Box::pin(stream)), gap);
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        // Busy elsewhere for a minute: not the client's pause.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let tx2 = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(gap - Duration::from_secs(1)).await;
            tx2.send(Bytes::from_static(b"b")).await.unwrap();
        });
        assert!(body.frame().await.unwrap().is_ok(), "within the gap");
        let start = tokio::time::Instant::now();
        let e = body.frame().await.unwrap().unwrap_err();
        assert_eq!(start.elapsed(), gap);
        let e = read_error(&e, 100);
        assert_eq!((e.status().as_u16(), e.name()), (408, "request_timeout"));
        drop(tx);
    }

    #[test]
    fn json_errors_read_like_couchdb() {
        assert_eq!(
            parse_json(b"").unwrap_err().reason(),
            "Missing request body"
        );
        assert_eq!(parse_json(b"{").unwrap_err().reason(), "invalid UTF-8 JSON");
        assert_eq!(parse_json(b"[1]").unwrap(), serde_json::json!([1]));
    }
}
