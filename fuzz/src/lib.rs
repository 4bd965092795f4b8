//! Properties the fuzz targets check, one function per target. Each takes arbitrary bytes and
//! panics when a property fails; libFuzzer (`cargo fuzz run <target>`) searches for such
//! inputs, and `tests/fuzz_corpus.rs` replays the committed corpus through the same functions
//! on every `cargo test`.
//!
//! Inputs with several fields are split on the byte `0xff`, which never occurs in UTF-8.

use couchgate::changes::positions::{Position, SeqCodec};
use couchgate::namespace::{decode_component, encode_component, set_id, Namespace};
use couchgate::routing::{self, Route};
use serde_json::Value;

/// The epoch every fuzzed namespace uses: the shape `vdb` gives epochs.
const EPOCH: &str = "fuzzfuzzfuzzfuzz";

fn fields(data: &[u8], n: usize) -> Option<Vec<&str>> {
    let parts: Vec<&str> = data
        .splitn(n, |b| *b == 0xff)
        .map(std::str::from_utf8)
        .collect::<Result<_, _>>()
        .ok()?;
    (parts.len() == n).then_some(parts)
}

/// Any path routes or is refused without panicking, and every document id routing yields
/// lands inside the namespace it is encoded into, and only there.
pub fn routing(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let _ = routing::check_escapes(path);
    let _ = routing::validate_db_name(path);
    let ns = Namespace::new("fuzzer", "db", EPOCH);
    let id = match routing::route(path) {
        Ok(Route::Doc { id, .. }) | Ok(Route::Attachment { id, .. }) => id,
        Ok(Route::Local { id, .. }) => {
            // `/{db}/_local` itself routes here too; the document handler refuses it.
            assert!(
                id == "_local" || id.starts_with("_local/"),
                "local route for {id:?}"
            );
            id
        }
        _ => return,
    };
    if let Ok(backing) = ns.encode_id(&id) {
        assert_eq!(ns.decode_id(&backing).as_deref(), Some(id.as_str()));
    }
}

/// Fields: user, database, client id, another user. Encoding is reversible, stays inside its
/// namespace's key range, and no other namespace can decode it.
pub fn id_codec(data: &[u8]) {
    let Some(f) = fields(data, 4) else {
        return;
    };
    let (user, db, id, other) = (f[0], f[1], f[2], f[3]);
    for component in [user, db] {
        assert_eq!(
            decode_component(&encode_component(component)).as_deref(),
            Some(component)
        );
    }
    if let Some(decoded) = decode_component(id) {
        assert_eq!(encode_component(&decoded), id, "non-canonical text decoded");
    }
    let ns = Namespace::new(user, db, EPOCH);
    let Ok(backing) = ns.encode_id(id) else {
        return;
    };
    assert_eq!(ns.decode_id(&backing).as_deref(), Some(id));
    if !id.starts_with("_local/") {
        assert!(
            backing >= ns.start_key() && backing < ns.end_key(),
            "{backing:?}"
        );
    }
    if other != user {
        let theirs = Namespace::new(other, db, EPOCH);
        assert_eq!(
            theirs.decode_id(&backing),
            None,
            "{other:?} decodes {backing:?}"
        );
    }
    let sibling = Namespace::new(user, &format!("{db}x"), EPOCH);
    assert_eq!(sibling.decode_id(&backing), None);
}

/// Any bytes parse or are refused without panicking; what parses survives a round trip; and
/// a document's id is rewritten to exactly one `_id`, first, and back.
pub fn json_rewrite(data: &[u8]) {
    let _ = couchgate::json::depth(data);
    let _ = couchgate::body::parse_json(data);
    let Ok(mut value) = couchgate::json::parse(data) else {
        return;
    };
    let text = serde_json::to_vec(&value).expect("a parsed value serialises");
    assert_eq!(couchgate::json::parse(&text).ok().as_ref(), Some(&value));
    let Value::Object(doc) = &mut value else {
        return;
    };
    let ns = Namespace::new("fuzzer", "db", EPOCH);
    let client = match doc.get("_id") {
        Some(Value::String(s)) => s.clone(),
        _ => "doc".to_owned(),
    };
    let Ok(backing) = ns.encode_id(&client) else {
        return;
    };
    set_id(doc, backing.clone());
    assert_eq!(doc.keys().next().map(String::as_str), Some("_id"));
    assert_eq!(doc.keys().filter(|k| *k == "_id").count(), 1);
    assert_eq!(doc["_id"], Value::String(backing));
    ns.strip_doc(&mut value).expect("an own document strips");
    assert_eq!(value["_id"], Value::String(client));
}

/// Any text given as `since` or as a token, in any namespace, is answered without panicking;
/// a sealed position opens to itself in its own namespace and in no other.
pub fn seq_tokens(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let codec = SeqCodec::new(b"fuzz secret");
    let half = (text.len() / 2..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    let (partition, rest) = text.split_at(half);
    let _ = codec.open(partition, rest);
    let _ = codec.since(partition, rest);
    let mut index = [0u8; 8];
    for (slot, b) in index.iter_mut().zip(rest.bytes()) {
        *slot = b;
    }
    let n = rest
        .bytes()
        .fold(0u64, |n, b| n.rotate_left(5) ^ u64::from(b));
    let pos = Position { index, n };
    let token = codec.seal(partition, pos);
    assert_eq!(codec.open(partition, &token), Some(pos));
    let other = format!("{partition}x");
    assert_eq!(codec.open(&other, &token), None);
}

/// Splits a fuzz input into a `multipart/related` boundary (before the first 0xff byte, as
/// couchgate reads it from a content type) and the body after it.
fn related_input(data: &[u8]) -> Option<(String, bytes::Bytes)> {
    let at = data.iter().position(|b| *b == 0xff)?;
    let boundary = std::str::from_utf8(&data[..at]).ok()?;
    let boundary =
        couchgate::multipart::boundary(&format!("multipart/related; boundary=\"{boundary}\""))
            .ok()?;
    Some((boundary, bytes::Bytes::copy_from_slice(&data[at + 1..])))
}

/// Fields: boundary, body. A body either is refused or is rebuilt into one that parses back to
/// exactly the checked document (with couchgate's id) and the same attachments, in order, and
/// no further part: nothing of the client's framing reaches the backend.
pub fn multipart(data: &[u8]) {
    use couchgate::multipart;
    use couchgate::validate;
    let Some((boundary, body)) = related_input(data) else {
        return;
    };
    let Ok(related) = multipart::parse(&body, &boundary) else {
        return;
    };
    let Ok(Value::Object(mut doc)) = couchgate::json::parse(&related.doc) else {
        return;
    };
    let Ok(shape) = validate::check_doc(&mut doc, true) else {
        return;
    };
    let Ok(atts) = multipart::attachments(&shape.follows, related.rest) else {
        return;
    };
    set_id(&mut doc, "fuzzer.db.fuzzfuzzfuzzfuzz:doc".into());
    let json = serde_json::to_vec(&doc).expect("a document serialises");
    let (content_type, built) = multipart::build(&json, &atts);
    let again = multipart::parse(
        &built,
        &multipart::boundary(&content_type).expect("own type"),
    )
    .expect("the rebuilt body parses");
    assert_eq!(again.doc.as_ref(), json.as_slice());
    let again_atts = multipart::attachments(&shape.follows, again.rest).expect("same parts");
    assert_eq!(again_atts, atts);
}

/// Fields: chunk size (one byte), boundary, body. The streaming rewriter of multipart answers
/// never panics, and how the answer is cut into network chunks changes nothing: the same
/// verdict, the same bytes out.
pub fn multipart_answer(data: &[u8]) {
    use couchgate::multipart::answer::{Rewrite, Rewriter};
    struct Same;
    impl Rewrite for Same {
        fn json(&mut self, body: &[u8], _error: bool) -> couchgate::error::Result<Vec<u8>> {
            Ok(body.to_vec())
        }
        fn doc_id(&mut self, backing: &str) -> couchgate::error::Result<String> {
            Ok(backing.to_owned())
        }
    }
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let Some(at) = rest.iter().position(|b| *b == 0xff) else {
        return;
    };
    let Ok(boundary) = std::str::from_utf8(&rest[..at]) else {
        return;
    };
    let body = &rest[at + 1..];
    let ctype = format!("multipart/mixed; boundary=\"{boundary}\"");
    let run = |size: usize| -> Option<Vec<u8>> {
        let mut rw = Rewriter::new(&ctype, Same, 4096).ok()?;
        let mut out = bytes::BytesMut::new();
        for piece in body.chunks(size.max(1)) {
            rw.push(piece, &mut out).ok()?;
        }
        rw.finish(&mut out).ok()?;
        Some(out.to_vec())
    };
    assert_eq!(
        run(usize::from(chunk)),
        run(body.len()),
        "chunking changed the answer"
    );
}

/// Fields: chunk size (one byte), boundary, body. A `multipart/related` upload read as it
/// streams (`multipart::upload`) is accepted exactly when the whole-body parser accepts it,
/// and then the backend gets the body `multipart::build` builds (boundary aside), whatever the
/// network chunks.
pub fn multipart_upload(data: &[u8]) {
    use couchgate::multipart::{self, upload};
    use couchgate::validate;
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let Some((boundary, body)) = related_input(rest) else {
        return;
    };
    let check = |json: &[u8]| -> Option<(Vec<u8>, Vec<validate::Follows>)> {
        let Ok(Value::Object(mut doc)) = couchgate::json::parse(json) else {
            return None;
        };
        let shape = validate::check_doc(&mut doc, true).ok()?;
        Some((
            serde_json::to_vec(&doc).expect("a document serialises"),
            shape.follows,
        ))
    };
    let whole = || -> Option<Vec<u8>> {
        let related = multipart::parse(&body, &boundary).ok()?;
        let (json, follows) = check(&related.doc)?;
        let atts = multipart::attachments(&follows, related.rest).ok()?;
        let (ctype, built) = multipart::build(&json, &atts);
        let ours = multipart::boundary(&ctype).expect("own type");
        Some(
            String::from_utf8_lossy(&built)
                .replace(&ours, "B")
                .into_bytes(),
        )
    };
    let streamed = |size: usize| -> Option<Vec<u8>> {
        let mut head = upload::Head::new(&boundary, 1 << 20);
        let mut pieces = body.chunks(size.max(1));
        let json = loop {
            if let Some(json) = head.push(pieces.next()?).ok()? {
                break json;
            }
        };
        let (json, follows) = check(&json)?;
        let mut rf = head.reframe(follows, "B".into());
        let mut out = bytes::BytesMut::from(&rf.start(&json)[..]);
        rf.resume(&mut out).ok()?;
        for piece in pieces {
            rf.push(piece, &mut out).ok()?;
        }
        rf.finish().ok()?;
        assert_eq!(
            rf.length(json.len()),
            Some(out.len() as u64),
            "Content-Length"
        );
        Some(String::from_utf8_lossy(&out).into_owned().into_bytes())
    };
    let expected = whole();
    assert_eq!(
        streamed(usize::from(chunk)),
        expected,
        "chunked stream vs whole body"
    );
    assert_eq!(
        streamed(body.len()),
        expected,
        "one-piece stream vs whole body"
    );
}

/// Any JSON is a selector or a Mango error, never a panic; a normalised selector normalises to
/// itself (CouchDB's `normalize` accepts its own output); matching any document never panics;
/// and a selector confined to a namespace matches no document of another namespace.
pub fn mango(data: &[u8]) {
    use couchgate::mango::{confine::confine, Selector};
    let Ok(value) = couchgate::json::parse(data) else {
        return;
    };
    let Ok(selector) = Selector::parse(&value) else {
        return;
    };
    let again = Selector::parse(selector.normalized()).expect("a normalised selector parses");
    assert_eq!(
        again.normalized(),
        selector.normalized(),
        "normalisation is idempotent"
    );
    let docs = [
        serde_json::json!({"_id": "a", "n": 1, "l": [1, "x", null, {"k": [2]}], "o": {"k": "v"}}),
        serde_json::json!({"_id": "b", "_deleted": true}),
        value.clone(),
    ];
    for doc in &docs {
        let _ = selector.matches(doc);
    }
    let Ok(confined) = confine(selector.normalized(), "p:") else {
        return;
    };
    let confined = Selector::parse(&confined).expect("a confined selector parses");
    for doc in &docs {
        let mut other = doc.clone();
        other["_id"] = Value::String(format!("q:{}", doc["_id"].as_str().unwrap_or("x")));
        assert!(
            !confined.matches(&other),
            "a confined selector matched another namespace"
        );
    }
}
