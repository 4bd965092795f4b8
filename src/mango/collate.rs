//! The two orders Mango compares JSON values by.
//!
//! - [`cmp`]: CouchDB's view collation (`couch_ejson_compare`): `null` < `false` < `true` <
//!   numbers < strings < arrays < objects; strings by the Unicode Collation Algorithm with ICU's
//!   root collator at its default (tertiary) strength, as CouchDB's `ucol_open("")`; arrays
//!   element by element, then by length; objects member by member (key, then value), then by
//!   number of members.
//! - [`cmp_raw`]: Erlang's term order over CouchDB's JSON terms (`mango_json:cmp_raw`), which
//!   Mango uses for `_id`: numbers < atoms (`false` < `null` < `true`, by name) < objects <
//!   arrays < strings, strings byte by byte.

use icu_collator::options::CollatorOptions;
use icu_collator::{CollatorBorrowed, CollatorPreferences};
use serde_json::{Number, Value};
use std::cmp::Ordering;
use std::sync::OnceLock;

fn collator() -> &'static CollatorBorrowed<'static> {
    static COLLATOR: OnceLock<CollatorBorrowed<'static>> = OnceLock::new();
    COLLATOR.get_or_init(|| {
        CollatorBorrowed::try_new(CollatorPreferences::default(), CollatorOptions::default())
            .expect("the root collation is compiled in")
    })
}

/// Compares strings as CouchDB's views and Mango do.
pub fn strings(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    collator().compare(a, b)
}

/// Numbers by value; an integer and a float compare by value too (`1` equals `1.0`).
pub fn numbers(a: &Number, b: &Number) -> Ordering {
    let int = |n: &Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

/// Element by element, then the shorter first.
fn lexicographic<T: IntoIterator + Copy>(
    x: T,
    y: T,
    each: impl Fn(T::Item, T::Item) -> Ordering,
) -> Ordering
where
    T::IntoIter: ExactSizeIterator,
{
    let (nx, ny) = (x.into_iter().len(), y.into_iter().len());
    x.into_iter()
        .zip(y)
        .map(|(p, q)| each(p, q))
        .find(|o| o.is_ne())
        .unwrap_or_else(|| nx.cmp(&ny))
}

/// CouchDB's view collation of two JSON values.
pub fn cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(false) => 1,
            Value::Bool(true) => 2,
            Value::Number(_) => 3,
            Value::String(_) => 4,
            Value::Array(_) => 5,
            Value::Object(_) => 6,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers(x, y),
        (Value::String(x), Value::String(y)) => strings(x, y),
        (Value::Array(x), Value::Array(y)) => lexicographic(x, y, cmp),
        (Value::Object(x), Value::Object(y)) => lexicographic(x, y, |(ka, va), (kb, vb)| {
            strings(ka, kb).then_with(|| cmp(va, vb))
        }),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Erlang's term order of two JSON values as CouchDB holds them.
pub fn cmp_raw(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            // Atoms, ordered by name below.
            Value::Null | Value::Bool(_) => 1,
            Value::Object(_) => 2,
            Value::Array(_) => 3,
            Value::String(_) => 4,
        }
    }
    fn atom(v: &Value) -> &'static str {
        match v {
            Value::Bool(true) => "true",
            Value::Bool(false) => "false",
            _ => "null",
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Array(x), Value::Array(y)) => lexicographic(x, y, cmp_raw),
        // `{Props}`: the member lists compare as lists of `{Key, Value}` pairs.
        (Value::Object(x), Value::Object(y)) => lexicographic(x, y, |(ka, va), (kb, vb)| {
            ka.as_bytes()
                .cmp(kb.as_bytes())
                .then_with(|| cmp_raw(va, vb))
        }),
        _ if rank(a) == 1 && rank(b) == 1 => atom(a).cmp(atom(b)),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// CouchDB's documented collation example ("Views Collation", "Collation Specification"),
    /// in ascending order.
    #[test]
    fn view_collation_follows_couchdbs_table() {
        let ordered = json!([
            null,
            false,
            true,
            1,
            2,
            3.0,
            4,
            "a",
            "A",
            "aa",
            "b",
            "B",
            "ba",
            "bb",
            ["a"],
            ["b"],
            ["b", "c"],
            ["b", "c", "a"],
            ["b", "d"],
            ["b", "d", "e"],
            {"a": 1},
            {"a": 2},
            {"b": 1},
            {"b": 2},
            {"b": 2, "a": 1},
            {"b": 2, "c": 2}
        ]);
        let v = ordered.as_array().unwrap();
        for (i, a) in v.iter().enumerate() {
            for (j, b) in v.iter().enumerate() {
                assert_eq!(cmp(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn numbers_compare_by_value_whatever_their_form() {
        assert_eq!(cmp(&json!(1), &json!(1.0)), Ordering::Equal);
        assert_eq!(cmp(&json!(-1), &json!(0.5)), Ordering::Less);
        assert_eq!(cmp(&json!(u64::MAX), &json!(i64::MIN)), Ordering::Greater);
        assert_eq!(cmp(&json!(1e300), &json!(u64::MAX)), Ordering::Greater);
    }

    #[test]
    fn strings_use_the_unicode_collation_algorithm() {
        // Case is a tertiary difference: lower case first, after the letters themselves.
        assert_eq!(strings("a", "B"), Ordering::Less);
        assert_eq!(strings("b", "A"), Ordering::Greater);
        // Accents are secondary: "é" sorts with "e", after it.
        assert_eq!(strings("e", "é"), Ordering::Less);
        assert_eq!(strings("é", "f"), Ordering::Less);
        // Canonically equivalent spellings are equal.
        assert_eq!(strings("\u{e9}", "e\u{301}"), Ordering::Equal);
    }

    #[test]
    fn raw_order_is_erlangs_term_order() {
        let ordered = json!([1, 2.5, false, null, true, {"a": 1}, [], [1], "A", "a", "b"]);
        let v = ordered.as_array().unwrap();
        for (i, a) in v.iter().enumerate() {
            for (j, b) in v.iter().enumerate() {
                assert_eq!(cmp_raw(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }
}
