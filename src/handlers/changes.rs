//! `GET|POST /{db}/_changes`: parses the request into [`Opts`] (pure) and hands it to the
//! changes machinery ([`crate::changes`]), which frames the namespace's feed.

use super::{bool_of, Query, Req};
use crate::body::Body;
use crate::changes::feed::{Feed, Opts, DEFAULT_TIMEOUT};
use crate::changes::positions::Since;
use crate::changes::select::SelectorFilter;
use crate::error::{Error, Result};
use crate::mango::{Fields, Selector};
use crate::namespace::Namespace;
use crate::state::State;
use http::{Method, Response};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// A count from the query: digits only; more than fit are as good as infinite.
fn count(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse().unwrap_or(u64::MAX))
}

/// `heartbeat` and `timeout`, in milliseconds, held to CouchDB's maximum wait (60 s), so no
/// client value can overflow a deadline.
fn millis(q: &Query, key: &str) -> Result<Option<Duration>> {
    let Some(v) = q.get(key) else {
        return Ok(None);
    };
    let ms = match (key, v) {
        ("heartbeat", "true") => return Ok(Some(DEFAULT_TIMEOUT)),
        ("heartbeat", v) => match count(v) {
            Some(0) => {
                return Err(Error::bad_request(
                    "The heartbeat value should be a positive integer (in milliseconds).",
                ))
            }
            Some(ms) => ms,
            None => return Err(Error::bad_request(
                "Invalid heartbeat value. Expecting a positive integer value (in milliseconds).",
            )),
        },
        (_, v) => count(v).ok_or_else(|| {
            Error::bad_request(format!("Invalid {key} value: must be milliseconds"))
        })?,
    };
    Ok(Some(Duration::from_millis(ms.max(1)).min(DEFAULT_TIMEOUT)))
}

/// Parses a `_changes` request from its query string and, for POST, its body; `since` reads a
/// client's sequence in the caller's namespace.
pub fn parse(
    since: &dyn Fn(&str) -> Option<Since>,
    q: &Query,
    body: Option<&Map<String, Value>>,
) -> Result<Opts> {
    let feed = match q.get("feed").unwrap_or("normal") {
        "normal" => Feed::Normal,
        "longpoll" => Feed::Longpoll,
        "continuous" | "live" => Feed::Continuous,
        "eventsource" => Feed::EventSource,
        _ => {
            return Err(Error::bad_request(
                "Supported `feed` types: normal, continuous, live, longpoll, eventsource",
            ))
        }
    };
    let since = match q.get("since") {
        None => Since::Zero,
        Some(raw) => since(raw).ok_or_else(|| {
            Error::bad_request("Malformed sequence supplied in 'since' parameter.")
        })?,
    };
    let not_a_list = || Error::bad_request("`doc_ids` filter parameter is not a list of doc ids.");
    let mut selector = None;
    let doc_ids = match q.get("filter") {
        None => None,
        Some("_doc_ids") => {
            let ids = match body.and_then(|b| b.get("doc_ids")) {
                Some(v) => v.clone(),
                None => q.json("doc_ids")?.ok_or_else(not_a_list)?,
            };
            let Value::Array(ids) = ids else {
                return Err(not_a_list());
            };
            Some(
                ids.into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(not_a_list()),
                    })
                    .collect::<Result<Vec<_>>>()?,
            )
        }
        Some("_selector") => {
            let body = body
                .ok_or_else(|| Error::bad_request("Selector must be specified in POST payload"))?;
            selector = Some(Arc::new(selector_filter(body)?));
            None
        }
        Some(f) if f == "_view" || f == "_design" || f.contains('/') => {
            return Err(Error::NotImplemented(format!(
                "filter `{f}`: couchgate never runs design document functions"
            )))
        }
        Some(f) if f.starts_with('_') => {
            return Err(Error::bad_request("unknown builtin filter name"))
        }
        Some(_) => {
            return Err(Error::bad_request(
                "filter parameter must be of the form `designname/filtername`",
            ))
        }
    };
    let heartbeat = millis(q, "heartbeat")?;
    let timeout = match (heartbeat, millis(q, "timeout")?) {
        (Some(_), _) => None,
        (None, t) => Some(t.unwrap_or(DEFAULT_TIMEOUT)),
    };
    let style = q.get("style").unwrap_or("main_only");
    if style != "main_only" && style != "all_docs" {
        return Err(Error::bad_request("style must be main_only or all_docs"));
    }
    let descending = q.flag("descending")?;
    let limit = q
        .get("limit")
        .map(|v| {
            count(v).ok_or_else(|| {
                Error::bad_request("Invalid limit value: must be a non-negative integer")
            })
        })
        .transpose()?;
    Ok(Opts {
        feed,
        since,
        limit,
        descending,
        all_docs_style: style == "all_docs",
        include_docs: q.flag("include_docs")?,
        conflicts: q.flag("conflicts")?,
        attachments: q.flag("attachments")?,
        att_encoding_info: q.flag("att_encoding_info")?,
        doc_ids,
        selector,
        heartbeat,
        timeout,
    })
}

/// The `selector` and `fields` of a `filter=_selector` body, refused as CouchDB refuses them
/// (`400 bad_request` with Mango's reason).
fn selector_filter(body: &Map<String, Value>) -> Result<SelectorFilter> {
    let selector = match body.get("selector") {
        Some(s @ Value::Object(_)) => {
            Selector::parse(s).map_err(|e| Error::bad_request(e.reason))?
        }
        _ => return Err(Error::bad_request("Selector error: expected a JSON object")),
    };
    let fields = match body.get("fields") {
        None => None,
        Some(Value::Array(f)) => Fields::parse(f).map_err(|e| Error::bad_request(e.reason))?,
        Some(_) => {
            return Err(Error::bad_request(
                "Selector error: fields must be JSON array",
            ))
        }
    };
    Ok(SelectorFilter { selector, fields })
}

/// `expires`: Unix time at which the caller's credential stops being accepted; live feeds end
/// then.
pub async fn handle(
    st: &Arc<State>,
    ns: &Namespace,
    req: Req,
    expires: Option<u64>,
) -> Result<Response<Body>> {
    let query = req.query.clone();
    let body = if req.method == Method::POST {
        match req.json().await? {
            Value::Object(m) => Some(m),
            _ => return Err(Error::bad_request("Request body must be a JSON object")),
        }
    } else {
        None
    };
    if let Some(b) = &body {
        // `seq_interval` and similar are accepted and ignored, and so is a `selector` without
        // `filter=_selector`, as in CouchDB.
        bool_of(
            b.get("include_docs").unwrap_or(&Value::Null),
            "include_docs",
        )?;
    }
    let opts = parse(&|raw| st.changes.since(ns, raw), &query, body.as_ref())?;
    st.changes.serve(ns, opts, expires).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn since(raw: &str) -> Option<Since> {
        crate::changes::positions::SeqCodec::new(b"test").since("u.d.e", raw)
    }

    #[test]
    fn options() {
        let o = parse(
            &since,
            &Query::parse("feed=longpoll&heartbeat=10000&style=all_docs&since=now&limit=5"),
            None,
        )
        .unwrap();
        assert_eq!(o.feed, Feed::Longpoll);
        assert_eq!(o.since, Since::Now);
        assert_eq!(o.heartbeat, Some(Duration::from_secs(10)));
        assert_eq!(o.timeout, None, "a heartbeat keeps the feed open");
        assert!(o.all_docs_style);
        assert_eq!(o.limit, Some(5));
        let o = parse(&since, &Query::parse("feed=continuous&timeout=500"), None).unwrap();
        assert_eq!(o.timeout, Some(Duration::from_millis(500)));
        let o = parse(&since, &Query::parse("since=12-g1AAAAbc"), None).unwrap();
        assert_eq!(
            o.since,
            Since::Zero,
            "a foreign since replays from the start"
        );
        let o = parse(
            &since,
            &Query::parse("feed=live&limit=99999999999999999999&timeout=99999999999999999999"),
            None,
        )
        .unwrap();
        assert_eq!(o.feed, Feed::Continuous);
        assert_eq!(o.limit, Some(u64::MAX), "huge counts saturate");
        assert_eq!(o.timeout, Some(DEFAULT_TIMEOUT), "waits are bounded");
    }

    #[test]
    fn filters() {
        let q = Query::parse("filter=_doc_ids&doc_ids=%5B%22a%22%5D");
        assert_eq!(
            parse(&since, &q, None).unwrap().doc_ids,
            Some(vec!["a".into()])
        );
        let mut body = Map::new();
        body.insert("doc_ids".into(), json!(["b"]));
        let q = Query::parse("filter=_doc_ids");
        assert_eq!(
            parse(&since, &q, Some(&body)).unwrap().doc_ids,
            Some(vec!["b".into()])
        );
        for (q, status) in [
            ("filter=_selector", 400),
            ("filter=app/by_type", 501),
            ("filter=_view&view=a/b", 501),
            ("filter=nonsense", 400),
            ("filter=_doc_ids", 400),
            ("feed=sideways", 400),
            ("heartbeat=soon", 400),
            ("style=odd", 400),
            ("heartbeat=0", 400),
            ("since=bogus", 400),
            ("limit=-1", 400),
        ] {
            assert_eq!(
                parse(&since, &Query::parse(q), None).unwrap_err().status(),
                status,
                "{q}"
            );
        }
    }

    #[test]
    fn selector_filters() {
        let q = Query::parse("filter=_selector");
        let body = |b: Value| b.as_object().unwrap().clone();
        let o = parse(
            &since,
            &q,
            Some(&body(json!({"selector": {"a": 1}, "fields": ["a"]}))),
        )
        .unwrap();
        let f = o.selector.unwrap();
        assert!(f.selector.matches(&json!({"a": 1})));
        assert!(f.fields.is_some());
        for (b, reason) in [
            (json!({}), "Selector error: expected a JSON object"),
            (
                json!({"selector": [1]}),
                "Selector error: expected a JSON object",
            ),
            (
                json!({"selector": {"a": {"$in": 1}}}),
                "Bad argument for operator $in: 1",
            ),
            (
                json!({"selector": {}, "fields": "a"}),
                "Selector error: fields must be JSON array",
            ),
        ] {
            let e = parse(&since, &q, Some(&body(b.clone()))).unwrap_err();
            assert_eq!(
                (e.name(), e.reason()),
                ("bad_request", reason.into()),
                "{b}"
            );
        }
        let e = parse(&since, &q, None).unwrap_err();
        assert_eq!(e.reason(), "Selector must be specified in POST payload");
    }
}
