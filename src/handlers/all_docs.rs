//! `GET|POST /{db}/_all_docs`: the namespace's documents in id order.
//!
//! Parameters are read as CouchDB 3 reads them (`couch_mrview_http`): a POST body's members
//! first, then the query string over them, each in order, then one validation pass, with
//! CouchDB's error names and reasons. Client ranges are translated into the namespace's backing
//! range, which they can never leave; `keys` are looked up one by one; `total_rows` and
//! `offset` are counted within the namespace, from the backend's own offsets where it keeps
//! them. Long answers are fetched from the backend in pages and streamed.

use super::{Query, Req};
use crate::backend::query_string;
use crate::body::{self, Body, ChunkSender};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::state::State;
use http::{header, HeaderValue, Method, Response};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Rows fetched from the backend per request.
const PAGE: u64 = 1000;

/// Keys looked up per backend request.
const KEYS_CHUNK: usize = 1000;

/// CouchDB's `?MAX_VIEW_LIMIT`, the largest `limit` it accepts.
const MAX_LIMIT: u128 = 0x7FF_FFFF_FFFF_FFFF;

/// Where a client range starts or ends, as CouchDB compares keys with document ids: Erlang
/// term order, in which every non-string key sorts before every id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Id(String),
    BeforeAll,
}

/// A validated `_all_docs` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    /// Keys to look up, in the request's order; `None` for a range read.
    pub keys: Option<Vec<Value>>,
    /// `None`: from the first id in the direction of reading.
    pub start: Option<Bound>,
    /// `None`: to the last id in the direction of reading.
    pub end: Option<Bound>,
    pub inclusive_end: bool,
    pub descending: bool,
    pub limit: Option<u64>,
    pub skip: u64,
    pub include_docs: bool,
    pub conflicts: bool,
    pub update_seq: bool,
    pub attachments: bool,
    pub att_encoding_info: bool,
}

/// One parameter as it arrived: query string text (JSON-valued ones still encoded) or a decoded
/// body member. CouchDB treats the two differently in places (and formats them differently in
/// its reasons).
#[derive(Clone, Copy)]
enum Param<'a> {
    Query(&'a str),
    Body(&'a Value),
}

/// CouchDB's `#mrargs{}` while parameters are folded into it.
#[derive(Debug)]
struct Args {
    keys: Option<Value>,
    start_key: Option<Value>,
    end_key: Option<Value>,
    start_docid: Option<String>,
    end_docid: Option<String>,
    limit: Option<u128>,
    skip: u128,
    descending: bool,
    group: Option<bool>,
    group_level: Option<u128>,
    reduce: Option<bool>,
    inclusive_end: bool,
    include_docs: bool,
    conflicts: bool,
    update_seq: bool,
    attachments: bool,
    att_encoding_info: bool,
    partition: bool,
}

/// Reads a request as CouchDB does: `keys` is checked first (a body's member for a POST, else
/// the first in the query string), then the body's members and the query's parameters are
/// applied in order (the query wins), then the whole is validated.
pub fn parse(query: &Query, body: Option<&Map<String, Value>>) -> Result<Opts> {
    let keys = match body {
        Some(b) => match b.get("keys") {
            None => None,
            Some(k @ Value::Array(_)) => Some(k.clone()),
            Some(_) => return Err(Error::bad_request("`keys` body member must be an array.")),
        },
        None => match query.0.iter().find(|(k, _)| k == "keys") {
            None => None,
            Some((_, v)) => match decode_json(v)? {
                k @ Value::Array(_) => Some(k),
                _ => return Err(Error::bad_request("`keys` parameter must be an array.")),
            },
        },
    };
    let mut args = Args {
        keys,
        start_key: None,
        end_key: None,
        start_docid: None,
        end_docid: None,
        limit: None,
        skip: 0,
        descending: false,
        group: None,
        group_level: None,
        reduce: None,
        inclusive_end: true,
        include_docs: false,
        conflicts: false,
        update_seq: false,
        attachments: false,
        att_encoding_info: false,
        partition: false,
    };
    for (k, v) in body.into_iter().flatten() {
        args.apply(k, Param::Body(v))?;
    }
    for (k, v) in &query.0 {
        args.apply(k, Param::Query(v))?;
    }
    args.validate()
}

impl Args {
    /// `couch_mrview_http:parse_param/4`.
    fn apply(&mut self, name: &str, p: Param) -> Result<()> {
        match name {
            "key" => {
                let k = json_of(p)?;
                self.start_key = Some(k.clone());
                self.end_key = Some(k);
            }
            "keys" => match json_of(p)? {
                Value::Array(mut single) if single.len() == 1 => {
                    let k = single.pop().expect("one element");
                    self.start_key = Some(k.clone());
                    self.end_key = Some(k);
                }
                k => self.keys = Some(k),
            },
            "startkey" | "start_key" => self.start_key = Some(json_of(p)?),
            "endkey" | "end_key" => self.end_key = Some(json_of(p)?),
            "startkey_docid" | "start_key_doc_id" => self.start_docid = Some(to_binary(p)),
            "endkey_docid" | "end_key_doc_id" => self.end_docid = Some(to_binary(p)),
            "limit" => self.limit = Some(pos_int(p)?),
            "skip" => self.skip = pos_int(p)?,
            "descending" => self.descending = boolean(p)?,
            "group" => self.group = Some(boolean(p)?),
            "group_level" => self.group_level = Some(pos_int(p)?),
            "reduce" => self.reduce = Some(boolean(p)?),
            "inclusive_end" => self.inclusive_end = boolean(p)?,
            "include_docs" => self.include_docs = boolean(p)?,
            "conflicts" => self.conflicts = boolean(p)?,
            "update_seq" => self.update_seq = boolean(p)?,
            "attachments" => self.attachments = boolean(p)?,
            "att_encoding_info" => self.att_encoding_info = boolean(p)?,
            "sorted" => {
                boolean(p)?;
            }
            "stale" if matches!(text_of(p), Some("ok" | "update_after")) => {}
            "stable" if is_bool(p) || matches!(text_of(p), Some("true" | "false")) => {}
            "update" if is_bool(p) || matches!(text_of(p), Some("true" | "false" | "lazy")) => {}
            "stale" | "stable" | "update" => {
                return Err(query_parse_error(format!("Invalid value for `{name}`.")))
            }
            "partition" => {
                let partition = to_binary(p);
                if partition.is_empty() {
                    return Err(illegal_partition("Partition must not be empty"));
                }
                if partition.starts_with('_') {
                    return Err(illegal_partition(
                        "Partition must not start with an underscore",
                    ));
                }
                self.partition = true;
            }
            // `callback` and unknown parameters are kept by CouchDB and never used.
            _ => {}
        }
        Ok(())
    }

    /// `couch_mrview_util:validate_all_docs_args/2`, the checks that can fail on `_all_docs`.
    fn validate(self) -> Result<Opts> {
        let grouped = match (self.group, self.group_level) {
            (Some(false), Some(level)) if level > 0 => {
                return Err(query_parse_error(
                    "Can't specify group=false and group_level>0 at the same time",
                ))
            }
            (Some(true), None) => true,
            (_, level) => level.unwrap_or(0) > 0,
        };
        if self.reduce == Some(true) {
            return Err(query_parse_error("Reduce is invalid for map-only views."));
        }
        let keys = match self.keys {
            None => None,
            Some(Value::Array(keys)) => Some(keys),
            Some(_) => return Err(query_parse_error("`keys` must be an array of strings.")),
        };
        let compatible = match keys.as_deref() {
            None | Some([]) => true,
            Some([k]) if self.start_key.as_ref() == Some(k) && self.end_key.as_ref() == Some(k) => {
                true
            }
            Some(_) => self.start_key.is_none() && self.end_key.is_none(),
        };
        if !compatible {
            return Err(query_parse_error(
                "`keys` is incompatible with `key`, `start_key` and `end_key`",
            ));
        }
        if grouped {
            return Err(query_parse_error("Invalid use of grouping on a map view."));
        }
        if self.partition {
            return Err(query_parse_error(
                "`partition` parameter is not supported on this db",
            ));
        }
        if self.limit.is_some_and(|l| l > MAX_LIMIT) {
            return Err(query_parse_error(format!(
                "Limit is too large, must not exceed {MAX_LIMIT}"
            )));
        }
        // A key given as such wins over the `*_docid` of the same end.
        let bound = |key: Option<Value>, docid: Option<String>| match (key, docid) {
            (Some(Value::String(id)), _) | (None, Some(id)) => Some(Bound::Id(id)),
            (Some(_), _) => Some(Bound::BeforeAll),
            (None, None) => None,
        };
        Ok(Opts {
            keys,
            start: bound(self.start_key, self.start_docid),
            end: bound(self.end_key, self.end_docid),
            inclusive_end: self.inclusive_end,
            descending: self.descending,
            limit: self
                .limit
                .map(|l| u64::try_from(l).expect("at most MAX_LIMIT")),
            skip: u64::try_from(self.skip).unwrap_or(u64::MAX),
            include_docs: self.include_docs,
            conflicts: self.conflicts,
            update_seq: self.update_seq,
            attachments: self.attachments,
            att_encoding_info: self.att_encoding_info,
        })
    }
}

fn query_parse_error(reason: impl Into<String>) -> Error {
    Error::QueryParse(reason.into())
}

fn illegal_partition(reason: &str) -> Error {
    Error::IllegalPartition(reason.into())
}

/// CouchDB has no clause for some inputs and crashes (500); couchgate refuses them.
fn unreadable(what: &str) -> Error {
    Error::bad_request(format!("{what} cannot be read"))
}

fn decode_json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|_| Error::bad_request("invalid UTF-8 JSON"))
}

/// A JSON-valued parameter: decoded from the query string, taken as it is from a body.
fn json_of(p: Param) -> Result<Value> {
    match p {
        Param::Query(s) => decode_json(s),
        Param::Body(v) => Ok(v.clone()),
    }
}

/// The parameter's text, for a query parameter or a string body member.
fn text_of<'a>(p: Param<'a>) -> Option<&'a str> {
    match p {
        Param::Query(s) => Some(s),
        Param::Body(Value::String(s)) => Some(s),
        Param::Body(_) => None,
    }
}

fn is_bool(p: Param) -> bool {
    matches!(p, Param::Body(Value::Bool(_)))
}

/// `couch_util:to_binary/1`: text as it is, anything else as Erlang prints it.
fn to_binary(p: Param) -> String {
    let v = match p {
        Param::Query(s) => return s.to_owned(),
        Param::Body(v) => v,
    };
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => match iolist(items) {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => erl_term(v),
        },
        Value::Number(_) | Value::Object(_) => erl_term(v),
    }
}

/// An integer as CouchDB reads one: query text by `list_to_integer` (sign, digits, any size),
/// a body member only when it is a JSON integer.
fn int(p: Param) -> Result<i128> {
    let parsed = match p {
        Param::Query(s) => parse_integer(s),
        Param::Body(Value::Number(n)) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Some(i128::from(u)),
            (_, Some(i), _) => Some(i128::from(i)),
            // serde_json turns an integer beyond 64 bits into a float; CouchDB keeps it exact.
            // (A float literal that large, rarer still, is read the same way.)
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() >= 9.2e18 => {
                Some(if f > 0.0 { i128::MAX } else { i128::MIN })
            }
            _ => None,
        },
        Param::Body(_) => None,
    };
    parsed.ok_or_else(|| query_parse_error(format!("Invalid value for integer: {}", erl_param(p))))
}

fn pos_int(p: Param) -> Result<u128> {
    let n = int(p)?;
    u128::try_from(n).map_err(|_| {
        query_parse_error(format!(
            "Invalid value for positive integer: {}",
            erl_param(p)
        ))
    })
}

/// Erlang's `list_to_integer/1`, saturating where Erlang would grow a bignum.
fn parse_integer(s: &str) -> Option<i128> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.parse::<i128>().unwrap_or(i128::MAX);
    Some(if negative { -magnitude } else { magnitude })
}

/// `couch_mrview_http:parse_boolean/1`.
fn boolean(p: Param) -> Result<bool> {
    let bad = |shown: String| query_parse_error(format!("Invalid boolean parameter: {shown}"));
    let text = |s: &str| match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(erl_chars(s.as_bytes()))),
    };
    let v = match p {
        Param::Query(s) => return text(s),
        Param::Body(v) => v,
    };
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => text(s),
        Value::Number(n) if n.is_u64() || n.is_i64() => Err(bad(erl_term(v))),
        Value::Array(_) => Err(bad(erl_term(v))),
        // CouchDB has no clause for these and crashes.
        Value::Number(_) | Value::Null | Value::Object(_) => Err(unreadable("a boolean parameter")),
    }
}

/// A parameter as CouchDB's `~p` shows it in a reason.
fn erl_param(p: Param) -> String {
    match p {
        Param::Query(s) => erl_chars(s.as_bytes()),
        Param::Body(v) => erl_term(v),
    }
}

/// `io_lib:format("~p", [Chars])` of a byte list: a quoted string when every byte is printable
/// Latin-1, else the list of integers.
fn erl_chars(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "[]".into();
    }
    match erl_quoted(bytes) {
        Some(s) => format!("\"{s}\""),
        None => {
            let items: Vec<String> = bytes.iter().map(u8::to_string).collect();
            format!("[{}]", items.join(","))
        }
    }
}

/// `~p` of a binary.
fn erl_binary(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "<<>>".into();
    }
    match erl_quoted(bytes) {
        Some(s) => format!("<<\"{s}\">>"),
        None => {
            let items: Vec<String> = bytes.iter().map(u8::to_string).collect();
            format!("<<{}>>", items.join(","))
        }
    }
}

/// The inside of a printed Erlang string, or `None` when a byte is not printable Latin-1.
/// Bytes from 160 are printed as they are, so UTF-8 text reads back as itself.
fn erl_quoted(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        let escape = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x0b => b'v',
            0x08 => b'b',
            0x0c => b'f',
            0x1b => b'e',
            0x20..=0x7e | 0xa0..=0xff => {
                out.push(b);
                continue;
            }
            _ => return None,
        };
        out.extend([b'\\', escape]);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `~p` of a JSON value as CouchDB's JSON decoder represents it.
fn erl_term(v: &Value) -> String {
    erl_term_at(v, 0)
}

/// Nesting deeper than this is printed as `...` (CouchDB prints it all; no reason needs it).
const MAX_PRINTED_DEPTH: usize = 64;

fn erl_term_at(v: &Value, depth: usize) -> String {
    if depth > MAX_PRINTED_DEPTH {
        return "...".into();
    }
    let inner = |v: &Value| erl_term_at(v, depth + 1);
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !(n.is_u64() || n.is_i64()) => erl_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => erl_binary(s.as_bytes()),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inner).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(m) => {
            let members: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{{{},{}}}", erl_binary(k.as_bytes()), inner(v)))
                .collect();
            format!("{{[{}]}}", members.join(","))
        }
    }
}

/// Erlang's shortest float text: the shorter of the plain and the scientific form (`1.0e3`,
/// `0.001`, `123456.0`), the plain one on a tie.
fn erl_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let scientific = format!(
        "{sign}{}.{}e{exp}",
        &digits[..1],
        if digits.len() > 1 { &digits[1..] } else { "0" }
    );
    let plain = if exp < 0 {
        let zeros = "0".repeat(usize::try_from(-exp - 1).unwrap_or(0));
        format!("{sign}0.{zeros}{digits}")
    } else {
        let int_len = usize::try_from(exp).unwrap_or(0) + 1;
        if digits.len() > int_len {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        } else {
            format!("{sign}{digits}{}.0", "0".repeat(int_len - digits.len()))
        }
    };
    if scientific.len() < plain.len() {
        scientific
    } else {
        plain
    }
}

/// The bytes of an Erlang iolist (nested arrays of bytes and strings), which is what CouchDB
/// looks up for an array in `keys`; `None` when the array is not one.
fn iolist(items: &[Value]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![items.iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            None => {
                stack.pop();
            }
            Some(Value::String(s)) => out.extend_from_slice(s.as_bytes()),
            Some(Value::Array(inner)) => stack.push(inner.iter()),
            Some(Value::Number(n)) => out.push(u8::try_from(n.as_u64()?).ok()?),
            Some(_) => return None,
        }
    }
    Some(out)
}

/// The backend's range for a client range: `(startkey, endkey, inclusive_end)` in the
/// direction of reading, always inside the namespace's `["{p}:", "{p};"]` (whose top can
/// name no document); `None` when no id can match.
pub fn backing_range(ns: &Namespace, o: &Opts) -> Option<(String, String, bool)> {
    let id = |s: &str| format!("{}{s}", ns.start_key());
    let (low, high) = (ns.start_key(), ns.end_key());
    if o.descending {
        let start = match &o.start {
            None => high,
            Some(Bound::BeforeAll) => return None,
            Some(Bound::Id(s)) => id(s),
        };
        let (end, inclusive) = match &o.end {
            None | Some(Bound::BeforeAll) => (low, true),
            Some(Bound::Id(s)) => (id(s), o.inclusive_end),
        };
        Some((start, end, inclusive))
    } else {
        let start = match &o.start {
            None | Some(Bound::BeforeAll) => low,
            Some(Bound::Id(s)) => id(s),
        };
        let (end, inclusive) = match &o.end {
            None => (high, false),
            Some(Bound::BeforeAll) => return None,
            Some(Bound::Id(s)) => (id(s), o.inclusive_end),
        };
        Some((start, end, inclusive))
    }
}

/// The namespace's documents CouchDB's `offset` counts: those before the start in the
/// direction of reading. `Below(at)`: the ids sorting before the backing id `at`;
/// `AllButBelow(at)`: all the others.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Before {
    Nothing,
    Everything,
    Below(String),
    AllButBelow(String),
}

fn offset_base(ns: &Namespace, o: &Opts) -> Before {
    match (&o.start, o.descending) {
        (None, _) | (Some(Bound::BeforeAll), false) => Before::Nothing,
        (Some(Bound::BeforeAll), true) => Before::Everything,
        (Some(Bound::Id(s)), false) => Before::Below(format!("{}{s}", ns.start_key())),
        // Ids after `s` are all ids but those up to `s`, which sort before `s\0`.
        (Some(Bound::Id(s)), true) => Before::AllButBelow(format!("{}{s}\u{0}", ns.start_key())),
    }
}

fn doc_params(o: &Opts) -> Vec<(&'static str, String)> {
    crate::backend::doc_flags(
        o.include_docs,
        o.conflicts,
        o.attachments,
        o.att_encoding_info,
    )
}

pub async fn handle(st: &Arc<State>, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    let query = req.query.clone();
    let body = if req.method == Method::POST {
        match req.json().await? {
            Value::Object(m) => Some(m),
            _ => return Err(Error::bad_request("Request body must be a JSON object")),
        }
    } else {
        None
    };
    let mut opts = parse(&query, body.as_ref())?;
    match opts.keys.take() {
        Some(keys) => by_keys(st, ns, &opts, keys).await,
        None => by_range(st, ns, opts).await,
    }
}

/// The backend's `offset` for reading from `key` upwards: how many backing ids sort before
/// it, on a backend that counts (CouchDB); PouchDB Server answers 0.
async fn position(st: &State, key: &str) -> Result<u64> {
    let q = query_string([("startkey", json!(key).to_string()), ("limit", "0".into())]);
    let url = st.backend.db_url(&format!("/_all_docs{q}"));
    let (_, answer) = st.backend.json(Method::GET, &url, None).await?;
    Ok(answer["offset"].as_u64().unwrap_or(0))
}

/// The namespace's document count and, when asked, how many of its ids sort before `below`
/// (a backing id inside the namespace). From the changes index when it is synced (no backend
/// read); else a few reads of the backend's offsets where it counts; otherwise (PouchDB Server,
/// or a database where nothing sorts before the namespace's end, so the walk is one empty
/// read) by a bounded count ([`super::db::count_range`]).
async fn counts(st: &State, ns: &Namespace, below: Option<&str>) -> Result<(u64, u64)> {
    if let Some((live, _)) = st.changes.counts(ns).await? {
        let at = match below.and_then(|b| ns.decode_id(b)) {
            Some(key) => st.changes.live_below(ns, &key).await?.unwrap_or(0),
            None => 0,
        };
        return Ok((live, at));
    }
    let at = async {
        match below {
            Some(b) => position(st, b).await,
            None => Ok(0),
        }
    };
    let (start, end) = (ns.start_key(), ns.end_key());
    let (low, high, at) = tokio::try_join!(position(st, &start), position(st, &end), at)?;
    if high > 0 {
        return Ok((high.saturating_sub(low), at.saturating_sub(low)));
    }
    let walk = async {
        match below {
            Some(b) => super::db::count_range(st, &start, b).await,
            None => Ok(0),
        }
    };
    tokio::try_join!(super::db::count_range(st, &start, &end), walk)
}

fn head(total_rows: u64, offset: Option<u64>, update_seq: Option<&Value>) -> String {
    let mut h = format!("{{\"total_rows\":{total_rows},\"offset\":");
    match offset {
        Some(o) => h.push_str(&o.to_string()),
        None => h.push_str("null"),
    }
    if let Some(s) = update_seq {
        h.push_str(&format!(",\"update_seq\":{s}"));
    }
    h.push_str(",\"rows\":[\r\n");
    h
}

fn streaming_response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// What a key of `keys` names in the backend.
#[derive(Debug, PartialEq)]
enum Lookup {
    Backing(String),
    /// Nothing of the namespace (an id CouchDB refuses, a number, an object...): `not_found`.
    Missing,
}

/// The backing id CouchDB would look up for a client key: a string is an id (`_local/` ids
/// included: CouchDB finds local documents this way), an array is read as an Erlang iolist,
/// anything else names nothing. An array that is no iolist makes CouchDB fail (`badarg`);
/// couchgate refuses it with 400.
fn lookup(ns: &Namespace, key: &Value) -> Result<Lookup> {
    let id = match key {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let bytes = iolist(items).ok_or_else(|| unreadable("an array key"))?;
            match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(_) => return Ok(Lookup::Missing),
            }
        }
        _ => return Ok(Lookup::Missing),
    };
    Ok(match ns.encode_id(&id) {
        Ok(backing) => Lookup::Backing(backing),
        Err(_) => Lookup::Missing,
    })
}

/// `keys` in answer order after `descending`, `skip` and `limit`, as CouchDB applies them.
fn answer_keys(o: &Opts, mut keys: Vec<Value>) -> Vec<Value> {
    if o.descending {
        keys.reverse();
    }
    let skip = usize::try_from(o.skip).unwrap_or(usize::MAX);
    let limit = o
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    keys.into_iter().skip(skip).take(limit).collect()
}

async fn by_keys(st: &State, ns: &Namespace, o: &Opts, keys: Vec<Value>) -> Result<Response<Body>> {
    let keys = answer_keys(o, keys);
    let lookups = keys
        .iter()
        .map(|k| lookup(ns, k))
        .collect::<Result<Vec<_>>>()?;
    let forward: Vec<&str> = lookups
        .iter()
        .filter_map(|l| match l {
            Lookup::Backing(b) => Some(b.as_str()),
            Lookup::Missing => None,
        })
        .collect();
    let fetch = async {
        let url = st
            .backend
            .db_url(&format!("/_all_docs{}", query_string(doc_params(o))));
        let mut rows = Vec::with_capacity(forward.len());
        for chunk in forward.chunks(KEYS_CHUNK) {
            let (_, mut answer) = st
                .backend
                .json(Method::POST, &url, Some(&json!({ "keys": chunk })))
                .await?;
            if let Some(Value::Array(found)) = answer.get_mut("rows").map(Value::take) {
                rows.extend(found);
            }
        }
        Ok(rows)
    };
    let ((total, _), backend_rows) = tokio::try_join!(counts(st, ns, None), fetch)?;
    let mut backend_rows = backend_rows.into_iter();
    let mut texts = Vec::with_capacity(keys.len());
    for (key, found) in keys.into_iter().zip(&lookups) {
        let row = match found {
            Lookup::Missing => json!({"key": key, "error": "not_found"}),
            Lookup::Backing(backing) => {
                let row = backend_rows
                    .next()
                    .ok_or_else(|| Error::BadGateway("_all_docs answered too few rows".into()))?;
                if row["key"] != *backing {
                    return Err(Error::BadGateway(
                        "_all_docs answered rows for other keys".into(),
                    ));
                }
                key_row(st, ns, row, key)?
            }
        };
        texts.push(row.to_string());
    }
    let update_seq = o.update_seq.then_some(&Value::Null);
    let mut out = head(total, None, update_seq);
    out.push_str(&texts.join(",\r\n"));
    out.push_str("\r\n]}\n");
    Ok(streaming_response(body::full(out)))
}

/// A backend row for one of `keys`, named by the client's key as CouchDB names it.
fn key_row(st: &State, ns: &Namespace, mut row: Value, key: Value) -> Result<Value> {
    if row.get("error").is_some() {
        row["key"] = key;
        return Ok(row);
    }
    row["id"] = key.clone();
    row["key"] = key;
    if let Some(doc) = row.get_mut("doc").filter(|d| d.is_object()) {
        super::doc::strip_doc(st, ns, doc)?;
    }
    Ok(row)
}

/// A backend row of a range read, in the client's ids; `None` for a row outside the namespace,
/// which the range rules out.
fn range_row(st: &State, ns: &Namespace, mut row: Value) -> Result<Option<Value>> {
    let Some(id) = row["id"]
        .as_str()
        .and_then(|b| ns.decode_id(b))
        .filter(|id| !id.starts_with("_local/"))
    else {
        tracing::warn!("_all_docs range answered a row outside the namespace; dropped");
        return Ok(None);
    };
    row["id"] = Value::String(id.clone());
    row["key"] = Value::String(id);
    if let Some(doc) = row.get_mut("doc").filter(|d| d.is_object()) {
        super::doc::strip_doc(st, ns, doc)?;
    }
    Ok(Some(row))
}

async fn by_range(st: &Arc<State>, ns: &Namespace, o: Opts) -> Result<Response<Body>> {
    let first_limit = o.limit.map_or(PAGE, |l| l.min(PAGE));
    let fetch = backing_range(ns, &o).map(|(start, end, inclusive_end)| Pager {
        start,
        end,
        inclusive_end,
        descending: o.descending,
        params: doc_params(&o),
    });
    let base = offset_base(ns, &o);
    let below = match &base {
        Before::Below(at) | Before::AllButBelow(at) => Some(at.as_str()),
        Before::Nothing | Before::Everything => None,
    };
    let update_seq = async {
        if !o.update_seq {
            return Ok(None);
        }
        Ok(Some(Value::String(st.changes.update_seq(ns).await?)))
    };
    let first = async {
        match &fetch {
            Some(p) => p.page(st, None, o.skip, first_limit).await,
            None => Ok(Vec::new()),
        }
    };
    let ((total, counted), first, update_seq) =
        tokio::try_join!(counts(st, ns, below), first, update_seq)?;
    let before = match base {
        Before::Nothing => 0,
        Before::Everything => total,
        Before::Below(_) => counted,
        Before::AllButBelow(_) => total.saturating_sub(counted),
    };
    let offset = total.min(before.saturating_add(o.skip));
    let head = head(total, Some(offset), update_seq.as_ref());
    let (tx, body) = body::channel(4);
    let state = Arc::clone(st);
    let ns = ns.clone();
    tokio::spawn(async move {
        if let Err(e) =
            stream_pages(&state, &ns, fetch, o.limit, first, first_limit, head, tx).await
        {
            tracing::warn!(error = %e, "_all_docs stream ended early");
        }
    });
    Ok(streaming_response(body))
}

struct Pager {
    start: String,
    end: String,
    inclusive_end: bool,
    descending: bool,
    params: Vec<(&'static str, String)>,
}

impl Pager {
    /// One page: from `start` (or after `after`, the last key of the previous page).
    async fn page(
        &self,
        st: &State,
        after: Option<&str>,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<Value>> {
        let mut q = vec![
            ("startkey", json!(after.unwrap_or(&self.start)).to_string()),
            ("endkey", json!(self.end).to_string()),
            ("inclusive_end", self.inclusive_end.to_string()),
            ("limit", limit.to_string()),
        ];
        let skip = if after.is_some() { 1 } else { skip };
        if skip > 0 {
            q.push(("skip", skip.to_string()));
        }
        if self.descending {
            q.push(("descending", "true".into()));
        }
        q.extend(self.params.iter().cloned());
        let url = st.backend.db_url(&format!("/_all_docs{}", query_string(q)));
        let (_, answer) = st.backend.json(Method::GET, &url, None).await?;
        Ok(answer["rows"].as_array().cloned().unwrap_or_default())
    }
}

#[allow(clippy::too_many_arguments)]
async fn stream_pages(
    st: &State,
    ns: &Namespace,
    pager: Option<Pager>,
    limit: Option<u64>,
    mut rows: Vec<Value>,
    mut asked: u64,
    head: String,
    tx: ChunkSender,
) -> Result<()> {
    let mut remaining = limit.unwrap_or(u64::MAX);
    let mut first = true;
    if !tx.send(head).await {
        return Ok(());
    }
    loop {
        let full_page = rows.len() as u64 == asked;
        remaining = remaining.saturating_sub(rows.len() as u64);
        let last_key = rows
            .last()
            .and_then(|r| r["key"].as_str())
            .map(String::from);
        let mut chunk = String::new();
        for row in rows {
            let Some(row) = range_row(st, ns, row)? else {
                continue;
            };
            if !first {
                chunk.push_str(",\r\n");
            }
            first = false;
            chunk.push_str(&row.to_string());
        }
        if !chunk.is_empty() && !tx.send(chunk).await {
            return Ok(());
        }
        match (&pager, last_key) {
            (Some(p), Some(k)) if full_page && remaining > 0 => {
                asked = remaining.min(PAGE);
                rows = p.page(st, Some(&k), 0, asked).await?;
            }
            _ => break,
        }
    }
    tx.send("\r\n]}\n").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(q: &str) -> Opts {
        parse(&Query::parse(q), None).unwrap()
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// The CouchDB error of a request: (error, reason).
    fn error(q: &str, b: Option<Value>) -> (String, String) {
        let body = b.map(body);
        let e = parse(&Query::parse(q), body.as_ref()).unwrap_err();
        (e.name().to_owned(), e.reason())
    }

    #[test]
    fn ranges_stay_inside_the_namespace() {
        let ns = Namespace::new("u", "d", "e");
        let r = |q: &str| backing_range(&ns, &opts(q));
        let s = |a: &str, b: &str, i| Some((a.to_owned(), b.to_owned(), i));
        assert_eq!(r(""), s("u.d.e:", "u.d.e;", false));
        assert_eq!(
            r("startkey=%22b%22&endkey=%22y%22&inclusive_end=false"),
            s("u.d.e:b", "u.d.e:y", false)
        );
        assert_eq!(
            r("descending=true&start_key=%22y%22"),
            s("u.d.e:y", "u.d.e:", true)
        );
        assert_eq!(r("descending=true"), s("u.d.e;", "u.d.e:", true));
        assert_eq!(r("key=%22k%22"), s("u.d.e:k", "u.d.e:k", true));
        assert_eq!(r("startkey_docid=k"), s("u.d.e:k", "u.d.e;", false));
        // Non-string keys sort before every id.
        assert_eq!(r("startkey=1"), s("u.d.e:", "u.d.e;", false));
        assert_eq!(r("endkey=%5B%5D"), None);
        assert_eq!(r("key=1"), None);
        assert_eq!(r("startkey=null&descending=true"), None);
        assert_eq!(
            r("endkey=%7B%7D&descending=true"),
            s("u.d.e;", "u.d.e:", true)
        );
    }

    proptest! {
        #[test]
        fn no_client_range_reaches_outside(
            start in proptest::option::of(any::<String>()),
            end in proptest::option::of(any::<String>()),
            descending in any::<bool>(),
            inclusive_end in any::<bool>(),
        ) {
            let ns = Namespace::new("u", "d", "e");
            let o = Opts {
                start: start.map(Bound::Id),
                end: end.map(Bound::Id),
                descending,
                inclusive_end,
                ..opts("")
            };
            let (a, b, _) = backing_range(&ns, &o).unwrap();
            for k in [a, b] {
                prop_assert!(k >= ns.start_key() && k <= ns.end_key(), "{k}");
                prop_assert!(k == ns.end_key() || ns.decode_id(&k).is_some(), "{k}");
            }
            if let Before::Below(k) | Before::AllButBelow(k) = offset_base(&ns, &o) {
                prop_assert!(k >= ns.start_key() && k < ns.end_key(), "{k}");
            }
        }
    }

    #[test]
    fn offsets_count_from_the_start_in_the_reading_direction() {
        let ns = Namespace::new("u", "d", "e");
        let b = |q: &str| offset_base(&ns, &opts(q));
        assert_eq!(b(""), Before::Nothing);
        assert_eq!(b("descending=true"), Before::Nothing);
        assert_eq!(b("startkey=%22b%22"), Before::Below("u.d.e:b".into()));
        assert_eq!(
            b("startkey=%22b%22&descending=true"),
            Before::AllButBelow("u.d.e:b\u{0}".into())
        );
        assert_eq!(b("startkey=1"), Before::Nothing);
        assert_eq!(b("startkey=1&descending=true"), Before::Everything);
    }

    #[test]
    fn the_query_string_wins_over_the_body() {
        let b = body(json!({"keys": ["a", "b"], "limit": 1, "include_docs": true}));
        let o = parse(&Query::parse("limit=5"), Some(&b)).unwrap();
        assert_eq!(o.keys, Some(vec![json!("a"), json!("b")]));
        assert_eq!(o.limit, Some(5));
        assert!(o.include_docs);
        // A query `keys` replaces the body's.
        let o = parse(&Query::parse("keys=%5B%22c%22,%22d%22%5D"), Some(&b)).unwrap();
        assert_eq!(o.keys, Some(vec![json!("c"), json!("d")]));
        // A single query key on a POST is a `key`.
        let o = parse(&Query::parse("keys=%5B%22c%22%5D"), Some(&Map::new())).unwrap();
        assert_eq!(
            (o.keys, o.start.clone()),
            (None, Some(Bound::Id("c".into())))
        );
        assert_eq!(o.end, o.start);
    }

    #[test]
    fn keys_exclude_ranges() {
        let incompatible = (
            "query_parse_error".to_owned(),
            "`keys` is incompatible with `key`, `start_key` and `end_key`".to_owned(),
        );
        for q in [
            "keys=%5B%22b%22%5D&key=%22a%22",
            "keys=%5B%22b%22%5D&startkey=%22a%22",
            "keys=%5B%22b%22%5D&start_key=%22a%22",
            "keys=%5B%22b%22%5D&endkey=%22z%22",
            "keys=%5B%22b%22,%22c%22%5D&end_key=%22c%22",
            "keys=%5B%22b%22%5D&key=null",
        ] {
            assert_eq!(error(q, None), incompatible, "{q}");
        }
        assert_eq!(
            error("", Some(json!({"keys": ["b"], "key": "a"}))),
            incompatible
        );
        assert_eq!(
            error("key=%22a%22", Some(json!({"keys": ["b"]}))),
            incompatible
        );
        assert_eq!(
            error("keys=%5B%22a%22%5D", Some(json!({"keys": ["c"]}))),
            incompatible
        );
        // What CouchDB lets through: a single key equal to `key`, or no keys at all.
        for q in ["keys=%5B%22b%22%5D&key=%22b%22", "keys=%5B%5D&key=%22a%22"] {
            assert!(parse(&Query::parse(q), None).is_ok(), "{q}");
        }
        let b = body(json!({"startkey": "c", "keys": ["b"]}));
        assert!(parse(&Query::default(), Some(&b)).is_ok());
    }

    #[test]
    fn errors_read_like_couchdb() {
        let qpe = |r: &str| ("query_parse_error".to_owned(), r.to_owned());
        let bad = |r: &str| ("bad_request".to_owned(), r.to_owned());
        let cases: &[(&str, Option<Value>, (String, String))] = &[
            (
                "keys=%22b%22",
                None,
                bad("`keys` parameter must be an array."),
            ),
            ("keys=null", None, bad("`keys` parameter must be an array.")),
            ("keys=xyz", None, bad("invalid UTF-8 JSON")),
            (
                "",
                Some(json!({"keys": "b"})),
                bad("`keys` body member must be an array."),
            ),
            (
                "",
                Some(json!({"keys": null})),
                bad("`keys` body member must be an array."),
            ),
            (
                "keys=1",
                Some(json!({})),
                qpe("`keys` must be an array of strings."),
            ),
            ("startkey=b", None, bad("invalid UTF-8 JSON")),
            (
                "limit=-1",
                None,
                qpe("Invalid value for positive integer: \"-1\""),
            ),
            (
                "skip=-1",
                None,
                qpe("Invalid value for positive integer: \"-1\""),
            ),
            ("limit=ten", None, qpe("Invalid value for integer: \"ten\"")),
            ("limit=", None, qpe("Invalid value for integer: []")),
            ("limit=+3", None, qpe("Invalid value for integer: \" 3\"")),
            (
                "limit=%E2%84%A6",
                None,
                qpe("Invalid value for integer: [226,132,166]"),
            ),
            ("limit=%0A", None, qpe("Invalid value for integer: \"\\n\"")),
            (
                "limit=a%22b",
                None,
                qpe("Invalid value for integer: \"a\\\"b\""),
            ),
            (
                "limit=%C3%A9",
                None,
                qpe("Invalid value for integer: \"é\""),
            ),
            (
                "limit=99999999999999999999999",
                None,
                qpe("Limit is too large, must not exceed 576460752303423487"),
            ),
            (
                "descending=yes",
                None,
                qpe("Invalid boolean parameter: \"yes\""),
            ),
            (
                "include_docs=1",
                None,
                qpe("Invalid boolean parameter: \"1\""),
            ),
            ("stale=bad", None, qpe("Invalid value for `stale`.")),
            (
                "group=true",
                None,
                qpe("Invalid use of grouping on a map view."),
            ),
            (
                "reduce=true",
                None,
                qpe("Reduce is invalid for map-only views."),
            ),
            (
                "partition=x",
                None,
                qpe("`partition` parameter is not supported on this db"),
            ),
            (
                "partition=_x",
                None,
                (
                    "illegal_partition".into(),
                    "Partition must not start with an underscore".into(),
                ),
            ),
            (
                "",
                Some(json!({"limit": "1"})),
                qpe("Invalid value for integer: <<\"1\">>"),
            ),
            (
                "",
                Some(json!({"limit": 2.5})),
                qpe("Invalid value for integer: 2.5"),
            ),
            (
                "",
                Some(json!({"limit": 1e3})),
                qpe("Invalid value for integer: 1.0e3"),
            ),
            (
                "",
                Some(json!({"limit": -1})),
                qpe("Invalid value for positive integer: -1"),
            ),
            (
                "",
                Some(json!({"limit": true})),
                qpe("Invalid value for integer: true"),
            ),
            (
                "",
                Some(json!({"limit": null})),
                qpe("Invalid value for integer: null"),
            ),
            (
                "",
                Some(json!({"limit": {"a": [1, "é"]}})),
                qpe("Invalid value for integer: {[{<<\"a\">>,[1,<<\"é\">>]}]}"),
            ),
            (
                "",
                Some(json!({"descending": 1})),
                qpe("Invalid boolean parameter: 1"),
            ),
            (
                "",
                Some(json!({"descending": "yes"})),
                qpe("Invalid boolean parameter: \"yes\""),
            ),
        ];
        for (q, b, want) in cases {
            assert_eq!(&error(q, b.clone()), want, "{q} {b:?}");
        }
    }

    #[test]
    fn numbers_are_never_too_big_to_read() {
        let o = opts("skip=99999999999999999999999999999999999999999999&limit=576460752303423487");
        assert_eq!((o.skip, o.limit), (u64::MAX, Some(576_460_752_303_423_487)));
        let o = opts("skip=004&limit=-0&descending=TRUE");
        assert_eq!((o.skip, o.limit, o.descending), (4, Some(0), true));
        let b = body(json!({"skip": 99999999999999999999999.0_f64}));
        assert_eq!(parse(&Query::default(), Some(&b)).unwrap().skip, u64::MAX);
    }

    #[test]
    fn erlang_floats() {
        for (f, text) in [
            (1000.0, "1.0e3"),
            (100.0, "100.0"),
            (2.5, "2.5"),
            (0.001, "0.001"),
            (0.0012, "0.0012"),
            (0.00012, "1.2e-4"),
            (123456.0, "123456.0"),
            (1.2e3, "1.2e3"),
            (-3.0, "-3.0"),
            (1.2345678901234567e19, "1.2345678901234567e19"),
        ] {
            assert_eq!(erl_float(f), text, "{f}");
        }
    }

    #[test]
    fn keys_name_what_couchdb_looks_up() {
        let ns = Namespace::new("u", "d", "e");
        let l = |k: Value| lookup(&ns, &k).unwrap();
        let at = |s: &str| Lookup::Backing(s.to_owned());
        assert_eq!(l(json!("a")), at("u.d.e:a"));
        assert_eq!(l(json!("_design/x")), at("u.d.e:_design/x"));
        assert_eq!(l(json!("_local/x")), at("_local/u.d.e:x"));
        assert_eq!(l(json!([97, ["b", []]])), at("u.d.e:ab"));
        for missing in [
            json!(1),
            json!(null),
            json!({}),
            json!(""),
            json!("_foo"),
            json!([]),
            json!([255]),
        ] {
            assert_eq!(l(missing.clone()), Lookup::Missing, "{missing}");
        }
        assert_eq!(lookup(&ns, &json!([256])).unwrap_err().status(), 400);
        assert_eq!(
            lookup(&ns, &json!([[true]])).unwrap_err().name(),
            "bad_request"
        );
    }

    #[test]
    fn keys_are_reversed_then_skipped_then_limited() {
        let keys = vec![json!("a"), json!("b"), json!("c")];
        let o = opts("descending=true&skip=1&limit=1");
        assert_eq!(answer_keys(&o, keys.clone()), [json!("b")]);
        assert!(answer_keys(&opts("skip=99999999999999999999"), keys).is_empty());
    }
}
