//! One side of the comparison: couchgate's virtual database or the plain control database,
//! with what its earlier answers taught us (revisions, sequences) for the templates of later
//! requests.

use crate::corpus::{Payload, Scope, Step};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

pub struct Target {
    /// Server root, without credentials.
    root: String,
    pub db: String,
    auth: Auth,
    http: reqwest::Client,
    /// Revisions each document got from writes, oldest first.
    pub revs: HashMap<String, Vec<String>>,
    /// The last `last_seq` and the row `seq`s of the last `_changes` answer.
    pub last_seq: Option<Value>,
    pub row_seqs: Vec<Value>,
    /// A label for every revision and revision hash learnt, given when first seen (the same
    /// revision can belong to several documents: it only depends on the content).
    pub labels: HashMap<String, String>,
    /// The last generated document id a write answered.
    pub generated: Option<String>,
    /// Creates its database with `?q=1`.
    single_shard: bool,
}

enum Auth {
    Bearer(String),
    Basic(String, Option<String>),
    None,
}

/// What a target answered.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Target {
    pub fn gate(gate: &crate::support::Gate, user: &str, db: &str) -> Target {
        Target::new(
            &gate.url,
            db,
            Auth::Bearer(crate::support::token(user, 3600)),
        )
    }

    pub fn direct(backend_url: &str, db: &str) -> Target {
        let url = url::Url::parse(backend_url).expect("backend URL");
        let auth = if url.username().is_empty() {
            Auth::None
        } else {
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Auth::Basic(dec(url.username()), url.password().map(dec))
        };
        let mut root = url.clone();
        let _ = root.set_username("");
        let _ = root.set_password(None);
        let mut t = Target::new(root.as_str(), db, auth);
        t.single_shard = true;
        t
    }

    fn new(root: &str, db: &str, auth: Auth) -> Target {
        Target {
            root: root.trim_end_matches('/').to_owned(),
            db: db.to_owned(),
            auth,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            revs: HashMap::new(),
            last_seq: None,
            row_seqs: Vec::new(),
            labels: HashMap::new(),
            generated: None,
            single_shard: false,
        }
    }

    /// Replaces `${rev:ID}`, `${rev:ID@N}`, `${hash:ID@N}`, `${seq}`, `${seq:K}`, `${gen}` (the
    /// last generated id) and `${genrev}` (its revision) with what this target answered earlier.
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let var = &rest[start + 2..start + len];
            out.push_str(&self.lookup(var));
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out
    }

    fn lookup(&self, var: &str) -> String {
        let (kind, arg) = var.split_once(':').unwrap_or((var, ""));
        let seq_text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match kind {
            "gen" => self.generated.clone().expect("a generated id"),
            "genrev" => self.lookup(&format!("rev:{}", self.lookup("gen"))),
            "seq" if arg.is_empty() => self.last_seq.as_ref().map(seq_text).unwrap_or_default(),
            "seq" => {
                let k: usize = arg.parse().expect("seq index");
                self.row_seqs.get(k).map(seq_text).unwrap_or_default()
            }
            "rev" | "hash" => {
                let (id, n) = match arg.rsplit_once('@') {
                    Some((id, n)) => (id, Some(n.parse::<usize>().expect("rev number"))),
                    None => (arg, None),
                };
                let revs = self
                    .revs
                    .get(id)
                    .unwrap_or_else(|| panic!("no revision recorded for {id}"));
                let rev = match n {
                    Some(n) => &revs[n - 1],
                    None => revs.last().expect("a revision"),
                };
                if kind == "hash" {
                    rev.split_once('-')
                        .map(|(_, h)| h)
                        .unwrap_or(rev)
                        .to_owned()
                } else {
                    rev.clone()
                }
            }
            other => panic!("unknown template ${{{other}}}"),
        }
    }

    pub async fn send(&mut self, step: &Step) -> Answer {
        let path = self.expand(&step.path);
        let mut url = match step.scope {
            Scope::Db => format!("{}/{}{}", self.root, self.db, path),
            Scope::Server => format!("{}{}", self.root, path),
        };
        // The control database is created with one shard, like the shared one.
        if self.single_shard && step.scope == Scope::Db && path.is_empty() && step.method == "PUT" {
            url.push_str("?q=1");
        }
        let method = Method::from_bytes(step.method.as_bytes()).expect("method");
        let mut r = self.http.request(method, &url);
        if !step.anon {
            r = match &self.auth {
                Auth::Bearer(t) => r.bearer_auth(t),
                Auth::Basic(u, p) => r.basic_auth(u, p.as_ref()),
                Auth::None => r,
            };
        }
        for (k, v) in &step.headers {
            r = r.header(k.as_str(), self.expand(v));
        }
        r = match &step.payload {
            Payload::None => r,
            Payload::Json(text) => r
                .header("Content-Type", "application/json")
                .body(self.expand(text)),
            Payload::Raw { bytes, .. } => r.body(bytes.clone()),
            Payload::Text(text) => r.body(self.expand(text)),
            Payload::Gzip(text) => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(self.expand(text).as_bytes()).unwrap();
                r.header("Content-Type", "application/json")
                    .header("Content-Encoding", "gzip")
                    .body(enc.finish().unwrap())
            }
        };
        if let Payload::Raw {
            content_type: Some(ct),
            ..
        } = &step.payload
        {
            r = r.header("Content-Type", self.expand(ct));
        }
        let resp = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: request failed: {e}", step.name));
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_else(|e| format!("<body cut: {e}>").into_bytes());
        let answer = Answer {
            status,
            headers,
            bytes,
        };
        self.learn(&answer);
        answer
    }

    /// Records revisions of writes and sequences of `_changes` answers.
    fn learn(&mut self, a: &Answer) {
        let Ok(v) = serde_json::from_slice::<Value>(&a.bytes) else {
            return;
        };
        let mut record = |row: &Value| {
            if let (Some(id), Some(rev)) = (
                row.get("id").and_then(Value::as_str),
                row.get("rev").and_then(Value::as_str),
            ) {
                if row.get("error").is_none() {
                    let revs = self.revs.entry(id.to_owned()).or_default();
                    if !revs.iter().any(|r| r == rev) {
                        revs.push(rev.to_owned());
                        // Generated ids differ between the targets; their revisions are
                        // labelled by generation alone.
                        let who = if crate::compare::is_uuid(id) {
                            "<generated>"
                        } else {
                            id
                        };
                        let label = format!("{who}@{}", revs.len());
                        if let Some((_, hash)) = rev.split_once('-') {
                            self.labels
                                .entry(hash.to_owned())
                                .or_insert_with(|| format!("<hash {label}>"));
                        }
                        self.labels
                            .entry(rev.to_owned())
                            .or_insert_with(|| format!("<rev {label}>"));
                    }
                    if crate::compare::is_uuid(id) {
                        self.generated = Some(id.to_owned());
                    }
                }
            }
        };
        match &v {
            Value::Array(rows) => rows.iter().for_each(&mut record),
            Value::Object(_) => record(&v),
            _ => {}
        }
        if let Some(last) = v.get("last_seq") {
            self.last_seq = Some(last.clone());
            match v["results"].as_array() {
                Some(rows) if !rows.is_empty() => {
                    self.row_seqs = rows.iter().map(|r| r["seq"].clone()).collect();
                }
                _ => {}
            }
        }
    }

    /// Deletes the control database.
    pub async fn cleanup(&self) {
        let mut r = self.http.delete(format!("{}/{}", self.root, self.db));
        if let Auth::Basic(u, p) = &self.auth {
            r = r.basic_auth(u, p.as_ref());
        }
        let _ = r.send().await;
    }
}
