//! Request parameters the way GitLab's API (Grape on Rack) reads them: one decoding home for
//! every `/api/v4` endpoint.
//!
//! Grape accepts the same parameters as a JSON body, an `application/x-www-form-urlencoded`
//! body, a `multipart/form-data` body or the query string. Rack merges the query string
//! first and the body over it (`GET.merge(POST)`), and the path's own parameters (`:id`)
//! win over both; handlers here take path parameters from the route, so the body-over-query
//! rule is the one this module applies. Form and query keys nest like Rack's
//! (`info[features][x]=1`, `tag_list[]=a`), so every format yields the same JSON-like tree,
//! and the accessors ([`flag`], [`list`], [`integer`]) coerce like Grape's types: booleans
//! from `true`/`false`/`1`/`0`, arrays from repeated `key[]` or a comma-separated string.

use http::StatusCode;
use serde_json::{Map, Value};

use super::http::{self as h, BodyError, Request, Response};

/// Largest parameter body: requests carry runner info, job state or a release, never data.
pub(crate) const MAX_PARAMS_BODY: u64 = 1024 * 1024;

/// Why a request's parameters cannot be read; [`ParamsError::response`] is GitLab's answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParamsError {
    #[error("413 Request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("400 Bad request - {0}")]
    Body(String),
    #[error("400 Bad request - body must be a JSON object")]
    NotAnObject,
    #[error("400 Bad request - invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("400 Bad request - multipart body: {0}")]
    Multipart(&'static str),
    #[error("415 Unsupported Media Type - {0}")]
    MediaType(String),
}

impl ParamsError {
    pub(crate) fn response(&self) -> Response {
        let status = match self {
            ParamsError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ParamsError::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        h::json_message(status, &self.to_string())
    }
}

/// How a body is encoded, from its `Content-Type`.
enum BodyFormat {
    Json,
    Form,
    Multipart(String),
}

fn body_format(content_type: Option<&str>, body: &[u8]) -> Result<BodyFormat, ParamsError> {
    let Some(ct) = content_type else {
        // No type: a JSON object is JSON, anything else is read as a form, as curl's `-d`.
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        return Ok(if first == Some(&b'{') {
            BodyFormat::Json
        } else {
            BodyFormat::Form
        });
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        m if m.starts_with("application/") && m.ends_with("+json") => Ok(BodyFormat::Json),
        "application/x-www-form-urlencoded" => Ok(BodyFormat::Form),
        "multipart/form-data" => match boundary_of(ct) {
            Some(b) => Ok(BodyFormat::Multipart(b)),
            None => Err(ParamsError::Multipart("Content-Type has no boundary")),
        },
        _ => Err(ParamsError::MediaType(format!(
            "parameters must be JSON, form-encoded or multipart, not {mime:?}"
        ))),
    }
}

/// Reads every parameter of `req`: query string, then the body over it.
pub(crate) async fn read(req: Request) -> Result<Value, ParamsError> {
    let mut params = from_pairs(h::query_pairs(req.uri().query()));
    let content_type = h::header_str(req.headers(), "content-type").map(str::to_string);
    let body = match h::collect_limited(req.into_body(), MAX_PARAMS_BODY).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(n)) => return Err(ParamsError::TooLarge(n)),
        Err(e) => return Err(ParamsError::Body(e.to_string())),
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        let from_body = decode_body(content_type.as_deref(), &body)?;
        merge(&mut params, from_body);
    }
    Ok(params)
}

/// Parameters of a request whose body is not parameters (an upload): the query string only.
pub(crate) fn query(req: &Request) -> Value {
    from_pairs(h::query_pairs(req.uri().query()))
}

fn decode_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ParamsError> {
    match body_format(content_type, body)? {
        BodyFormat::Json => match serde_json::from_slice::<Value>(body)? {
            v @ Value::Object(_) => Ok(v),
            _ => Err(ParamsError::NotAnObject),
        },
        BodyFormat::Form => Ok(from_pairs(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )),
        BodyFormat::Multipart(boundary) => multipart_fields(body, &boundary).map(from_pairs),
    }
}

/// The fields of an in-memory multipart body, in order; file parts count by their content.
fn multipart_fields(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, ParamsError> {
    let delimiter = format!("--{boundary}");
    let closing = format!("\r\n--{boundary}");
    let mut fields = Vec::new();
    let Some(first) = memchr::memmem::find(body, delimiter.as_bytes()) else {
        return Err(ParamsError::Multipart("no boundary in the body"));
    };
    let mut pos = first + delimiter.len();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(fields);
        }
        let head_start = pos + body[pos..].strip_prefix(b"\r\n").map_or(0, |_| 2);
        let Some(head_len) = memchr::memmem::find(&body[head_start..], b"\r\n\r\n") else {
            return Err(ParamsError::Multipart("part headers are not terminated"));
        };
        let headers = String::from_utf8_lossy(&body[head_start..head_start + head_len]);
        let data_start = head_start + head_len + 4;
        let Some(data_len) = memchr::memmem::find(&body[data_start..], closing.as_bytes()) else {
            return Err(ParamsError::Multipart(
                "body ends without its closing boundary",
            ));
        };
        if let Some(name) = disposition_param(&headers, "name") {
            let value = String::from_utf8_lossy(&body[data_start..data_start + data_len]);
            fields.push((name, value.into_owned()));
        }
        pos = data_start + data_len + closing.len();
    }
}

/// `multipart/form-data; boundary=...` → the boundary.
pub(crate) fn boundary_of(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 200).then(|| v.to_string())
    })
}

/// A `name="value"` parameter of a part's `Content-Disposition`.
pub(crate) fn disposition_param(headers: &str, param: &str) -> Option<String> {
    let line = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?;
    line.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(param)).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Rack's nested keys: `a[b][c]` → `["a", "b", "c"]`; `a[]` ends in an empty segment.
fn key_path(key: &str) -> Vec<&str> {
    let Some(open) = key.find('[') else {
        return vec![key];
    };
    let mut path = vec![&key[..open]];
    let mut rest = &key[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            // Unbalanced: Rack keeps the remainder as a plain key.
            return vec![key];
        };
        path.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    if !rest.is_empty() {
        return vec![key];
    }
    path
}

/// Builds the parameter tree from decoded `key=value` pairs (later pairs win, `[]` appends).
fn from_pairs(pairs: Vec<(String, String)>) -> Value {
    let mut root = Map::new();
    for (key, value) in pairs {
        let path = key_path(&key);
        if path[0].is_empty() {
            continue;
        }
        insert(&mut root, &path, value);
    }
    Value::Object(root)
}

fn insert(map: &mut Map<String, Value>, path: &[&str], value: String) {
    let (head, rest) = (path[0], &path[1..]);
    match rest {
        [] => {
            map.insert(head.to_string(), Value::String(value));
        }
        [""] => {
            let slot = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            if let Value::Array(items) = slot {
                items.push(Value::String(value));
            }
        }
        ["", tail @ ..] => {
            // `a[][b]=…`: an array of hashes. As Rack does, the value goes into the last
            // hash unless that one has the key already, which starts the next hash (so
            // `links[][name]=x&links[][url]=y&links[][name]=z` is two links).
            let slot = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            if let Value::Array(items) = slot {
                let reuse = matches!(items.last(), Some(Value::Object(last)) if !last.contains_key(tail[0]));
                if !reuse {
                    items.push(Value::Object(Map::new()));
                }
                if let Some(Value::Object(last)) = items.last_mut() {
                    insert(last, tail, value);
                }
            }
        }
        _ => {
            let slot = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(inner) = slot {
                insert(inner, rest, value);
            }
        }
    }
}

/// Body parameters over query parameters, nested objects merged key by key.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// A string parameter (numbers are written as they came).
pub(crate) fn string<'a>(params: &'a Value, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

/// A boolean at a JSON pointer (`/info/features/x`), coerced like Grape's `Boolean`.
pub(crate) fn flag(params: &Value, pointer: &str) -> Option<bool> {
    match params.pointer(pointer)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// An integer parameter given as a number or a decimal string.
pub(crate) fn integer(params: &Value, key: &str) -> Option<i64> {
    match params.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An array parameter: `key[]=a&key[]=b`, a JSON array, or `a,b` (Grape's
/// `coerce_with: ->(v) { v.split(',') }` on `tag_list`).
pub(crate) fn list(params: &Value, key: &str) -> Vec<String> {
    match params.get(key) {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(q: &str) -> Value {
        from_pairs(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    #[test]
    fn rack_nesting_builds_objects_and_arrays() {
        let v = pairs("token=t&info[features][two_phase_job_commit]=1&tag_list[]=a&tag_list[]=b");
        assert_eq!(
            v,
            json!({"token": "t", "info": {"features": {"two_phase_job_commit": "1"}},
                   "tag_list": ["a", "b"]})
        );
        assert_eq!(flag(&v, "/info/features/two_phase_job_commit"), Some(true));
        assert_eq!(list(&v, "tag_list"), ["a", "b"]);
        assert_eq!(pairs("a[b=1"), json!({"a[b": "1"}));
    }

    #[test]
    fn arrays_of_hashes_start_a_hash_when_a_key_repeats() {
        let v = pairs(
            "assets[links][][name]=a&assets[links][][url]=u1&assets[links][][name]=b&assets[links][][url]=u2",
        );
        assert_eq!(
            v,
            json!({"assets": {"links": [{"name": "a", "url": "u1"}, {"name": "b", "url": "u2"}]}})
        );
    }

    #[test]
    fn body_wins_over_query_and_nested_keys_merge() {
        let mut q = pairs("token=fromquery&info[name]=q&x=1");
        merge(
            &mut q,
            json!({"token": "frombody", "info": {"version": "v"}}),
        );
        assert_eq!(
            q,
            json!({"token": "frombody", "info": {"name": "q", "version": "v"}, "x": "1"})
        );
    }

    #[test]
    fn coercions_follow_grape() {
        let v = json!({"a": "false", "b": 0, "c": "yes", "n": "42", "l": "x, y,,z"});
        assert_eq!(flag(&v, "/a"), Some(false));
        assert_eq!(flag(&v, "/b"), Some(false));
        assert_eq!(flag(&v, "/c"), None);
        assert_eq!(integer(&v, "n"), Some(42));
        assert_eq!(list(&v, "l"), ["x", "y", "z"]);
    }

    #[test]
    fn multipart_fields_are_read_in_order() {
        let body = b"--XY\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nabc\r\n--XY\r\nContent-Disposition: form-data; name=\"tag_list[]\"\r\n\r\nq\r\n--XY--\r\n";
        let v = decode_body(Some("multipart/form-data; boundary=XY"), body).expect("parsed");
        assert_eq!(v, json!({"token": "abc", "tag_list": ["q"]}));
        assert!(decode_body(Some("multipart/form-data; boundary=XY"), b"--XY\r\nbroken").is_err());
    }

    #[test]
    fn content_types_decide_the_decoder() {
        assert_eq!(
            decode_body(None, b"{\"a\":1}").expect("json"),
            json!({"a": 1})
        );
        assert_eq!(decode_body(None, b"a=1").expect("form"), json!({"a": "1"}));
        assert!(matches!(
            decode_body(Some("text/plain"), b"a=1"),
            Err(ParamsError::MediaType(_))
        ));
        assert!(matches!(
            decode_body(Some("application/json"), b"[1]"),
            Err(ParamsError::NotAnObject)
        ));
    }
}
