//! JSON parsing with CouchDB's limits rather than serde_json's defaults. Pure.
//!
//! CouchDB stores documents nested far deeper than serde_json's default recursion limit of 128,
//! so a document one user stores must parse wherever couchgate meets it again (the shared
//! feed, `_bulk_get`, `_all_docs?include_docs`). Parsing runs on a stack that grows on demand
//! (`serde_stacker`), after a linear pre-scan bounds the depth, so no input can exhaust the
//! stack, whether couchgate parses it, serialises it or drops it ([`MAX_DEPTH`]).

use serde_json::Value;

/// Deepest nesting accepted. CouchDB itself accepts deeper, but every later step over a parsed
/// value (serialising, comparing, dropping it) recurses once per level on a runtime thread's
/// stack, so the bound keeps the deepest document far from a 2 MiB stack's end (a 3,000-deep
/// value overflows one in a debug build).
pub const MAX_DEPTH: usize = 1024;

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
                if max > MAX_DEPTH {
                    return max;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses one JSON value.
pub fn parse(bytes: &[u8]) -> Result<Value, Invalid> {
    if depth(bytes) > MAX_DEPTH {
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
