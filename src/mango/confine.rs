//! A normalised selector confined to one namespace: its `_id` conditions are rewritten to
//! backing ids and the namespace's `_id` range is added, so CouchDB answers from that range
//! only (its planner turns the range into the bounds of an `_all_docs` scan), whatever the
//! rest of the selector says.
//!
//! Backing ids are `{partition}:{client id}`, so for strings `a < b` exactly when
//! `prefix + a < prefix + b` (byte order, which Mango uses for `_id`): comparisons, `$in`,
//! `$nin`, `$all` and `$beginsWith` keep their meaning with the prefix added to their strings.
//! Non-string arguments compare the same against any string. `$regex` on `_id` cannot be
//! rewritten in general and is refused.

use super::selector::{only, single, MangoError};
use serde_json::Value;

/// The upper bound of a namespace's ids: `prefix` and U+10FFFF. It must follow every id of the
/// namespace in both of CouchDB's orders: the scan of `_all_docs` runs in byte order, but
/// Mango computes its bounds in ICU collation, where `{partition};` (the next string in byte
/// order) sorts *before* `{partition}:` (`;` precedes `:` in the Unicode Collation Algorithm).
/// U+10FFFF is the last code point in byte order, and as an unassigned code point it collates
/// after every assigned character but U+FFFD (ICU gives the replacement character the
/// second-highest weight, after U+FFFF). So every id of the namespace is scanned, and only an
/// `_id` condition on a string starting with U+FFFD or U+FFFF (or U+10FFFF) matches nothing
/// through couchgate.
pub fn upper_bound(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// `normalized` (a [`super::Selector::normalized`]) confined to the ids starting with `prefix`
/// (`{partition}:`).
pub fn confine(normalized: &Value, prefix: &str) -> Result<Value, MangoError> {
    let mut all = vec![
        single("_id", single("$gt", Value::String(prefix.to_owned()))),
        single("_id", single("$lt", Value::String(upper_bound(prefix)))),
    ];
    if !matches!(normalized, Value::Object(m) if m.is_empty()) {
        all.insert(0, walk(normalized, prefix)?);
    }
    Ok(single("$and", Value::Array(all)))
}

fn walk(v: &Value, prefix: &str) -> Result<Value, MangoError> {
    match only(v) {
        Some((op @ ("$and" | "$or" | "$nor"), Value::Array(args))) => Ok(single(
            op,
            Value::Array(
                args.iter()
                    .map(|a| walk(a, prefix))
                    .collect::<Result<_, _>>()?,
            ),
        )),
        Some(("$not", arg)) => Ok(single("$not", walk(arg, prefix)?)),
        Some(("_id", cond)) => Ok(single("_id", id_cond(cond, prefix)?)),
        _ => Ok(v.clone()),
    }
}

fn id_cond(cond: &Value, prefix: &str) -> Result<Value, MangoError> {
    let id = |v: &Value| match v {
        Value::String(s) => Value::String(format!("{prefix}{s}")),
        other => other.clone(),
    };
    let Some((op, arg)) = only(cond) else {
        return Ok(cond.clone());
    };
    Ok(match (op, arg) {
        ("$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" | "$beginsWith", _) => single(op, id(arg)),
        ("$in" | "$nin" | "$all", Value::Array(a)) => {
            single(op, Value::Array(a.iter().map(id).collect()))
        }
        ("$not", _) => single("$not", id_cond(arg, prefix)?),
        ("$regex", _) => {
            return Err(MangoError {
                name: "bad_arg",
                reason: "$regex on _id is not supported by couchgate (ids are namespaced): use \
                         $beginsWith, $gt or $lt"
                    .into(),
            })
        }
        _ => cond.clone(),
    })
}

/// Strips `prefix` from every string of `v` that starts with it (backing ids in CouchDB's
/// `_explain` output back to client ids).
pub fn unconfine(v: &mut Value, prefix: &str) {
    match v {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(prefix) {
                *s = rest.to_owned();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| unconfine(x, prefix)),
        Value::Object(m) => m.values_mut().for_each(|x| unconfine(x, prefix)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mango::Selector;
    use serde_json::json;

    fn confined(s: Value) -> Result<Value, MangoError> {
        confine(Selector::parse(&s).unwrap().normalized(), "p:")
    }

    #[test]
    fn id_conditions_name_backing_ids_and_the_range_is_added() {
        assert_eq!(
            confined(json!({"_id": {"$gt": "a", "$in": ["b", 1]}, "x": "a"})).unwrap(),
            json!({"$and": [
                {"$and": [
                    {"$and": [{"_id": {"$gt": "p:a"}}, {"_id": {"$in": ["p:b", 1]}}]},
                    {"x": {"$eq": "a"}}
                ]},
                {"_id": {"$gt": "p:"}},
                {"_id": {"$lt": "p:\u{10FFFF}"}}
            ]})
        );
        assert_eq!(
            confined(json!({})).unwrap(),
            json!({"$and": [{"_id": {"$gt": "p:"}}, {"_id": {"$lt": "p:\u{10FFFF}"}}]})
        );
        // Under $or, $nor (pushed down as $and of negations) and $not.
        assert_eq!(
            confined(json!({"$nor": [{"_id": "a"}]})).unwrap()["$and"][0],
            json!({"$and": [{"_id": {"$ne": "p:a"}}]})
        );
        assert_eq!(
            confined(json!({"_id": {"$not": {"$beginsWith": "a"}}})).unwrap()["$and"][0],
            json!({"_id": {"$not": {"$beginsWith": "p:a"}}})
        );
        // Inside $elemMatch, `_id` is a member of the array's elements, not the document id.
        assert_eq!(
            confined(json!({"l": {"$elemMatch": {"_id": "a"}}})).unwrap()["$and"][0],
            json!({"l": {"$elemMatch": {"_id": {"$eq": "a"}}}})
        );
        assert_eq!(
            confined(json!({"_id": {"$regex": "^a"}})).unwrap_err().name,
            "bad_arg"
        );
    }

    /// The bounds hold every id of the namespace in byte order (the `_all_docs` scan, and
    /// Mango's matching of `_id`), and in ICU collation (Mango's bounds arithmetic over the
    /// conditions' arguments) every id that is not all ignorable characters.
    #[test]
    fn bounds_hold_in_both_orders() {
        use crate::mango::collate::{cmp, cmp_raw};
        let (lo, hi) = (json!("p:"), json!(upper_bound("p:")));
        assert!(cmp(&json!("p;"), &lo).is_lt(), "why not `p;`");
        let ids = [
            "a",
            "Z",
            "_design/x",
            "~",
            "é",
            "日本",
            "😀note",
            "\u{10fffd}",
        ];
        for id in ids.iter().chain(&["\u{7f}", "\u{0}", "\u{fffd}"]) {
            let id = json!(format!("p:{id}"));
            assert!(
                cmp_raw(&lo, &id).is_lt() && cmp_raw(&id, &hi).is_lt(),
                "{id}"
            );
        }
        for id in ids {
            let id = json!(format!("p:{id}"));
            assert!(cmp(&lo, &id).is_lt() && cmp(&id, &hi).is_lt(), "{id}");
        }
    }

    /// Rewritten, the selector matches a namespace's backing documents exactly when the
    /// original matches their client forms, and never a document of another namespace.
    #[test]
    fn confinement_keeps_meaning() {
        let client = ["a", "ab", "b", "_design/x", "z"];
        let selectors = [
            json!({"_id": {"$gt": "a"}}),
            json!({"_id": {"$lte": "b"}}),
            json!({"_id": {"$in": ["ab", "z"]}}),
            json!({"_id": {"$nin": ["ab"]}}),
            json!({"_id": {"$beginsWith": "a"}}),
            json!({"$not": {"_id": {"$eq": "b"}}}),
            json!({"_id": {"$gt": null}}),
            json!({"_id": {"$lt": 5}}),
        ];
        for s in selectors {
            let plain = Selector::parse(&s).unwrap();
            let rewritten = Selector::parse(&confined(s.clone()).unwrap()).unwrap();
            for c in client {
                assert_eq!(
                    plain.matches(&json!({"_id": c})),
                    rewritten.matches(&json!({"_id": format!("p:{c}")})),
                    "{s} on {c}"
                );
                assert!(!rewritten.matches(&json!({"_id": format!("q:{c}")})), "{s}");
                assert!(!rewritten.matches(&json!({"_id": format!("p;{c}")})), "{s}");
            }
        }
    }
}
