//! Mango selectors: checked, normalised and matched exactly as CouchDB 3 does
//! (`mango_selector.erl`), so a selector means the same through couchgate as on CouchDB.
//!
//! [`Selector::parse`] runs CouchDB's three normalisation passes over the JSON selector:
//! 1. **operators** (`norm_ops`): every operator's argument is checked (`bad_arg`,
//!    `invalid_operator`, `not_supported`), a bare value becomes `$eq`, an object of several
//!    members an implicit `$and`;
//! 2. **fields** (`norm_fields`): field names are pushed down through `$and`, `$or`, `$not` and
//!    `$nor` and joined by `.` (`{"a": {"b": {"$gt": 1}}}` is `{"a.b": {"$gt": 1}}`);
//!    `$elemMatch`, `$allMatch` and `$keyMapMatch` start a new path inside;
//! 3. **negations** (`norm_negations`): `$not` and `$nor` are moved down to the conditions by
//!    De Morgan's laws, negating what can be negated (`$gt` becomes `$lte`, `$in` becomes
//!    `$nin`, `$exists` flips) and keeping `$not` around the rest.
//!
//! The result is compiled into a tree that [`Selector::matches`] evaluates against a document.
//! The passes matter for meaning, not only for form: `{"$not": {"a": {"$gt": 5}}}` becomes
//! `{"a": {"$lte": 5}}`, so on CouchDB it does not match a document without `a`.
//!
//! Two deliberate differences, both bounds: a selector nested deeper than [`MAX_DEPTH`] is
//! refused, and `$regex` runs on Rust's `regex` engine (linear time, byte semantics as
//! CouchDB's Latin-1 PCRE), which refuses look-around and back-references as a bad argument.

use super::collate;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Deepest selector accepted (CouchDB has no limit; couchgate bounds its recursion).
pub const MAX_DEPTH: usize = 64;

/// Largest compiled `$regex` program, bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A selector CouchDB would refuse: its Mango error name and reason, as CouchDB words them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MangoError {
    pub name: &'static str,
    pub reason: String,
}

type Result<T> = std::result::Result<T, MangoError>;

fn bad_arg(op: &str, arg: &Value) -> MangoError {
    MangoError {
        name: "bad_arg",
        reason: format!("Bad argument for operator {op}: {}", erlang_term(arg)),
    }
}

/// A checked, normalised selector, ready to match documents.
#[derive(Debug, Clone)]
pub struct Selector {
    root: Node,
    /// The normalised selector, as CouchDB would hold it.
    normalized: Value,
}

#[derive(Debug, Clone)]
enum Node {
    /// `{}`: matches everything.
    Any,
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    /// The value itself (the empty field name of `$elemMatch` arguments).
    Itself(Box<Node>),
    /// A field's value; `raw` for `_id`, which compares in Erlang's term order.
    Field {
        path: Vec<String>,
        raw: bool,
        cond: Box<Node>,
    },
    Cmp(Op, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Type(String),
    Mod(i128, i128),
    Regex(regex::bytes::Regex),
    All(Vec<Value>),
    ElemMatch(Box<Node>),
    AllMatch(Box<Node>),
    KeyMapMatch(Box<Node>),
    Size(u64),
    BeginsWith(String),
    /// `$text` (CouchDB's `$default`): matched by a text index, true here as in CouchDB.
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Lte,
    Eq,
    Ne,
    Gte,
    Gt,
}

impl Selector {
    /// Checks and normalises a selector (a JSON object), as CouchDB's `mango_selector:normalize`.
    pub fn parse(selector: &Value) -> Result<Self> {
        if nesting(selector) > MAX_DEPTH {
            return Err(MangoError {
                name: "invalid_selector",
                reason: format!("Selector is nested deeper than {MAX_DEPTH} levels."),
            });
        }
        let normalized = match selector {
            Value::Object(m) if m.is_empty() => Value::Object(Map::new()),
            _ => {
                let s = norm_ops(selector)?;
                let s = if is_empty_object(&s) {
                    s
                } else {
                    norm_fields(&s, "")?
                };
                let s = norm_negations(&s)?;
                if let Value::Object(m) = &s {
                    if m.contains_key("") {
                        return Err(MangoError {
                            name: "invalid_selector",
                            reason: "One or more conditions is missing a field name.".into(),
                        });
                    }
                }
                s
            }
        };
        let root = compile(&normalized)?;
        Ok(Selector { root, normalized })
    }

    /// The normalised selector.
    pub fn normalized(&self) -> &Value {
        &self.normalized
    }

    /// Whether `doc` (a document as CouchDB renders it: `_id`, `_rev`, `_deleted`, body)
    /// matches.
    pub fn matches(&self, doc: &Value) -> bool {
        eval(&self.root, doc, false)
    }
}

/// How deeply `v` nests arrays and objects (iteratively: any depth is safe to measure).
fn nesting(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

fn is_empty_object(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty())
}

/// The one-member object `{k: v}`.
pub(super) fn single(k: &str, v: Value) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert(k.to_owned(), v);
    Value::Object(m)
}

/// The one member of a one-member object.
pub(super) fn only(v: &Value) -> Option<(&str, &Value)> {
    match v {
        Value::Object(m) if m.len() == 1 => m.iter().next().map(|(k, v)| (k.as_str(), v)),
        _ => None,
    }
}

/// A JSON integer (not `1.0`, which CouchDB reads as a float).
fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_i64().map(i128::from).or(n.as_u64().map(i128::from))
}

fn is_integer(v: &Value) -> bool {
    matches!(v, Value::Number(n) if n.is_i64() || n.is_u64())
}

/// `norm_ops`: checks operators' arguments; bare values become `$eq`, several members `$and`.
fn norm_ops(v: &Value) -> Result<Value> {
    let Value::Object(m) = v else {
        return Ok(single("$eq", v.clone()));
    };
    if m.len() >= 2 {
        let args = m
            .iter()
            .map(|(k, a)| norm_ops(&single(k, a.clone())))
            .collect::<Result<Vec<_>>>()?;
        return Ok(single("$and", Value::Array(args)));
    }
    let Some((op, arg)) = only(v) else {
        return Ok(single("$eq", v.clone()));
    };
    let keep = || Ok(v.clone());
    match op {
        "$and" | "$or" | "$nor" => match arg {
            Value::Array(args) => Ok(single(
                op,
                Value::Array(args.iter().map(norm_ops).collect::<Result<_>>()?),
            )),
            _ => Err(bad_arg(op, arg)),
        },
        "$not" | "$elemMatch" | "$allMatch" | "$keyMapMatch" => match arg {
            Value::Object(_) => Ok(single(op, norm_ops(arg)?)),
            _ => Err(bad_arg(op, arg)),
        },
        "$in" | "$nin" | "$all" => match arg {
            Value::Array(_) => keep(),
            _ => Err(bad_arg(op, arg)),
        },
        "$exists" => match arg {
            Value::Bool(_) => keep(),
            _ => Err(bad_arg(op, arg)),
        },
        "$type" | "$beginsWith" => match arg {
            Value::String(_) => keep(),
            _ => Err(bad_arg(op, arg)),
        },
        "$mod" => match arg {
            Value::Array(a) if a.len() == 2 && a.iter().all(is_integer) => keep(),
            _ => Err(bad_arg(op, arg)),
        },
        "$regex" => match arg {
            Value::String(re) if regex(re).is_some() => keep(),
            _ => Err(bad_arg(op, arg)),
        },
        "$size" => match arg {
            Value::Number(n) if n.is_u64() => keep(),
            _ => Err(bad_arg(op, arg)),
        },
        "$text" => match arg {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                Ok(single("$default", single("$text", arg.clone())))
            }
            _ => Err(bad_arg(op, arg)),
        },
        "$default" | "$lt" | "$lte" | "$eq" | "$ne" | "$gte" | "$gt" => keep(),
        "$where" | "$geoWithin" | "$geoIntersects" | "$near" | "$nearSphere" => Err(MangoError {
            name: "not_supported",
            reason: format!("Unsupported operator: {op}"),
        }),
        _ if op.starts_with('$') => Err(MangoError {
            name: "invalid_operator",
            reason: format!("Invalid operator: {op}"),
        }),
        field => Ok(single(field, norm_ops(arg)?)),
    }
}

fn bad_field(v: &Value) -> MangoError {
    MangoError {
        name: "bad_field",
        reason: format!(
            "Invalid field normalization on selector: {}",
            erlang_term(v)
        ),
    }
}

/// `norm_fields`: pushes field names down to the conditions, joined by `.`.
fn norm_fields(v: &Value, path: &str) -> Result<Value> {
    let Some((op, arg)) = only(v) else {
        return Err(bad_field(v));
    };
    let each = |args: &Value| -> Result<Value> {
        let Value::Array(args) = args else {
            return Err(bad_field(v));
        };
        Ok(Value::Array(
            args.iter()
                .map(|a| norm_fields(a, path))
                .collect::<Result<_>>()?,
        ))
    };
    match op {
        "$and" | "$or" | "$nor" => Ok(single(op, each(arg)?)),
        "$not" => Ok(single(op, norm_fields(arg, path)?)),
        "$elemMatch" | "$allMatch" | "$keyMapMatch" => {
            let inner = if is_empty_object(arg) {
                arg.clone()
            } else {
                norm_fields(arg, "")?
            };
            Ok(single(path, single(op, inner)))
        }
        "$default" => match only(arg) {
            Some(("$text", _)) if path.is_empty() => Ok(v.clone()),
            _ => Err(bad_field(v)),
        },
        _ if op.starts_with('$') => Ok(single(path, v.clone())),
        field if path.is_empty() => norm_fields(arg, field),
        field => norm_fields(arg, &format!("{path}.{field}")),
    }
}

/// `norm_negations`: moves `$not` and `$nor` down to the conditions.
fn norm_negations(v: &Value) -> Result<Value> {
    let Some((op, arg)) = only(v) else {
        return Ok(v.clone());
    };
    match op {
        "$not" => negate(arg),
        "$nor" => Ok(single("$and", map_args(arg, negate)?)),
        "$and" | "$or" => Ok(single(op, map_args(arg, norm_negations)?)),
        "$elemMatch" | "$allMatch" | "$keyMapMatch" => Ok(single(op, norm_negations(arg)?)),
        _ => Ok(v.clone()),
    }
}

fn map_args(args: &Value, f: fn(&Value) -> Result<Value>) -> Result<Value> {
    match args {
        Value::Array(a) => Ok(Value::Array(a.iter().map(f).collect::<Result<_>>()?)),
        other => Ok(other.clone()),
    }
}

/// The negation of a normalised selector.
fn negate(v: &Value) -> Result<Value> {
    let Some((op, arg)) = only(v) else {
        return Ok(single("$not", v.clone()));
    };
    let flip = |to: &str| Ok(single(to, arg.clone()));
    match op {
        "$not" => norm_negations(arg),
        "$nor" => Ok(single("$or", map_args(arg, norm_negations)?)),
        "$and" => Ok(single("$or", map_args(arg, negate)?)),
        "$or" => Ok(single("$and", map_args(arg, negate)?)),
        "$default" => Err(bad_arg("$not", v)),
        "$lt" => flip("$gte"),
        "$lte" => flip("$gt"),
        "$eq" => flip("$ne"),
        "$ne" => flip("$eq"),
        "$gte" => flip("$lt"),
        "$gt" => flip("$lte"),
        "$in" => flip("$nin"),
        "$nin" => flip("$in"),
        "$exists" => Ok(single("$exists", Value::Bool(arg != &Value::Bool(true)))),
        _ if op.starts_with('$') => Ok(single("$not", v.clone())),
        field => Ok(single(field, negate(arg)?)),
    }
}

/// CouchDB's field path syntax: `.` separates names, `\.` is a dot inside a name, and every
/// other backslash is dropped; an empty name is refused.
pub fn parse_field(field: &str) -> Result<Vec<String>> {
    let invalid = || MangoError {
        name: "invalid_field_name",
        reason: format!("Invalid field name: {field}"),
    };
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut prev_backslash = false;
    for c in field.chars() {
        if c == '.' && !prev_backslash {
            parts.push(std::mem::take(&mut part));
        } else {
            part.push(c);
        }
        prev_backslash = c == '\\';
    }
    parts.push(part);
    if parts.iter().any(String::is_empty) {
        return Err(invalid());
    }
    Ok(parts.into_iter().map(|p| p.replace('\\', "")).collect())
}

fn regex(pattern: &str) -> Option<regex::bytes::Regex> {
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .ok()
}

/// Compiles a normalised selector.
fn compile(v: &Value) -> Result<Node> {
    let Some((op, arg)) = only(v) else {
        return if is_empty_object(v) {
            Ok(Node::Any)
        } else {
            Err(bad_field(v))
        };
    };
    let list = |arg: &Value| -> Result<Vec<Node>> {
        match arg {
            Value::Array(a) => a.iter().map(compile).collect(),
            _ => Err(bad_field(v)),
        }
    };
    let sub = |arg: &Value| compile(arg).map(Box::new);
    let values = |arg: &Value| arg.as_array().cloned().unwrap_or_default();
    Ok(match op {
        "$and" => Node::And(list(arg)?),
        "$or" => Node::Or(list(arg)?),
        "$not" => Node::Not(sub(arg)?),
        "$lt" => Node::Cmp(Op::Lt, arg.clone()),
        "$lte" => Node::Cmp(Op::Lte, arg.clone()),
        "$eq" => Node::Cmp(Op::Eq, arg.clone()),
        "$ne" => Node::Cmp(Op::Ne, arg.clone()),
        "$gte" => Node::Cmp(Op::Gte, arg.clone()),
        "$gt" => Node::Cmp(Op::Gt, arg.clone()),
        "$in" => Node::In(values(arg)),
        "$nin" => Node::Nin(values(arg)),
        "$all" => Node::All(values(arg)),
        "$exists" => Node::Exists(arg == &Value::Bool(true)),
        "$type" => Node::Type(arg.as_str().unwrap_or_default().to_owned()),
        "$beginsWith" => Node::BeginsWith(arg.as_str().unwrap_or_default().to_owned()),
        "$mod" => {
            let n = |i: usize| match &arg[i] {
                Value::Number(n) => integer(n).unwrap_or(0),
                _ => 0,
            };
            Node::Mod(n(0), n(1))
        }
        "$regex" => Node::Regex(
            arg.as_str()
                .and_then(regex)
                .ok_or_else(|| bad_arg(op, arg))?,
        ),
        "$size" => Node::Size(arg.as_u64().unwrap_or(0)),
        "$elemMatch" => Node::ElemMatch(Box::new(compile(arg)?)),
        "$allMatch" => Node::AllMatch(Box::new(compile(arg)?)),
        "$keyMapMatch" => Node::KeyMapMatch(Box::new(compile(arg)?)),
        "$default" => Node::Text,
        _ if op.starts_with('$') => {
            return Err(MangoError {
                name: "invalid_operator",
                reason: format!("Invalid operator: {op}"),
            })
        }
        "" => Node::Itself(Box::new(compile(arg)?)),
        field => Node::Field {
            path: parse_field(field)?,
            raw: field == "_id",
            cond: Box::new(compile(arg)?),
        },
    })
}

/// A field's value in a document, as `mango_doc:get_field`.
enum Lookup<'a> {
    Found(&'a Value),
    Missing,
    /// The path runs through a value that has no such member (a scalar, an array with no such
    /// index).
    BadPath,
}

fn get_field<'a>(mut v: &'a Value, path: &[String]) -> Lookup<'a> {
    for name in path {
        v = match v {
            Value::Object(m) => match m.get(name) {
                Some(x) => x,
                None => return Lookup::Missing,
            },
            Value::Array(a) => match array_index(name).and_then(|i| a.get(i)) {
                Some(x) => x,
                None => return Lookup::BadPath,
            },
            _ => return Lookup::BadPath,
        };
    }
    Lookup::Found(v)
}

/// An array index as Erlang's `list_to_integer` reads it (an optional sign, digits).
fn array_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('+').unwrap_or(name);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn order(a: &Value, b: &Value, raw: bool) -> Ordering {
    if raw {
        collate::cmp_raw(a, b)
    } else {
        collate::cmp(a, b)
    }
}

/// `mango_json:type`.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn eval(node: &Node, v: &Value, raw: bool) -> bool {
    let equal = |a: &Value, b: &Value| order(a, b, raw) == Ordering::Equal;
    match node {
        Node::Any | Node::Text => true,
        Node::And(args) => args.iter().all(|n| eval(n, v, raw)),
        Node::Or(args) => args.is_empty() || args.iter().any(|n| eval(n, v, raw)),
        Node::Not(n) => !eval(n, v, raw),
        Node::Itself(n) => eval(n, v, raw),
        Node::Field {
            path,
            raw: id,
            cond,
        } => match get_field(v, path) {
            Lookup::Found(x) => eval(cond, x, raw || *id),
            Lookup::Missing => matches!(**cond, Node::Exists(false)),
            Lookup::BadPath => false,
        },
        Node::Cmp(op, arg) => {
            let o = order(v, arg, raw);
            match op {
                Op::Lt => o.is_lt(),
                Op::Lte => o.is_le(),
                Op::Eq => o.is_eq(),
                Op::Ne => o.is_ne(),
                Op::Gte => o.is_ge(),
                Op::Gt => o.is_gt(),
            }
        }
        Node::In(args) => match v {
            Value::Array(items) => args.iter().any(|a| items.iter().any(|x| equal(x, a))),
            _ => args.iter().any(|a| equal(v, a)),
        },
        Node::Nin(args) => match v {
            Value::Array(items) => !args.iter().any(|a| items.iter().any(|x| equal(x, a))),
            _ => args.iter().all(|a| !equal(v, a)),
        },
        // Reached only when the field exists (a missing one is decided in `Field`).
        Node::Exists(should) => *should,
        Node::Type(t) => type_name(v) == t,
        Node::Mod(d, r) => match v {
            // A zero divisor matches nothing (CouchDB's `rem` fails the match).
            Value::Number(n) if *d != 0 => integer(n).is_some_and(|n| n % d == *r),
            _ => false,
        },
        Node::Regex(re) => matches!(v, Value::String(s) if re.is_match(s.as_bytes())),
        Node::All(args) => match v {
            Value::Array(items) if !args.is_empty() => {
                args.iter().all(|a| items.contains(a))
                    || matches!(args.as_slice(), [Value::Array(one)] if one == items)
            }
            _ => false,
        },
        Node::ElemMatch(n) => {
            matches!(v, Value::Array(items) if items.iter().any(|x| eval(n, x, raw)))
        }
        Node::AllMatch(n) => {
            matches!(v, Value::Array(items) if !items.is_empty() && items.iter().all(|x| eval(n, x, raw)))
        }
        Node::KeyMapMatch(n) => match v {
            Value::Object(m) => m.keys().any(|k| eval(n, &Value::String(k.clone()), raw)),
            _ => false,
        },
        Node::Size(n) => matches!(v, Value::Array(items) if items.len() as u64 == *n),
        Node::BeginsWith(p) => matches!(v, Value::String(s) if s.starts_with(p.as_str())),
    }
}

/// A JSON value as Erlang's `~w` writes CouchDB's term for it (Mango's error reasons).
pub fn erlang_term(v: &Value) -> String {
    let mut out = String::new();
    write_term(&mut out, v);
    out
}

/// Erlang's `~w` writes a binary as its bytes: `<<"ab">>` is `<<97,98>>`.
fn write_binary(out: &mut String, s: &str) {
    out.push_str("<<");
    for (i, b) in s.bytes().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&b.to_string());
    }
    out.push_str(">>");
}

fn write_term(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            // Erlang writes the shortest round-trip form, always with a fraction.
            let s = format!("{f:?}");
            match s.split_once('e') {
                Some((m, e)) if !m.contains('.') => out.push_str(&format!("{m}.0e{e}")),
                _ => out.push_str(&s),
            }
        }
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_binary(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_term(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push_str("{[");
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                write_binary(out, k);
                out.push(',');
                write_term(out, x);
                out.push('}');
            }
            out.push_str("]}");
        }
    }
}

#[cfg(test)]
mod tests;
