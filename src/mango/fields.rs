//! Mango's `fields`: which members of a document an answer shows (`mango_fields.erl`).

use super::selector::{erlang_term, parse_field, MangoError};
use serde_json::{Map, Value};

/// A checked `fields` list; `None` from [`Fields::parse`] means the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields(Vec<Vec<String>>);

impl Fields {
    /// `[]` is every field, as in CouchDB; each entry is a field path (`"a.b"`).
    pub fn parse(fields: &[Value]) -> Result<Option<Fields>, MangoError> {
        if fields.is_empty() {
            return Ok(None);
        }
        fields
            .iter()
            .map(|f| match f {
                Value::String(s) => parse_field(s),
                other => Err(MangoError {
                    name: "invalid_field",
                    reason: format!("Invalid JSON for field spec: {}", erlang_term(other)),
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|paths| Some(Fields(paths)))
    }

    /// The document with only the listed fields, nested as they were (`mango_fields:extract`):
    /// a path that is missing, or runs through a value without such a member, is left out.
    pub fn extract(&self, doc: &Value) -> Value {
        let mut out = Value::Object(Map::new());
        for path in &self.0 {
            if let Some(v) = lookup(doc, path) {
                set(&mut out, path, v.clone());
            }
        }
        out
    }
}

fn lookup<'a>(mut v: &'a Value, path: &[String]) -> Option<&'a Value> {
    for name in path {
        v = match v {
            Value::Object(m) => m.get(name)?,
            Value::Array(a) => a.get(
                name.strip_prefix('+')
                    .unwrap_or(name)
                    .parse::<usize>()
                    .ok()?,
            )?,
            _ => return None,
        };
    }
    Some(v)
}

/// `mango_doc:set_field` on the answer being built: objects are created along the path.
fn set(out: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = out;
    for name in parents {
        let Value::Object(m) = at else { return };
        at = m
            .entry(name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(m) = at {
        m.insert(last.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_nested_fields() {
        let doc = json!({"_id": "a", "x": {"y": 1, "z": 2}, "list": [5, 6], "w": 3});
        let f = Fields::parse(&[json!("_id"), json!("x.y"), json!("list.1"), json!("nope")])
            .unwrap()
            .unwrap();
        assert_eq!(
            f.extract(&doc),
            json!({"_id": "a", "x": {"y": 1}, "list": {"1": 6}})
        );
        assert_eq!(Fields::parse(&[]).unwrap(), None);
        assert_eq!(
            Fields::parse(&[json!(1)]).unwrap_err().reason,
            "Invalid JSON for field spec: 1"
        );
    }
}
