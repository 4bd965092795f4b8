//! Selector semantics, from CouchDB's documentation ("Mango Queries": operators, implicit
//! operators, combination operators, condition operators) and `mango_selector.erl`. The same
//! table is sent to a real CouchDB by `tests/mango.rs`, which checks every verdict against it.

use super::*;
use serde_json::json;

/// Documents the table's verdicts are about.
pub fn docs() -> Vec<Value> {
    vec![
        json!({"_id": "film1", "_rev": "1-a", "title": "Live And Let Die", "year": 1973,
               "director": "Guy Hamilton", "genre": ["action", "spy"], "rating": 6.8,
               "cast": [{"name": "Roger Moore", "age": 45}, {"name": "Jane Seymour", "age": 22}],
               "location": {"city": "New Orleans", "state": "LA"},
               "tags": {"bond": true}, "dotted.key": 1}),
        json!({"_id": "film2", "_rev": "1-b", "title": "Dogville", "year": 2003,
               "director": "Lars von Trier", "genre": ["drama"], "rating": 8,
               "cast": [{"name": "Nicole Kidman", "age": 36}],
               "location": {"city": "Trollhättan"}, "imdb": null}),
        json!({"_id": "film3", "_rev": "2-c", "title": "melancholia", "year": 2011.0,
               "director": "Lars von Trier", "genre": [], "rating": "7.1",
               "cast": [], "scores": [80, 84, 90]}),
        json!({"_id": "note", "_rev": "1-d", "text": "Écrit à la main", "n": -7,
               "scores": [82, 83], "matrix": [[1, 2], [3]], "empty": {}}),
        json!({"_id": "gone", "_rev": "3-e", "_deleted": true}),
    ]
}

/// `(selector, ids of the documents it matches)`.
pub fn table() -> Vec<(Value, Vec<&'static str>)> {
    vec![
        // Implicit operators and field paths.
        (json!({}), vec!["film1", "film2", "film3", "note", "gone"]),
        (
            json!({"director": "Lars von Trier"}),
            vec!["film2", "film3"],
        ),
        (json!({"location.city": "New Orleans"}), vec!["film1"]),
        (json!({"location": {"city": "New Orleans"}}), vec!["film1"]),
        (
            json!({"location": {"state": {"$exists": false}}}),
            vec!["film2", "film3", "note", "gone"],
        ),
        (json!({"dotted\\.key": 1}), vec!["film1"]),
        (json!({"cast.0.name": "Roger Moore"}), vec!["film1"]),
        (json!({"cast.1.age": {"$lt": 30}}), vec!["film1"]),
        (
            json!({"director": "Lars von Trier", "year": 2003}),
            vec!["film2"],
        ),
        (json!({"genre": ["drama"]}), vec!["film2"]),
        (json!({"empty": {}}), vec!["note"]),
        (json!({"imdb": null}), vec!["film2"]),
        (json!({"_deleted": true}), vec!["gone"]),
        // Condition operators; collation: numbers < strings, int == float.
        (json!({"year": {"$gt": 2000}}), vec!["film2", "film3"]),
        (json!({"year": {"$gte": 2011}}), vec!["film3"]),
        (json!({"year": 2011}), vec!["film3"]),
        (json!({"year": {"$lte": 1973, "$gt": 1900}}), vec!["film1"]),
        (json!({"rating": {"$gt": 7}}), vec!["film2", "film3"]),
        (json!({"rating": {"$lt": "7"}}), vec!["film1", "film2"]),
        (json!({"title": {"$gt": "Live"}}), vec!["film1", "film3"]),
        (json!({"title": {"$lt": "m"}}), vec!["film1", "film2"]),
        (json!({"year": {"$ne": 2003}}), vec!["film1", "film3"]),
        (json!({"n": {"$lt": 0}}), vec!["note"]),
        // Missing fields never match a condition but `$exists: false`.
        (json!({"imdb": {"$exists": true}}), vec!["film2"]),
        (
            json!({"imdb": {"$exists": false}}),
            vec!["film1", "film3", "note", "gone"],
        ),
        (json!({"year": {"$ne": 1973}}), vec!["film2", "film3"]),
        // `$type`
        (json!({"rating": {"$type": "string"}}), vec!["film3"]),
        (
            json!({"rating": {"$type": "number"}}),
            vec!["film1", "film2"],
        ),
        (json!({"imdb": {"$type": "null"}}), vec!["film2"]),
        (json!({"tags": {"$type": "object"}}), vec!["film1"]),
        (
            json!({"genre": {"$type": "array"}}),
            vec!["film1", "film2", "film3"],
        ),
        // `$in`, `$nin`: an array field matches if any element does.
        (
            json!({"year": {"$in": [1973, 2011]}}),
            vec!["film1", "film3"],
        ),
        (
            json!({"genre": {"$in": ["spy", "drama"]}}),
            vec!["film1", "film2"],
        ),
        (json!({"genre": {"$in": [["drama"]]}}), vec![]),
        (json!({"genre": {"$in": []}}), vec![]),
        (json!({"genre": {"$nin": ["spy"]}}), vec!["film2", "film3"]),
        (json!({"year": {"$nin": [1973]}}), vec!["film2", "film3"]),
        (
            json!({"year": {"$nin": []}}),
            vec!["film1", "film2", "film3"],
        ),
        // `$all`, `$size`
        (json!({"genre": {"$all": ["action", "spy"]}}), vec!["film1"]),
        (json!({"genre": {"$all": ["drama"]}}), vec!["film2"]),
        (json!({"matrix": {"$all": [[3]]}}), vec!["note"]),
        (json!({"genre": {"$all": []}}), vec![]),
        (json!({"genre": {"$size": 0}}), vec!["film3"]),
        (json!({"cast": {"$size": 1}}), vec!["film2"]),
        // `$elemMatch`, `$allMatch`, `$keyMapMatch`
        (
            json!({"genre": {"$elemMatch": {"$eq": "spy"}}}),
            vec!["film1"],
        ),
        (
            json!({"cast": {"$elemMatch": {"age": {"$gt": 40}}}}),
            vec!["film1"],
        ),
        (
            json!({"scores": {"$elemMatch": {"$gte": 80, "$lt": 85}}}),
            vec!["film3", "note"],
        ),
        (
            json!({"scores": {"$allMatch": {"$gte": 80, "$lt": 85}}}),
            vec!["note"],
        ),
        (
            json!({"genre": {"$allMatch": {"$eq": "drama"}}}),
            vec!["film2"],
        ),
        (
            json!({"cast": {"$allMatch": {"age": {"$gt": 20}}}}),
            vec!["film1", "film2"],
        ),
        (
            json!({"tags": {"$keyMapMatch": {"$eq": "bond"}}}),
            vec!["film1"],
        ),
        (
            json!({"location": {"$keyMapMatch": {"$eq": "state"}}}),
            vec!["film1"],
        ),
        // `$mod`: integers only (`2011.0` is a float).
        (json!({"year": {"$mod": [2, 1]}}), vec!["film1", "film2"]),
        (json!({"n": {"$mod": [2, -1]}}), vec!["note"]),
        (json!({"year": {"$mod": [0, 1]}}), vec![]),
        // `$regex` (byte semantics), `$beginsWith`
        (
            json!({"title": {"$regex": "^[A-Z]"}}),
            vec!["film1", "film2"],
        ),
        (json!({"title": {"$regex": "(?i)^MEL"}}), vec!["film3"]),
        (json!({"year": {"$regex": "19"}}), vec![]),
        (json!({"text": {"$regex": "^.crit"}}), vec![]),
        (json!({"text": {"$regex": "^..crit"}}), vec!["note"]),
        (json!({"title": {"$beginsWith": "Do"}}), vec!["film2"]),
        (json!({"year": {"$beginsWith": "1"}}), vec![]),
        // `_id` compares in Erlang's term order: bytes, and numbers below strings.
        (
            json!({"_id": {"$gt": "film2"}}),
            vec!["film3", "note", "gone"],
        ),
        (json!({"_id": {"$lt": "Z"}}), vec![]),
        (
            json!({"_id": {"$gt": null}}),
            vec!["film1", "film2", "film3", "note", "gone"],
        ),
        (
            json!({"_id": {"$in": ["note", "film1"]}}),
            vec!["film1", "note"],
        ),
        // Combination operators
        (
            json!({"$and": [{"year": {"$gt": 1970}}, {"director": "Guy Hamilton"}]}),
            vec!["film1"],
        ),
        (
            json!({"$or": [{"year": 1973}, {"title": "Dogville"}]}),
            vec!["film1", "film2"],
        ),
        (
            json!({"$or": []}),
            vec!["film1", "film2", "film3", "note", "gone"],
        ),
        (
            json!({"$and": []}),
            vec!["film1", "film2", "film3", "note", "gone"],
        ),
        (
            json!({"$nor": [{"year": 1973}, {"year": 2003}]}),
            vec!["film3"],
        ),
        (
            json!({"year": {"$or": [1973, 2003]}}),
            vec!["film1", "film2"],
        ),
        // `$not` is pushed down: a missing field does not match the negation either.
        (json!({"$not": {"year": {"$gt": 2000}}}), vec!["film1"]),
        (json!({"year": {"$not": {"$gt": 2000}}}), vec!["film1"]),
        (
            json!({"$not": {"imdb": {"$exists": true}}}),
            vec!["film1", "film3", "note", "gone"],
        ),
        (
            json!({"$not": {"$or": [{"year": 1973}, {"year": 2003}]}}),
            vec!["film3"],
        ),
        (json!({"$not": {"$not": {"year": 1973}}}), vec!["film1"]),
        (
            json!({"genre": {"$not": {"$size": 1}}}),
            vec!["film1", "film3"],
        ),
        (
            json!({"title": {"$not": {"$regex": "^D"}}}),
            vec!["film1", "film3"],
        ),
        (
            json!({"$not": {"genre": {"$in": ["spy"]}}}),
            vec!["film2", "film3"],
        ),
        // `$text` needs a text index: CouchDB's matcher lets everything through.
        (
            json!({"$text": "bond"}),
            vec!["film1", "film2", "film3", "note", "gone"],
        ),
    ]
}

#[test]
fn every_verdict_of_the_table() {
    let docs = docs();
    for (selector, expected) in table() {
        let s = Selector::parse(&selector).unwrap_or_else(|e| panic!("{selector}: {e:?}"));
        let got: Vec<&str> = docs
            .iter()
            .filter(|d| s.matches(d))
            .map(|d| d["_id"].as_str().unwrap())
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
            "Bad argument for operator $exists: <<\"yes\">>",
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
            "Bad argument for operator $regex: <<\"(\">>",
        ),
        (
            json!({"$and": {"a": 1}}),
            "bad_arg",
            "Bad argument for operator $and: {[{<<\"a\">>,1}]}",
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
        erlang_term(&json!([1, 2.5, "a\"b", null, true])),
        r#"[1,2.5,<<"a\"b">>,null,true]"#
    );
    assert_eq!(erlang_term(&json!({"k": {}})), r#"{[{<<"k">>,{[]}}]}"#);
    assert_eq!(erlang_term(&json!("é")), "<<195,169>>");
    assert_eq!(erlang_term(&json!(1e20)), "1.0e20");
}
