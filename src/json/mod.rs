//! JSON parsing with CouchDB's limits rather than serde_json's defaults. Pure.
//!
//! CouchDB stores documents nested far deeper than serde_json's default recursion limit of 128,
//! so a document one user stores must parse wherever couchgate meets it again (the shared
//! feed, `_bulk_get`, `_all_docs?include_docs`). A text is parsed plainly first (within
//! serde_json's own limit, safe on any stack); one nested deeper is parsed on a stack that
//! grows on demand (`serde_stacker`), after a linear pre-scan bounds the depth, so no input can
//! exhaust the stack, whether couchgate parses it, serialises it or drops it ([`MAX_DEPTH`]).
//! Documents only passed on are not parsed into trees at all ([`raw`]).
//!
//! Backend answers wrap documents in a few levels of their own (`{"rows":[{"doc":...}]}`), so
//! they are read with [`BACKEND_MAX_DEPTH`]: whatever a client could store reads back.

pub mod raw;

use serde_json::Value;

/// Deepest nesting accepted. CouchDB itself accepts deeper, but every later step over a parsed
/// value (serialising, comparing, dropping it) recurses once per level on a runtime thread's
/// stack, so the bound keeps the deepest document far from a 2 MiB stack's end (a 3,000-deep
/// value overflows one in a debug build).
pub const MAX_DEPTH: usize = 1024;

/// The strings of a JSON array (a list of roles, of epochs); anything else counts as none.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect()
}

/// serde_json's default recursion limit: a text nested deeper fails its plain parse.
const SERDE_JSON_DEPTH: usize = 128;

/// Deepest nesting accepted in a backend answer: a document of [`MAX_DEPTH`] inside the
/// envelope of any CouchDB answer (`_changes`, `_all_docs`, `_bulk_get` add at most 5 levels).
pub const BACKEND_MAX_DEPTH: usize = MAX_DEPTH + 8;

/// Why a text is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not JSON (or not UTF-8).
    Syntax,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// The deepest nesting of arrays and objects in `bytes`, ignoring brackets inside strings.
/// Linear; stops counting past `MAX_DEPTH`.
pub fn depth(bytes: &[u8]) -> usize {
    depth_upto(bytes, MAX_DEPTH)
}

/// [`depth`], counting up to `limit` (it stops at the first level deeper).
fn depth_upto(bytes: &[u8], limit: usize) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
                if max > limit {
                    return max;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses one JSON value nested at most [`MAX_DEPTH`] deep.
pub fn parse(bytes: &[u8]) -> Result<Value, Invalid> {
    parse_within(bytes, MAX_DEPTH)
}

/// Parses one JSON value nested at most `max_depth` deep (at most [`BACKEND_MAX_DEPTH`]: the
/// stack bound of the module doc).
pub fn parse_within(bytes: &[u8], max_depth: usize) -> Result<Value, Invalid> {
    let max_depth = max_depth.min(BACKEND_MAX_DEPTH);
    // Nearly every text nests less than serde_json's own recursion limit, within which its
    // parse is safe on any runtime thread's stack: that is tried first. Deeper texts (and
    // invalid ones, to tell the two apart) take the pre-scan and the growing stack.
    if max_depth >= SERDE_JSON_DEPTH {
        if let Ok(value) = serde_json::from_slice(bytes) {
            return Ok(value);
        }
    }
    if depth_upto(bytes, max_depth) > max_depth {
        return Err(Invalid::TooDeep);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(serde_stacker::Deserializer::new(&mut de))
        .map_err(|_: serde_json::Error| Invalid::Syntax)?;
    // Only whitespace may follow the value.
    de.end().map_err(|_| Invalid::Syntax)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_documents_parse() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let v = parse(deep.as_bytes()).unwrap();
        assert_eq!(serde_json::to_vec(&v.clone()).unwrap().len(), 2 * MAX_DEPTH);
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(too_deep.as_bytes()), Err(Invalid::TooDeep));
    }

    #[test]
    fn backend_answers_hold_the_deepest_document() {
        let doc = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let answer = format!(r#"{{"results":[{{"seq":1,"doc":{doc}}}]}}"#);
        assert_eq!(parse(answer.as_bytes()), Err(Invalid::TooDeep));
        assert!(parse_within(answer.as_bytes(), BACKEND_MAX_DEPTH).is_ok());
        let n = BACKEND_MAX_DEPTH + 1;
        let deeper = format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(
            parse_within(deeper.as_bytes(), usize::MAX),
            Err(Invalid::TooDeep)
        );
    }

    #[test]
    fn texts_either_side_of_serde_jsons_own_limit_parse_alike() {
        for n in [
            SERDE_JSON_DEPTH - 1,
            SERDE_JSON_DEPTH,
            SERDE_JSON_DEPTH + 1,
            600,
        ] {
            let text = format!("{}1{}", "[".repeat(n), "]".repeat(n));
            let v = parse(text.as_bytes()).unwrap();
            assert_eq!(serde_json::to_string(&v).unwrap(), text);
        }
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert_eq!(depth(br#"{"a":"[[[[\"[[[","b":[1]}"#), 2);
    }

    #[test]
    fn syntax_errors_and_trailing_data() {
        assert_eq!(parse(b"{"), Err(Invalid::Syntax));
        assert_eq!(parse(b"{} x"), Err(Invalid::Syntax));
        assert_eq!(parse(b"1e400"), Err(Invalid::Syntax));
        assert_eq!(parse(b"\"\xff\""), Err(Invalid::Syntax));
        assert_eq!(parse(b" {\"a\":1}\n").unwrap()["a"], 1);
    }
}
