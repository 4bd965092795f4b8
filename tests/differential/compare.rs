//! Normalising answers and telling their differences. Normalisation only removes what must
//! differ between a virtual database and a plain one: sequences (opaque on both sides),
//! generated uuids, the database's own name, server timing, file sizes, and revision hashes
//! (labelled by document and generation, because PouchDB Server's hashes cover the `_id`).

use crate::corpus::Step;
use crate::target::{Answer, Target};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// An answer with only what must agree left.
#[derive(Debug, PartialEq)]
pub struct Normal {
    pub status: u16,
    pub headers: BTreeMap<&'static str, String>,
    pub body: Value,
}

#[derive(Debug)]
pub struct Difference {
    pub case: String,
    pub what: String,
}

/// The headers clients read, compared.
const HEADERS: &[&str] = &["content-type", "etag", "location", "cache-control"];

/// Members holding sequences.
const SEQ_KEYS: &[&str] = &["seq", "last_seq", "update_seq", "purge_seq", "_local_seq"];

struct Labels<'a> {
    labels: &'a HashMap<String, String>,
    db: &'a str,
}

impl Labels<'_> {
    fn string(&self, s: &str) -> String {
        if let Some(l) = self.labels.get(s) {
            return l.clone();
        }
        if is_uuid(s) {
            return "<uuid>".into();
        }
        s.replace(self.db, "<db>")
    }

    fn value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.string(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, x) in m {
                    let x = if SEQ_KEYS.contains(&k.as_str()) && !x.is_null() {
                        Value::String("<seq>".into())
                    } else if k == "instance_start_time" {
                        Value::String("<time>".into())
                    } else if k == "sizes" {
                        zero_numbers(x)
                    } else {
                        self.value(x)
                    };
                    out.insert(k.clone(), x);
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

/// A generated id: 32 hex digits (CouchDB, couchgate) or a dashed v4 uuid (PouchDB Server).
pub fn is_uuid(s: &str) -> bool {
    let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    (s.len() == 32 && hex(s))
        || (s.len() == 36
            && s.split('-').map(str::len).eq([8, 4, 4, 4, 12])
            && hex(&s.replace('-', "")))
}

fn zero_numbers(v: &Value) -> Value {
    match v {
        Value::Number(_) => Value::from(0),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), zero_numbers(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The body as a value: JSON, lines of JSON (continuous feeds), event-stream fields, or text.
fn parse_body(bytes: &[u8], content_type: &str) -> Value {
    if bytes.is_empty() {
        return Value::String("<empty>".into());
    }
    if content_type.starts_with("multipart/") {
        return match crate::support::multipart::parse(content_type, bytes) {
            Ok(parts) => Value::Array(parts.iter().map(part_value).collect()),
            Err(e) => Value::String(format!("<malformed multipart: {e}>")),
        };
    }
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return v;
    }
    let text = String::from_utf8_lossy(bytes);
    if content_type.starts_with("text/event-stream") {
        let events: Vec<Value> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (field, value) = l.split_once(':').unwrap_or((l, ""));
                let value = value.trim_start();
                let value = match field {
                    "id" => Value::String("<seq>".into()),
                    _ => serde_json::from_str(value).unwrap_or(Value::String(value.into())),
                };
                serde_json::json!({ field: value })
            })
            .collect();
        return serde_json::json!({ "events": events });
    }
    let lines: Option<Vec<Value>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).ok())
        .collect();
    match lines {
        Some(lines) if !lines.is_empty() => serde_json::json!({ "lines": lines }),
        _ => Value::String(text.into_owned()),
    }
}

/// A part of a multipart answer as compared: its type (boundary aside), and its JSON, its
/// nested parts or the size of its data.
fn part_value(p: &crate::support::multipart::Part) -> Value {
    let ctype = normal_content_type(p.header("content-type").unwrap_or(""));
    let body = if !p.nested.is_empty() {
        Value::Array(p.nested.iter().map(part_value).collect())
    } else {
        p.json()
            .unwrap_or_else(|| Value::String(format!("<{} bytes>", p.body.len())))
    };
    serde_json::json!({ "content-type": ctype, "body": body })
}

/// A content type as compared: lower case, no spaces, no charset, the boundary's value aside.
fn normal_content_type(v: &str) -> String {
    v.to_ascii_lowercase()
        .replace(' ', "")
        .replace(";charset=utf-8", "")
        .split(';')
        .map(|p| {
            if p.starts_with("boundary=") {
                "boundary=<b>"
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

pub fn normalize(a: &Answer, t: &Target, step: &Step) -> Normal {
    let labels = Labels {
        labels: &t.labels,
        db: &t.db,
    };
    let mut headers = BTreeMap::new();
    for &h in HEADERS {
        if let Some(v) = a.headers.get(h).and_then(|v| v.to_str().ok()) {
            let v = match h {
                // The charset parameter is not read by clients; PouchDB Server adds it.
                "content-type" => normal_content_type(v),
                "etag" => {
                    let inner = v.trim_matches('"');
                    match labels.labels.get(inner) {
                        Some(l) => l.clone(),
                        None if step.volatile_etag => "<etag>".into(),
                        None => v.to_owned(),
                    }
                }
                "location" => {
                    let path = match v.find("://") {
                        Some(i) => v[i + 3..].find('/').map_or("", |j| &v[i + 3 + j..]),
                        None => v,
                    };
                    let path = labels.string(path);
                    path.split('/')
                        .map(|seg| if is_uuid(seg) { "<uuid>" } else { seg })
                        .collect::<Vec<_>>()
                        .join("/")
                }
                _ => v.to_owned(),
            };
            headers.insert(h, v);
        }
    }
    let ct = a
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = if step.ignore_body {
        Value::String("<not compared>".into())
    } else {
        labels.value(&parse_body(&a.bytes, &ct))
    };
    if let (Some(keys), Value::Object(m)) = (&step.only_keys, &body) {
        body = Value::Object(
            m.iter()
                .filter(|(k, _)| keys.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
    }
    Normal {
        status: a.status.as_u16(),
        headers,
        body,
    }
}

/// The first place two values differ, as a path and the two sides.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(&format!("{path}.{k}"), v, w) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{path}.{k}: couchgate {v}, direct has none")),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}.{k}: couchgate has none, direct {}", y[k]))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(&format!("{path}[{i}]"), v, w) {
                    return Some(d);
                }
            }
            (x.len() != y.len())
                .then(|| format!("{path}: couchgate {} items, direct {}", x.len(), y.len()))
        }
        _ if a == b => None,
        _ => Some(format!(
            "{path}: couchgate {}, direct {}",
            short(a),
            short(b)
        )),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}...", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// How closely two answers must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Against CouchDB, the reference: everything normalisation leaves.
    Exact,
    /// Against PouchDB Server, whose headers (`text/plain` JSON, weak ETags, no
    /// `Cache-Control`) and `reason` wordings differ from CouchDB's, which couchgate follows:
    /// status, error names and data only.
    Data,
}

/// `reason` members replaced, for [`Strictness::Data`].
fn without_reasons(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if k == "reason" {
                        Value::String("<reason>".into())
                    } else {
                        without_reasons(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_reasons).collect()),
        other => other.clone(),
    }
}

pub fn diff(case: &str, gate: &Normal, direct: &Normal, strictness: Strictness) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |what: String| {
        out.push(Difference {
            case: case.to_owned(),
            what,
        })
    };
    if gate.status != direct.status {
        push(format!(
            "status: couchgate {}, direct {} | couchgate {} | direct {}",
            gate.status,
            direct.status,
            short(&gate.body),
            short(&direct.body)
        ));
        return out;
    }
    if strictness == Strictness::Data {
        let (a, b) = (without_reasons(&gate.body), without_reasons(&direct.body));
        if let Some(d) = first_difference("body", &a, &b) {
            push(d);
        }
        return out;
    }
    for h in HEADERS {
        let (a, b) = (gate.headers.get(h), direct.headers.get(h));
        if a != b {
            push(format!("header {h}: couchgate {a:?}, direct {b:?}"));
        }
    }
    if let Some(d) = first_difference("body", &gate.body, &direct.body) {
        push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_their_path() {
        let a = json!({"rows": [{"id": "a"}, {"id": "b"}]});
        let b = json!({"rows": [{"id": "a"}, {"id": "c"}]});
        assert_eq!(
            first_difference("body", &a, &b).unwrap(),
            r#"body.rows[1].id: couchgate "b", direct "c""#
        );
        assert!(first_difference("body", &a, &a).is_none());
        assert!(first_difference("body", &json!({"x": 1}), &json!({}))
            .unwrap()
            .contains("direct has none"));
    }

    #[test]
    fn bodies_parse_in_every_feed_shape() {
        assert_eq!(parse_body(b"", ""), json!("<empty>"));
        assert_eq!(
            parse_body(b"{\"a\":1}\n\n{\"b\":2}\n", "application/json"),
            json!({"lines": [{"a": 1}, {"b": 2}]})
        );
        assert_eq!(
            parse_body(b"data: {\"a\":1}\nid: 5-x\n\n", "text/event-stream"),
            json!({"events": [{"data": {"a": 1}}, {"id": "<seq>"}]})
        );
        assert_eq!(parse_body(b"plain", "text/plain"), json!("plain"));
    }
}
