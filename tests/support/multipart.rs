//! A reader of multipart answers for tests: CouchDB's framing (`\r\n--{boundary}` delimiters,
//! the first without `\r\n`), a part's length taken from its `Content-Length` when it has one,
//! and `multipart/*` parts read as nested parts.

/// One part of a multipart answer.
#[derive(Debug, Clone)]
pub struct Part {
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The parts of a `multipart/*` part.
    pub nested: Vec<Part>,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The part's JSON body, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The `boundary` parameter of a content type.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parts of a multipart body of this content type.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let b = boundary(content_type).ok_or("no boundary")?;
    let delim = format!("\r\n--{b}").into_bytes();
    let mut data = b"\r\n".to_vec();
    data.extend_from_slice(body);
    let mut pos = find(&data, &delim, 0).ok_or("no opening delimiter")? + delim.len();
    let mut parts = Vec::new();
    loop {
        if data[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        let end = find(&data, b"\r\n\r\n", pos).ok_or("unterminated headers")?;
        let text = String::from_utf8_lossy(&data[pos..end]).into_owned();
        let headers: Vec<(String, String)> = text
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let start = end + 4;
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let stop = match length {
            Some(n) if data[start..].len() >= n => start + n,
            Some(_) => return Err("a part shorter than its Content-Length".into()),
            None => find(&data, &delim, start).ok_or("unterminated part")?,
        };
        if !data[stop..].starts_with(&delim) {
            return Err("no delimiter after a part".into());
        }
        let body = data[start..stop].to_vec();
        let ctype = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let nested = if ctype.to_ascii_lowercase().starts_with("multipart/") {
            parse(&ctype, &body)?
        } else {
            Vec::new()
        };
        parts.push(Part {
            headers,
            body,
            nested,
        });
        pos = stop + delim.len();
    }
}
