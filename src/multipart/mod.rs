//! `multipart/related` document bodies (a document and the data of its attachments, as
//! CouchDB's replicator PUTs them): parsed completely, matched against the document, and
//! rebuilt. Pure.
//!
//! The framing is CouchDB's (`couch_httpd:parse_multipart_request/3`): anything before the
//! first `--{boundary}` is ignored; each part is a header block ended by an empty line and a
//! body ended by `\r\n--{boundary}`; `--` right after a delimiter ends the body.
//!
//! couchgate's rule on top: exactly one JSON part, first; every other part is the data of an
//! attachment the JSON marks `follows: true`, in the order the JSON lists them (the order
//! CouchDB reads their data in), named as that attachment if it carries a file name, and
//! exactly as long as the attachment says. Everything else is refused with 400. A backend
//! must never read a part couchgate did not check (PouchDB Server takes the document from the
//! last JSON part it finds), so the backend only ever receives a body built by [`build`], with a
//! boundary of couchgate's own that occurs in none of the data.
//!
//! Every search is a `memchr::memmem` finder: linear in the body whatever the boundary, never
//! `body × boundary`. Callers still parse large bodies on the blocking pool (see
//! [`crate::handlers::offload`]).

pub mod answer;
pub mod stream;
pub mod upload;

use crate::error::{Error, Result};
use crate::validate::Follows;
use bytes::Bytes;
use memchr::memmem;

/// An attachment's data from a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub data: Bytes,
}

/// Longest header block of one part read as it streams.
const HEADERS_LIMIT: usize = 16 * 1024;

/// A malformed body, with the one reason couchgate gives for the framing.
pub fn malformed() -> Error {
    Error::bad_request("malformed multipart/related body")
}

/// The boundary parameter of a `multipart/...` content type, read as case-sensitive text.
pub fn boundary(content_type: &str) -> Result<String> {
    params(content_type)
        .into_iter()
        .find_map(|(k, v)| k.eq_ignore_ascii_case("boundary").then_some(v))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::bad_request("multipart/related without a boundary"))
}

/// The `; name=value` parameters after a header's first item (RFC 9110 section 5.6.6), values
/// unquoted: a quoted value may hold `;` and backslash escapes. A parameter without `=` is
/// skipped.
fn params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the first item (`attachment`, `multipart/related`).
    while chars.next_if(|&c| c != ';').is_some() {}
    while chars.next().is_some() {
        let mut key = String::new();
        while let Some(c) = chars.next_if(|&c| c != '=' && c != ';') {
            key.push(c);
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut val = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => val.extend(chars.next()),
                    c => val.push(c),
                }
            }
            while chars.next_if(|&c| c != ';').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|&c| c != ';') {
                val.push(c);
            }
            val.truncate(val.trim_end().len());
        }
        out.push((key.trim().to_owned(), val));
    }
    out
}

/// One part: its headers (names lower-cased, values trimmed) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Part {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The file name of `Content-Disposition` (`filename="..."` or RFC 5987 `filename*=`).
    pub fn filename(&self) -> Option<String> {
        let mut plain = None;
        for (k, v) in params(self.header("content-disposition")?) {
            if k.eq_ignore_ascii_case("filename*") {
                let encoded = v.get(..7).filter(|p| p.eq_ignore_ascii_case("utf-8''"))?;
                let decoded = percent_encoding::percent_decode_str(&v[encoded.len()..])
                    .decode_utf8()
                    .ok()?;
                return Some(decoded.into_owned());
            }
            if k.eq_ignore_ascii_case("filename") {
                plain = Some(v);
            }
        }
        plain
    }
}

/// A parsed `multipart/related` document body: the JSON part and the parts after it.
#[derive(Debug)]
pub struct Related {
    pub doc: Bytes,
    pub rest: Vec<Part>,
}

/// Splits a body into its parts (slices of `body`, nothing copied).
pub fn split(body: &Bytes, boundary: &str) -> Result<Vec<Part>> {
    let open = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let delimiter_finder = memmem::Finder::new(delimiter.as_bytes());
    let blank_line = memmem::Finder::new(b"\r\n\r\n");

    let mut pos = memmem::find(body, open.as_bytes()).ok_or_else(malformed)? + open.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let head_len = blank_line.find(rest).ok_or_else(malformed)?;
        let headers = parse_headers(&rest[..head_len])?;
        let start = pos + head_len + 4;
        let len = delimiter_finder
            .find(&body[start..])
            .ok_or_else(malformed)?;
        parts.push(Part {
            headers,
            body: body.slice(start..start + len),
        });
        pos = start + len + delimiter.len();
    }
}

/// A part's header block (the text between the boundary line's end and the empty line).
fn parse_headers(block: &[u8]) -> Result<Vec<(String, String)>> {
    let bad = || Error::bad_request("bad part header");
    let text = std::str::from_utf8(block).map_err(|_| bad())?;
    text.split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').ok_or_else(bad)?;
            Ok((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect()
}

/// Parses a body: its first part must be the JSON document.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Related> {
    let mut parts = split(body, boundary)?.into_iter();
    let doc = parts.next().ok_or_else(no_document)?;
    require_json(&doc)?;
    Ok(Related {
        doc: doc.body,
        rest: parts.collect(),
    })
}

fn no_document() -> Error {
    Error::bad_request("multipart/related body without a document part")
}

/// The document part must say it is JSON.
fn require_json(doc: &Part) -> Result<()> {
    let is_json = doc.header("content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if is_json {
        Ok(())
    } else {
        Err(Error::BadContentType(
            "Content-Type must be application/json".into(),
        ))
    }
}

/// A part after the last attachment whose data follows.
fn extra_part() -> Error {
    Error::bad_request(
        "multipart/related body has a part that is no attachment with `follows: true`",
    )
}

/// The body ended before the data of this attachment.
fn lacks(f: &Follows) -> Error {
    Error::bad_request(format!(
        "multipart/related body lacks the data of attachment {}",
        f.name
    ))
}

/// A part whose file name is not the attachment expected there.
fn check_part_name(part: &Part, f: &Follows) -> Result<()> {
    match part.filename() {
        Some(given) if given != f.name => Err(Error::bad_request(format!(
            "multipart/related part {given} is not the attachment with `follows: true` \
             expected there ({})",
            f.name
        ))),
        _ => Ok(()),
    }
}

/// A part of `got` bytes for an attachment of `f.length`.
fn check_length(got: u64, f: &Follows) -> Result<()> {
    if got > f.length {
        return Err(Error::bad_request("attachment longer than expected"));
    }
    if got < f.length {
        return Err(Error::bad_request("attachment shorter than expected"));
    }
    Ok(())
}

/// Matches the parts after the JSON to the attachments whose data follows (in document
/// order): one part each, in that order, of exactly its length, and named as that attachment
/// when the part names one.
pub fn attachments(follows: &[Follows], parts: Vec<Part>) -> Result<Vec<Attachment>> {
    if parts.len() > follows.len() {
        return Err(extra_part());
    }
    if let Some(f) = follows.get(parts.len()) {
        return Err(lacks(f));
    }
    follows
        .iter()
        .zip(parts)
        .map(|(f, part)| {
            check_part_name(&part, f)?;
            check_length(part.body.len() as u64, f)?;
            Ok(Attachment {
                name: f.name.clone(),
                content_type: f.content_type.clone(),
                data: part.body,
            })
        })
        .collect()
}

/// File names written as they are in `filename="..."`; any other gets RFC 5987's form.
fn plain_filename(name: &str) -> bool {
    name.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\\' | b'%' | b'&'))
}

/// The `Content-Disposition` of an attachment part.
fn disposition(name: &str) -> String {
    if plain_filename(name) {
        format!("attachment; filename=\"{name}\"")
    } else {
        let encoded =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        format!("attachment; filename*=utf-8''{encoded}")
    }
}

/// A random boundary (128 bits, from a CSPRNG) for a body whose data is not known yet: no one
/// can predict it, and data holds it by chance with probability 2^-128.
pub fn random_boundary() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A fresh boundary whose delimiter (`--{boundary}`) occurs in none of `data`.
fn fresh_boundary<'a>(data: impl Iterator<Item = &'a [u8]> + Clone) -> String {
    loop {
        let candidate = random_boundary();
        let delimiter = format!("--{candidate}");
        let finder = memmem::Finder::new(delimiter.as_bytes());
        if data.clone().all(|d| finder.find(d).is_none()) {
            return candidate;
        }
    }
}

/// Builds the body couchgate sends: the JSON document, then each attachment's data in a part
/// naming it and its type (checked to be header-safe). Answers the content type (with its
/// fresh boundary) and the body.
pub fn build(doc_json: &[u8], atts: &[Attachment]) -> (String, Bytes) {
    let boundary = fresh_boundary(atts.iter().map(|a| a.data.as_ref()));
    let heads: Vec<String> = atts
        .iter()
        .map(|a| attachment_head(&boundary, &a.name, &a.content_type))
        .collect();
    let size = doc_json.len()
        + heads.iter().map(String::len).sum::<usize>()
        + atts.iter().map(|a| a.data.len()).sum::<usize>()
        + 128;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(document_head(&boundary).as_bytes());
    out.extend_from_slice(doc_json);
    for (a, head) in atts.iter().zip(&heads) {
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&a.data);
    }
    out.extend_from_slice(closing(&boundary).as_bytes());
    (related_type(&boundary), Bytes::from(out))
}

/// The content type of a body built with `boundary`.
fn related_type(boundary: &str) -> String {
    format!("multipart/related; boundary=\"{boundary}\"")
}

/// What comes before the document's JSON in a body couchgate builds.
fn document_head(boundary: &str) -> String {
    format!("--{boundary}\r\nContent-Type: application/json\r\n\r\n")
}

/// What comes before an attachment's data in a body couchgate builds.
fn attachment_head(boundary: &str, name: &str, content_type: &str) -> String {
    let content_type = if content_type.bytes().any(|b| b.is_ascii_control()) {
        crate::validate::DEFAULT_CONTENT_TYPE
    } else {
        content_type
    };
    format!(
        "\r\n--{boundary}\r\nContent-Disposition: {}\r\nContent-Type: {content_type}\r\n\r\n",
        disposition(name)
    )
}

/// The end of a body couchgate builds.
fn closing(boundary: &str) -> String {
    format!("\r\n--{boundary}--")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"_id":"x","_attachments":{"a.txt":{"follows":true,"length":5}}}"#;

    fn body(parts: &[&str]) -> Bytes {
        Bytes::from(format!("--abc{}--abc--", parts.join("")))
    }

    fn related(raw: &Bytes) -> Result<(Bytes, Vec<(String, Bytes)>)> {
        let r = parse(raw, "abc")?;
        let follows = [Follows {
            name: "a.txt".into(),
            length: 5,
            content_type: "text/plain".into(),
        }];
        let atts = attachments(&follows, r.rest)?;
        Ok((r.doc, atts.into_iter().map(|a| (a.name, a.data)).collect()))
    }

    #[test]
    fn parameters_keep_quoted_semicolons_and_escapes() {
        assert_eq!(
            params(r#"attachment; filename="a;b \"c\".txt" ; size=3;flag"#),
            vec![
                ("filename".to_owned(), r#"a;b "c".txt"#.to_owned()),
                ("size".to_owned(), "3".to_owned()),
            ]
        );
        assert_eq!(params("attachment"), vec![]);
        assert_eq!(
            params("attachment; filename=\"open"),
            vec![("filename".to_owned(), "open".to_owned())]
        );
    }

    #[test]
    fn built_parts_name_their_attachment_whatever_its_name() {
        for name in ["a;b.txt", "x\"y", "é;\\", " lead"] {
            let data = Bytes::from_static(b"12345");
            let atts = vec![Attachment {
                name: name.into(),
                content_type: "text/plain".into(),
                data,
            }];
            let (ct, built) = build(b"{}", &atts);
            let parsed = parse(&built, &boundary(&ct).unwrap()).unwrap();
            assert_eq!(parsed.rest[0].filename().as_deref(), Some(name));
        }
    }

    #[test]
    fn boundaries_are_read_from_the_content_type() {
        assert_eq!(
            boundary("multipart/related; boundary=\"AbC\"").unwrap(),
            "AbC"
        );
        assert_eq!(
            boundary("multipart/related;charset=x; Boundary=z9").unwrap(),
            "z9"
        );
        for bad in ["multipart/related", "multipart/related; boundary=\"\""] {
            assert_eq!(boundary(bad).unwrap_err().name(), "bad_request");
        }
    }

    #[test]
    fn a_document_and_its_attachment_are_parsed() {
        let raw = Bytes::from(format!(
            "preamble\r\n--abc\r\nContent-Type: application/json\r\n\r\n{DOC}\r\n--abc\r\n\
             Content-Disposition: attachment; filename=\"a.txt\"\r\n\r\nhello\r\n--abc--epilogue"
        ));
        let (doc, atts) = related(&raw).unwrap();
        assert_eq!(&doc[..], DOC.as_bytes());
        assert_eq!(
            atts,
            vec![("a.txt".to_owned(), Bytes::from_static(b"hello"))]
        );
        // CouchDB's own documentation sends the data unnamed.
        let raw = body(&[
            &format!("\r\nContent-Type: application/json\r\n\r\n{DOC}\r\n"),
            "--abc\r\n\r\nhello\r\n",
        ]);
        assert_eq!(related(&raw).unwrap().1[0].1, Bytes::from_static(b"hello"));
    }

    #[test]
    fn anything_but_one_json_part_and_its_attachments_is_refused() {
        let json = format!("\r\nContent-Type: application/json\r\n\r\n{DOC}\r\n");
        let att = "--abc\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\n\r\nhello\r\n";
        let cases: Vec<(Bytes, &str)> = vec![
            // A second JSON part (PouchDB Server would take its `_id`).
            (
                body(&[
                    &json,
                    att,
                    "--abc\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"other\"}\r\n",
                ]),
                "is no attachment",
            ),
            // A part named as no attachment that follows.
            (
                body(&[
                    &json,
                    "--abc\r\nContent-Disposition: attachment; filename=\"b.txt\"\r\n\r\nhello\r\n",
                ]),
                "is not the attachment",
            ),
            (body(&[&json]), "lacks the data of attachment a.txt"),
            (
                body(&[&json, "--abc\r\n\r\nhello!\r\n"]),
                "attachment longer than expected",
            ),
            (
                body(&[&json, "--abc\r\n\r\nhell\r\n"]),
                "attachment shorter than expected",
            ),
            (
                body(&[&json, "--abc\r\nno colon here\r\n\r\nhello\r\n"]),
                "bad part header",
            ),
            (Bytes::from_static(b"no boundary at all"), "malformed"),
            (
                Bytes::from(format!("--abc{json}--abc\r\n\r\nhello")),
                "malformed",
            ),
            (Bytes::from_static(b"--abc--"), "without a document part"),
        ];
        for (raw, reason) in cases {
            let e = related(&raw).unwrap_err();
            assert_eq!(e.name(), "bad_request", "{raw:?}");
            assert!(e.reason().contains(reason), "{raw:?}: {}", e.reason());
        }
        let not_json = body(&["\r\nContent-Type: text/plain\r\n\r\n{}\r\n"]);
        let e = related(&not_json).unwrap_err();
        assert_eq!((e.status().as_u16(), e.name()), (415, "bad_content_type"));
    }

    #[test]
    fn file_names_are_read_in_both_forms() {
        let part = |d: &str| Part {
            headers: vec![("content-disposition".into(), d.into())],
            body: Bytes::new(),
        };
        assert_eq!(
            part("attachment; filename=\"a b.txt\"")
                .filename()
                .as_deref(),
            Some("a b.txt")
        );
        assert_eq!(
            part("attachment; filename*=UTF-8''%C3%A9t%C3%A9")
                .filename()
                .as_deref(),
            Some("été")
        );
        assert_eq!(part("attachment").filename(), None);
    }

    #[test]
    fn built_bodies_parse_back_to_the_same_parts() {
        let att = |name: &str, data: &'static [u8]| Attachment {
            name: name.into(),
            content_type: "text/plain".into(),
            data: Bytes::from_static(data),
        };
        let atts = vec![
            att("a.txt", b"hello"),
            att("dir/été \"q\".bin", b"\r\n--\x00\xff"),
        ];
        let (ct, raw) = build(br#"{"_id":"p:x"}"#, &atts);
        let b = boundary(&ct).unwrap();
        assert_eq!(b.len(), 32);
        let r = parse(&raw, &b).unwrap();
        assert_eq!(&r.doc[..], br#"{"_id":"p:x"}"#);
        let back: Vec<(Option<String>, Option<&str>, Bytes)> = r
            .rest
            .iter()
            .map(|p| (p.filename(), p.header("content-type"), p.body.clone()))
            .collect();
        assert_eq!(
            back,
            atts.iter()
                .map(|a| (Some(a.name.clone()), Some("text/plain"), a.data.clone()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_built_boundary_occurs_in_no_data() {
        // Data holding many delimiters still never holds the one chosen.
        let att = |data: Bytes| Attachment {
            name: "a".into(),
            content_type: "text/plain".into(),
            data,
        };
        let (ct, raw) = build(b"{}", &[att(Bytes::from_static(b"x"))]);
        let b = boundary(&ct).unwrap();
        let data = Bytes::from(format!("\r\n--{b}").repeat(3));
        let (ct2, raw2) = build(b"{}", &[att(data.clone())]);
        let b2 = boundary(&ct2).unwrap();
        assert_ne!(b, b2);
        assert_eq!(parse(&raw2, &b2).unwrap().rest[0].body, data);
        assert!(parse(&raw, &b).is_ok());
    }

    #[test]
    fn parsing_is_linear_in_the_body_whatever_the_boundary() {
        // A long boundary and data made of near-matches of it: a windowed search compares
        // about `boundary` bytes at each of the body's positions.
        let b = "-".repeat(4000);
        let near = format!("{}x", "-".repeat(3999));
        let preamble = near.repeat(2048); // 8 MiB
        let raw = Bytes::from(format!(
            "{preamble}--{b}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{b}--"
        ));
        let started = std::time::Instant::now();
        let r = parse(&raw, &b).unwrap();
        assert_eq!(&r.doc[..], b"{}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
}
