//! The IO half of multipart answers: a backend's streamed answer fed through a
//! [`Rewriter`](super::answer::Rewriter) into a client's body, chunk by chunk, so memory
//! stays bounded by one JSON part and one network chunk.

use super::answer::{Rewrite, Rewriter};
use crate::body::ChunkSender;
use crate::error::{Error, Result};
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;

/// Sends `buf`, then the backend's answer rewritten by `rw`, to `tx`; `timeout` bounds the
/// wait for each piece of the answer. `Ok(false)` when the client has gone away (nothing more
/// needs sending); an error when the answer failed or was cut short, after which the
/// client's body must be aborted, never ended as if complete.
pub async fn pump<R: Rewrite>(
    mut incoming: Incoming,
    rw: &mut Rewriter<R>,
    mut buf: BytesMut,
    tx: &ChunkSender,
    timeout: Duration,
) -> Result<bool> {
    loop {
        let frame = match tokio::time::timeout(timeout, incoming.frame()).await {
            Err(_) => {
                return Err(Error::BackendTimeout(
                    "the backend stopped answering".into(),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(Error::BadGateway(format!("backend answer: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            rw.push(&data, &mut buf)?;
        }
        if !buf.is_empty() && !tx.send(buf.split().freeze()).await {
            return Ok(false);
        }
    }
    rw.finish(&mut buf)?;
    Ok(buf.is_empty() || tx.send(buf.freeze()).await)
}
