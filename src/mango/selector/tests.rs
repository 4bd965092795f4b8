//! Selector semantics, from CouchDB's documentation ("Mango Queries": operators, implicit
//! operators, combination operators, condition operators) and `mango_selector.erl`. The
//! differential suite (`tests/differential`) sends every case of the same table to a real
//! CouchDB and to couchgate as `_changes?filter=_selector` and compares the answers.

use super::*;
use serde_json::json;

/// The verdict table: documents, and `{selector, matches}` cases naming the documents each
/// selector matches (`tests/fixtures/mango_selectors.json`).
fn table() -> (Vec<Value>, Vec<(Value, Vec<String>)>) {
    let t: Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/mango_selectors.json")).unwrap();
    let docs = t["docs"].as_array().unwrap().clone();
    let cases = t["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["selector"].clone(), crate::json::strings(&c["matches"])))
        .collect();
    (docs, cases)
}

#[test]
fn every_verdict_of_the_table() {
    let (docs, cases) = table();
    assert!(cases.len() > 80);
    for (selector, expected) in cases {
        let s = Selector::parse(&selector).unwrap_or_else(|e| panic!("{selector}: {e:?}"));
        let got: Vec<String> = docs
            .iter()
            .filter(|d| s.matches(d))
            .map(|d| d["_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, expected, "{selector}");
    }
}

#[test]
fn normalisation_is_couchdbs() {
    let cases = [
        (json!({"a": 1}), json!({"a": {"$eq": 1}})),
        (
            json!({"a": {"$gt": 1, "$lt": 5}}),
            json!({"$and": [{"a": {"$gt": 1}}, {"a": {"$lt": 5}}]}),
        ),
        (json!({"a": {"b": {"$gt": 1}}}), json!({"a.b": {"$gt": 1}})),
        (
            json!({"$not": {"a": {"$gt": 1}}}),
            json!({"a": {"$lte": 1}}),
        ),
        (
            json!({"$nor": [{"a": 1}, {"b": {"$in": [2]}}]}),
            json!({"$and": [{"a": {"$ne": 1}}, {"b": {"$nin": [2]}}]}),
        ),
        (
            json!({"a": {"$not": {"$size": 2}}}),
            json!({"a": {"$not": {"$size": 2}}}),
        ),
        (
            json!({"a": {"$elemMatch": {"$gte": 80, "$lt": 85}}}),
            json!({"a": {"$elemMatch": {"$and": [{"": {"$gte": 80}}, {"": {"$lt": 85}}]}}}),
        ),
        (json!({"$text": "x"}), json!({"$default": {"$text": "x"}})),
    ];
    for (input, want) in cases {
        assert_eq!(
            Selector::parse(&input).unwrap().normalized(),
            &want,
            "{input}"
        );
    }
}

#[test]
fn bad_selectors_get_couchdbs_errors() {
    let cases = [
        (
            json!({"a": {"$in": 1}}),
            "bad_arg",
            "Bad argument for operator $in: 1",
        ),
        (
            json!({"a": {"$exists": "yes"}}),
            "bad_arg",
            "Bad argument for operator $exists: <<121,101,115>>",
        ),
        (
            json!({"a": {"$mod": [2.5, 1]}}),
            "bad_arg",
            "Bad argument for operator $mod: [2.5,1]",
        ),
        (
            json!({"a": {"$size": -1}}),
            "bad_arg",
            "Bad argument for operator $size: -1",
        ),
        (
            json!({"a": {"$regex": "("}}),
            "bad_arg",
            "Bad argument for operator $regex: <<40>>",
        ),
        (
            json!({"$and": {"a": 1}}),
            "bad_arg",
            "Bad argument for operator $and: {[{<<97>>,1}]}",
        ),
        (
            json!({"a": {"$where": "x"}}),
            "not_supported",
            "Unsupported operator: $where",
        ),
        (
            json!({"a": {"$foo": 1}}),
            "invalid_operator",
            "Invalid operator: $foo",
        ),
        (
            json!({"": 1}),
            "invalid_selector",
            "One or more conditions is missing a field name.",
        ),
        (
            json!({"a..b": 1}),
            "invalid_field_name",
            "Invalid field name: a..b",
        ),
    ];
    for (input, name, reason) in cases {
        let e = Selector::parse(&input).unwrap_err();
        assert_eq!((e.name, e.reason.as_str()), (name, reason), "{input}");
    }
}

#[test]
fn deep_selectors_are_refused_not_recursed() {
    let mut s = json!({"a": 1});
    // As deep as a request body may be (`json::parse_within`); deeper than `MAX_DEPTH`.
    for _ in 0..500 {
        s = json!({ "$and": [s] });
    }
    assert_eq!(Selector::parse(&s).unwrap_err().name, "invalid_selector");
    let mut ok = json!({"a": 1});
    for _ in 0..20 {
        ok = json!({ "$and": [ok] });
    }
    assert!(Selector::parse(&ok).is_ok());
}

#[test]
fn field_paths() {
    assert_eq!(parse_field("a.b").unwrap(), ["a", "b"]);
    assert_eq!(parse_field("a\\.b").unwrap(), ["a.b"]);
    assert_eq!(parse_field("a.b\\.c").unwrap(), ["a", "b.c"]);
    assert!(parse_field("a..b").is_err());
    assert!(parse_field(".a").is_err());
    assert_eq!(array_index("+1"), Some(1));
    assert_eq!(array_index("-1"), None);
    assert_eq!(array_index("01"), Some(1));
    assert_eq!(array_index("1 "), None);
}

#[test]
fn erlang_terms() {
    assert_eq!(
        erlang_term(&json!([1, 2.5, "ab", null, true])),
        "[1,2.5,<<97,98>>,null,true]"
    );
    assert_eq!(erlang_term(&json!({"k": {}})), "{[{<<107>>,{[]}}]}");
    assert_eq!(erlang_term(&json!("é")), "<<195,169>>");
    assert_eq!(erlang_term(&json!(1e20)), "1.0e20");
}
