//! A `multipart/related` document body read as it arrives, for attachments too large to hold:
//! the JSON part is taken whole (bounded), checked by the caller, and the attachments' data is
//! then re-framed into a body of couchgate's own as it streams. Pure (sans-IO).
//!
//! The rules are [`super::parse`]'s and [`super::attachments`]'s, applied on the fly: the
//! client's framing is read exactly as `split` reads it; each part after the JSON must be the
//! next attachment marked `follows`, named as it if it names one, and exactly as long. The
//! backend gets the body [`super::build`] would have built, byte for byte, except that its
//! boundary is random rather than checked against data not seen yet (see
//! [`super::random_boundary`]): its length is known before the first attachment byte
//! ([`Reframe::length`]), so it is sent with `Content-Length`, and its closing delimiter is
//! written only once the client's own closing delimiter has been read. A body found wrong
//! part-way therefore never reaches the backend complete: the caller cuts the backend request
//! off, and nothing is written.

use super::{Follows, Part};
use crate::error::{Error, Result};
use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

/// The client's body up to the end of its JSON part.
pub struct Head {
    buf: BytesMut,
    /// `\r\n--{boundary}` of the client's body (the first may come without the `\r\n`).
    delimiter: Vec<u8>,
    json_limit: usize,
    /// Once the document part's headers are read: how much of `buf` was searched for its end.
    searched: Option<usize>,
}

impl Head {
    /// A reader of a body with this (client's) boundary whose JSON part is at most
    /// `json_limit` bytes.
    pub fn new(boundary: &str, json_limit: usize) -> Head {
        Head {
            buf: BytesMut::new(),
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            json_limit,
            searched: None,
        }
    }

    /// Takes the next piece of the body; answers the document's JSON once it is complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Bytes>> {
        self.buf.extend_from_slice(chunk);
        let d = self.delimiter.len();
        let searched = match self.searched {
            Some(searched) => searched,
            None => {
                let open = &self.delimiter[2..];
                let Some(at) = memmem::find(&self.buf, open) else {
                    // The preamble is ignored: keep only what may start the delimiter.
                    let keep = open.len() - 1;
                    if self.buf.len() > keep {
                        let drop = self.buf.len() - keep;
                        self.buf.advance(drop);
                    }
                    return Ok(None);
                };
                let rest = &self.buf[at + open.len()..];
                if rest.len() < 2 {
                    return Ok(None);
                }
                if rest.starts_with(b"--") {
                    return Err(super::no_document());
                }
                let Some(head_len) = memmem::find(rest, b"\r\n\r\n") else {
                    return self.too_long().map(|()| None);
                };
                let part = Part {
                    headers: super::parse_headers(&rest[..head_len])?,
                    body: Bytes::new(),
                };
                super::require_json(&part)?;
                self.buf.advance(at + open.len() + head_len + 4);
                0
            }
        };
        let from = searched.saturating_sub(d);
        match memmem::find(&self.buf[from..], &self.delimiter) {
            Some(end) => {
                let json = self.buf.split_to(from + end).freeze();
                self.buf.advance(d);
                Ok(Some(json))
            }
            None => {
                self.searched = Some(self.buf.len());
                self.too_long().map(|()| None)
            }
        }
    }

    /// Fails once more than the JSON part's limit (and its headers) is held.
    fn too_long(&self) -> Result<()> {
        if self.buf.len() > self.json_limit.saturating_add(super::HEADERS_LIMIT) {
            return Err(Error::TooLarge(format!(
                "the document part of a multipart/related body is larger than {} bytes",
                self.json_limit
            )));
        }
        Ok(())
    }

    /// The reader of the rest of the body, given the attachments whose data follows (from the
    /// checked JSON) and the boundary of the body the backend gets.
    pub fn reframe(self, follows: Vec<Follows>, boundary: String) -> Reframe {
        let last_data = follows.iter().rposition(|f| f.length > 0);
        Reframe {
            buf: self.buf,
            delimiter: self.delimiter,
            follows,
            boundary,
            step: Step::AfterDelimiter { next: 0 },
            held: BytesMut::new(),
            holding: last_data.is_none(),
            last_data,
        }
    }
}

enum Step {
    /// Right after a delimiter; `next` is the attachment whose part may start here.
    AfterDelimiter {
        next: usize,
    },
    Headers {
        next: usize,
    },
    /// The data of attachment `index`, `seen` bytes of it so far.
    Data {
        index: usize,
        seen: u64,
    },
    /// The client's closing delimiter was read (and ours written).
    Done,
}

/// Reads the attachments' parts and writes them re-framed; see the module's documentation.
pub struct Reframe {
    buf: BytesMut,
    delimiter: Vec<u8>,
    follows: Vec<Follows>,
    boundary: String,
    step: Step,
    /// Output held back until the client's closing delimiter is read. CouchDB commits a
    /// document once it has read the JSON and `length` bytes of each attachment, without
    /// waiting for the closing delimiter, so what is held back is the last byte of the last
    /// attachment with data (or, with none, everything after the JSON): until the client's
    /// body is known to be right, the backend cannot complete the write.
    held: BytesMut,
    holding: bool,
    /// The last attachment with data.
    last_data: Option<usize>,
}

impl Reframe {
    /// The content type of the body the backend gets.
    pub fn content_type(&self) -> String {
        super::related_type(&self.boundary)
    }

    /// The start of the body the backend gets: up to the end of the document's JSON.
    pub fn start(&self, json: &[u8]) -> Bytes {
        let mut out = BytesMut::from(super::document_head(&self.boundary).as_bytes());
        out.extend_from_slice(json);
        out.freeze()
    }

    /// The bytes of attachment data the document announces; `None` past `u64`.
    pub fn data_length(&self) -> Option<u64> {
        self.follows
            .iter()
            .try_fold(0u64, |sum, f| sum.checked_add(f.length))
    }

    /// The exact length of the body the backend gets, for a document of `json_len` bytes;
    /// `None` past `u64`.
    pub fn length(&self, json_len: usize) -> Option<u64> {
        let framing = super::document_head(&self.boundary).len()
            + self
                .follows
                .iter()
                .map(|f| super::attachment_head(&self.boundary, &f.name, &f.content_type).len())
                .sum::<usize>()
            + super::closing(&self.boundary).len();
        self.data_length()?
            .checked_add(u64::try_from(framing.checked_add(json_len)?).ok()?)
    }

    /// Whether the client's closing delimiter was read (and the whole body written out).
    pub fn done(&self) -> bool {
        matches!(self.step, Step::Done)
    }

    /// Takes the next piece of the client's body; appends what the backend may be sent.
    pub fn push(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        while self.advance(out)? {}
        Ok(())
    }

    /// Takes what is left over after the document part was read (call once, first).
    pub fn resume(&mut self, out: &mut BytesMut) -> Result<()> {
        self.push(&[], out)
    }

    /// The client's body has ended: fails unless it was complete.
    pub fn finish(&self) -> Result<()> {
        match self.step {
            Step::Done => Ok(()),
            Step::AfterDelimiter { next } | Step::Headers { next } => Err(self
                .follows
                .get(next)
                .map_or_else(super::malformed, super::lacks)),
            Step::Data { .. } => Err(super::malformed()),
        }
    }

    /// One step; `false` when more input is needed.
    fn advance(&mut self, out: &mut BytesMut) -> Result<bool> {
        let d = self.delimiter.len();
        match self.step {
            Step::AfterDelimiter { next } => {
                if self.buf.len() < 2 {
                    return Ok(false);
                }
                if self.buf.starts_with(b"--") {
                    if let Some(f) = self.follows.get(next) {
                        return Err(super::lacks(f));
                    }
                    out.extend_from_slice(&self.held);
                    self.held.clear();
                    out.extend_from_slice(super::closing(&self.boundary).as_bytes());
                    // The epilogue is ignored.
                    self.buf.clear();
                    self.step = Step::Done;
                    return Ok(false);
                }
                if next >= self.follows.len() {
                    return Err(super::extra_part());
                }
                self.step = Step::Headers { next };
                Ok(true)
            }
            Step::Headers { next } => {
                let Some(head_len) = memmem::find(&self.buf, b"\r\n\r\n") else {
                    if self.buf.len() > super::HEADERS_LIMIT {
                        return Err(Error::bad_request("bad part header"));
                    }
                    return Ok(false);
                };
                let part = Part {
                    headers: super::parse_headers(&self.buf[..head_len])?,
                    body: Bytes::new(),
                };
                let f = &self.follows[next];
                super::check_part_name(&part, f)?;
                let head = super::attachment_head(&self.boundary, &f.name, &f.content_type);
                let sink = if self.holding { &mut self.held } else { out };
                sink.extend_from_slice(head.as_bytes());
                self.buf.advance(head_len + 4);
                self.step = Step::Data {
                    index: next,
                    seen: 0,
                };
                Ok(true)
            }
            Step::Data { index, seen } => {
                let f = &self.follows[index];
                let (data, ended) = match memmem::find(&self.buf, &self.delimiter) {
                    Some(at) => (at, true),
                    // Whatever cannot start a delimiter is data.
                    None => (self.buf.len().saturating_sub(d - 1), false),
                };
                let seen = seen + data as u64;
                if seen > f.length || ended {
                    super::check_length(seen, f)?;
                }
                // The last byte of the last attachment with data is held back.
                let free = if Some(index) == self.last_data && seen == f.length && data > 0 {
                    data - 1
                } else {
                    data
                };
                let sink = if self.holding { &mut self.held } else { out };
                sink.extend_from_slice(&self.buf[..free]);
                if free < data {
                    self.holding = true;
                    self.held.extend_from_slice(&self.buf[free..data]);
                }
                self.buf.advance(data);
                if ended {
                    self.buf.advance(d);
                    self.step = Step::AfterDelimiter { next: index + 1 };
                    Ok(true)
                } else {
                    self.step = Step::Data { index, seen };
                    Ok(false)
                }
            }
            Step::Done => {
                self.buf.clear();
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follows(lengths: &[u64]) -> Vec<Follows> {
        lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| Follows {
                name: format!("f{i}.bin"),
                length,
                content_type: "application/octet-stream".into(),
            })
            .collect()
    }

    /// A client body with a preamble, the document, and one part per data (named).
    fn client(datas: &[&[u8]]) -> Vec<u8> {
        let mut v =
            b"preamble\r\n--Client\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"x\"}"
                .to_vec();
        for (i, data) in datas.iter().enumerate() {
            v.extend_from_slice(
                format!("\r\n--Client\r\nContent-Disposition: attachment; filename=\"f{i}.bin\"\r\n\r\n").as_bytes(),
            );
            v.extend_from_slice(data);
        }
        v.extend_from_slice(b"\r\n--Client--\r\nepilogue");
        v
    }

    /// Runs a client body through, in pieces of `chunk` bytes: the JSON and the backend body.
    fn run(body: &[u8], lengths: &[u64], chunk: usize) -> Result<(Bytes, Vec<u8>, u64)> {
        let mut head = Head::new("Client", 1024);
        let mut pieces = body.chunks(chunk);
        let json = loop {
            let piece = pieces.next().ok_or_else(super::super::malformed)?;
            if let Some(json) = head.push(piece)? {
                break json;
            }
        };
        let mut rf = head.reframe(follows(lengths), "OURS".into());
        let mut out = BytesMut::from(&rf.start(&json)[..]);
        rf.resume(&mut out)?;
        for piece in pieces {
            rf.push(piece, &mut out)?;
        }
        rf.finish()?;
        let length = rf.length(json.len()).unwrap();
        Ok((json, out.to_vec(), length))
    }

    #[test]
    fn the_backend_gets_what_build_would_build() {
        // The data holds the client's boundary without its delimiter, and CRLFs.
        let datas: [&[u8]; 2] = [b"ab--Client\r\n\r\ncd", b""];
        let body = client(&datas);
        for chunk in [1, 2, 5, 13, 4096] {
            let (json, out, length) = run(&body, &[16, 0], chunk).unwrap();
            assert_eq!(&json[..], br#"{"_id":"x"}"#);
            let atts: Vec<super::super::Attachment> = datas
                .iter()
                .enumerate()
                .map(|(i, d)| super::super::Attachment {
                    name: format!("f{i}.bin"),
                    content_type: "application/octet-stream".into(),
                    data: Bytes::copy_from_slice(d),
                })
                .collect();
            let (_, built) = super::super::build(&json, &atts);
            let boundary = std::str::from_utf8(&built[2..34]).unwrap();
            let expected = String::from_utf8_lossy(&built).replace(boundary, "OURS");
            assert_eq!(String::from_utf8_lossy(&out), expected, "chunk {chunk}");
            assert_eq!(length, out.len() as u64, "Content-Length, chunk {chunk}");
        }
    }

    #[test]
    fn wrong_bodies_fail_before_the_backend_has_them_whole() {
        let reason = |body: &[u8], lengths: &[u64]| match run(body, lengths, 3) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.reason(),
        };
        assert_eq!(
            reason(&client(&[b"abc"]), &[4]),
            "attachment shorter than expected"
        );
        assert_eq!(
            reason(&client(&[b"abcde"]), &[4]),
            "attachment longer than expected"
        );
        assert!(reason(&client(&[b"abc"]), &[3, 1]).contains("lacks the data of attachment f1.bin"));
        assert!(
            reason(&client(&[b"abc", b"d"]), &[3]).contains("no attachment with `follows: true`")
        );
        let renamed = String::from_utf8(client(&[b"abc"]))
            .unwrap()
            .replace("f0.bin", "other");
        assert!(reason(renamed.as_bytes(), &[3]).contains("part other is not the attachment"));
        let cut = client(&[b"abcdef"]);
        assert_eq!(
            reason(&cut[..cut.len() - 20], &[6]),
            "malformed multipart/related body"
        );
        assert_eq!(
            reason(
                b"--Client\r\nContent-Type: text/plain\r\n\r\n{}\r\n--Client--",
                &[]
            ),
            "Content-Type must be application/json"
        );
        let big = format!(
            "--Client\r\nContent-Type: application/json\r\n\r\n{}",
            "x".repeat(20_000)
        );
        assert!(reason(big.as_bytes(), &[]).contains("larger than 1024 bytes"));
    }

    #[test]
    fn with_no_attachment_data_everything_after_the_json_waits_for_the_end() {
        let body = client(&[b""]);
        let text = String::from_utf8_lossy(&body).into_owned();
        let json_end = text.find("\r\n--Client\r\nContent-Disposition").unwrap() + 12;
        let mut head = Head::new("Client", 1024);
        let json = head.push(&body[..json_end]).unwrap().unwrap();
        let mut rf = head.reframe(follows(&[0]), "OURS".into());
        let mut out = BytesMut::new();
        rf.resume(&mut out).unwrap();
        let end = body.len() - b"--\r\nepilogue".len();
        rf.push(&body[json_end..end], &mut out).unwrap();
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        rf.push(&body[end..], &mut out).unwrap();
        assert!(rf.done());
        let mut all = BytesMut::from(&rf.start(&json)[..]);
        all.extend_from_slice(&out);
        assert_eq!(rf.length(json.len()), Some(all.len() as u64));
        let huge = Head::new("Client", 8).reframe(follows(&[u64::MAX, 1]), "B".into());
        assert_eq!((huge.data_length(), huge.length(10)), (None, None));
    }

    #[test]
    fn the_closing_delimiter_is_written_only_after_the_clients() {
        let body = client(&[b"abc"]);
        let text = String::from_utf8_lossy(&body).into_owned();
        let json_end = text.find("\r\n--Client\r\nContent-Disposition").unwrap() + 12;
        let data_end = text.find("abc").unwrap() + 3;
        let mut head = Head::new("Client", 1024);
        let json = head.push(&body[..json_end]).unwrap().unwrap();
        let mut rf = head.reframe(follows(&[3]), "OURS".into());
        let mut out = BytesMut::from(&rf.start(&json)[..]);
        rf.resume(&mut out).unwrap();
        // Up to the client's closing delimiter, without its `--`: the attachment's last byte
        // is held back, so the backend cannot have the document whole.
        rf.push(&body[json_end..data_end + 10], &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).ends_with("\r\n\r\nab"));
        assert!(rf.finish().is_err());
        rf.push(&body[data_end + 10..], &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).ends_with("abc\r\n--OURS--"));
        rf.finish().unwrap();
    }
}
