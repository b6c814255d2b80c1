//! Smoke tests: a file of HTTP requests with expected statuses and JSON fields.
//!
//! ```toml
//! [[request]]
//! name = "create a user"
//! method = "POST"                        # default GET
//! path = "/users"
//! json = { name = "smoke {{run}}" }      # request body (optional)
//! status = 201                           # default 200
//! expect = { name = "smoke {{run}}" }    # JSON fields: `a.b`, `0.author`
//! save = { user = "id", name = "name" }  # remember fields for later requests
//!
//! [[request]]
//! name = "read what the previous binary wrote"
//! path = "/users/{{prev.user}}/chirps"
//! expect = { "0.author" = "{{prev.name}}" }
//! ```
//!
//! `{{run}}` is unique per smoke run (`1.0.0-c2`), `{{release}}` and `{{cell}}`
//! name the release and cell; a saved name is usable in later requests of the
//! same run, and `{{prev.NAME}}` is the value an earlier run of the same step
//! saved last — so the binary of each cell reads what the previous binary
//! wrote. A request naming a `prev.` value no earlier run saved is skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::Error;

/// A parsed smoke file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeFile {
    /// The requests, in order.
    #[serde(rename = "request")]
    pub requests: Vec<SmokeRequest>,
}

/// One request and what it must answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeRequest {
    /// A name for reports.
    pub name: Option<String>,
    /// HTTP method (default GET).
    #[serde(default = "get")]
    pub method: String,
    /// Path (with `{{…}}` templates) on the binary's base URL.
    pub path: String,
    /// JSON body (strings are templated).
    pub json: Option<toml::Value>,
    /// Expected status (default 200).
    #[serde(default = "ok")]
    pub status: u16,
    /// Expected JSON fields by path (`a.b`, `0.author`).
    #[serde(default)]
    pub expect: BTreeMap<String, toml::Value>,
    /// Fields to remember: variable name → field path.
    #[serde(default)]
    pub save: BTreeMap<String, String>,
}

fn get() -> String {
    "GET".into()
}
fn ok() -> u16 {
    200
}

impl SmokeFile {
    /// Reads and checks a smoke file.
    pub fn load(path: &Path) -> Result<SmokeFile, Error> {
        let bad = |message: String| Error::Config {
            file: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: SmokeFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.requests.is_empty() {
            return Err(bad("no [[request]] entries".into()));
        }
        for (i, r) in file.requests.iter().enumerate() {
            if reqwest::Method::from_bytes(r.method.as_bytes()).is_err() {
                return Err(bad(format!("request {}: bad method `{}`", i + 1, r.method)));
            }
            if !r.path.starts_with('/') {
                return Err(bad(format!(
                    "request {}: path `{}` must start with /",
                    i + 1,
                    r.path
                )));
            }
        }
        Ok(file)
    }
}

impl SmokeRequest {
    /// `3 "create a user": POST /users/1`.
    pub fn describe(&self, index: usize, path: &str) -> String {
        match &self.name {
            Some(n) => format!("request {index} \"{n}\": {} {path}", self.method),
            None => format!("request {index}: {} {path}", self.method),
        }
    }
}

/// Variables of one smoke run.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// `run`, `release`, `cell` and what this run saved.
    pub current: BTreeMap<String, String>,
    /// What earlier runs of the step saved last (`prev.NAME`).
    pub prev: BTreeMap<String, String>,
}

/// A template needs a `prev.` value no earlier run saved.
#[derive(Debug)]
pub struct Missing(pub String);

impl Vars {
    /// Replaces `{{name}}` and `{{prev.name}}`.
    pub fn fill(&self, s: &str) -> Result<String, Missing> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("{{") {
            out.push_str(&rest[..i]);
            let Some(end) = rest[i + 2..].find("}}") else {
                out.push_str(&rest[i..]);
                return Ok(out);
            };
            let name = rest[i + 2..i + 2 + end].trim();
            let value = match name.strip_prefix("prev.") {
                Some(p) => self.prev.get(p),
                None => self.current.get(name),
            };
            out.push_str(value.ok_or_else(|| Missing(name.to_string()))?);
            rest = &rest[i + 2 + end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn fill_json(&self, v: &toml::Value) -> Result<Value, Missing> {
        Ok(match v {
            toml::Value::String(s) => Value::String(self.fill(s)?),
            toml::Value::Integer(i) => Value::from(*i),
            toml::Value::Float(f) => Value::from(*f),
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Datetime(d) => Value::String(d.to_string()),
            toml::Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.fill_json(x))
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(t) => Value::Object(
                t.iter()
                    .map(|(k, x)| Ok((k.clone(), self.fill_json(x)?)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// Looks up `a.b.0.c` in a JSON value.
pub fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, key| match cur {
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        Value::Object(o) => o.get(key),
        _ => None,
    })
}

fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) => e == a,
        // `"{{user}}"` against a numeric id: compare the text.
        (Value::String(e), a) => {
            let text = a.to_string();
            *e == text
        }
        (e, a) => e == a,
    }
}

/// A failed smoke request.
#[derive(Debug, Clone)]
pub struct RequestFailure {
    /// Which request (`request 3 "…": GET /users/1`).
    pub what: String,
    /// What was wrong.
    pub message: String,
    /// The response (status and body), if any.
    pub output: String,
    /// The request reads values an earlier run saved (`{{prev.…}}`).
    pub reads_prev: bool,
}

/// Runs every request of `file` against `base`, filling `vars`; stops at the
/// first failure. Returns the number of requests run and skipped.
pub async fn run(
    client: &reqwest::Client,
    base: &str,
    file: &SmokeFile,
    vars: &mut Vars,
) -> Result<(usize, usize), RequestFailure> {
    let (mut ran, mut skipped) = (0, 0);
    for (i, r) in file.requests.iter().enumerate() {
        let index = i + 1;
        let path = match vars.fill(&r.path) {
            Ok(p) => p,
            Err(Missing(name)) if name.starts_with("prev.") => {
                skipped += 1;
                continue;
            }
            Err(Missing(name)) => {
                return Err(RequestFailure {
                    what: r.describe(index, &r.path),
                    message: format!("`{{{{{name}}}}}` is not set by an earlier request"),
                    output: String::new(),
                    reads_prev: false,
                })
            }
        };
        let what = r.describe(index, &path);
        let reads_prev = r.path.contains("{{prev.")
            || r.json
                .as_ref()
                .is_some_and(|j| j.to_string().contains("{{prev."))
            || r.expect.values().any(|v| v.to_string().contains("{{prev."));
        let fail = |message: String, output: String| RequestFailure {
            what: what.clone(),
            message,
            output,
            reads_prev,
        };
        let body = match r.json.as_ref().map(|j| vars.fill_json(j)).transpose() {
            Ok(b) => b,
            Err(Missing(name)) if name.starts_with("prev.") => {
                skipped += 1;
                continue;
            }
            Err(Missing(name)) => {
                return Err(fail(format!("`{{{{{name}}}}}` is not set"), "".into()))
            }
        };
        let mut expect = Vec::new();
        let mut skip = false;
        for (k, v) in &r.expect {
            match vars.fill_json(v) {
                Ok(v) => expect.push((k, v)),
                Err(Missing(name)) if name.starts_with("prev.") => skip = true,
                Err(Missing(name)) => {
                    return Err(fail(format!("`{{{{{name}}}}}` is not set"), "".into()))
                }
            }
        }
        if skip {
            skipped += 1;
            continue;
        }
        let method = reqwest::Method::from_bytes(r.method.as_bytes()).expect("checked on load");
        let mut req = client
            .request(method, format!("{base}{path}"))
            .timeout(Duration::from_secs(30));
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| fail(format!("no response: {e}"), String::new()))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let output = format!("HTTP {status}\n{text}");
        ran += 1;
        if status != r.status {
            return Err(fail(
                format!("status {status}, expected {}", r.status),
                output,
            ));
        }
        if expect.is_empty() && r.save.is_empty() {
            continue;
        }
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| fail(format!("the body is not JSON: {e}"), output.clone()))?;
        for (k, e) in &expect {
            match field(&json, k) {
                Some(a) if matches(e, a) => {}
                Some(a) => {
                    return Err(fail(
                        format!("field `{k}` is {a}, expected {e}"),
                        output.clone(),
                    ))
                }
                None => {
                    return Err(fail(
                        format!("field `{k}` is missing, expected {e}"),
                        output.clone(),
                    ))
                }
            }
        }
        for (name, path) in &r.save {
            let v = field(&json, path).ok_or_else(|| {
                fail(
                    format!("field `{path}` (to save as `{name}`) is missing"),
                    output.clone(),
                )
            })?;
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars.current.insert(name.clone(), s);
        }
    }
    Ok((ran, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_current_and_previous_values() {
        let mut v = Vars::default();
        v.current.insert("run".into(), "1.0.0-c1".into());
        v.prev.insert("user".into(), "42".into());
        assert_eq!(
            v.fill("/users/{{prev.user}}?r={{ run }}").unwrap(),
            "/users/42?r=1.0.0-c1"
        );
        assert!(v.fill("{{prev.nope}}").is_err());
    }

    #[test]
    fn finds_fields_in_arrays_and_objects() {
        let v: Value = serde_json::json!([{"author": "ana", "id": 7}]);
        assert_eq!(field(&v, "0.author"), Some(&Value::from("ana")));
        assert!(matches(&Value::from("7"), field(&v, "0.id").unwrap()));
        assert_eq!(field(&v, "1.author"), None);
    }
}
