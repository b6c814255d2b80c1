//! Hiding passwords: [`redact`] on a connection string's raw text and
//! [`redact_text`] on free text, and [`UrlError`], whose message is built
//! with them. A leaf: it reads connection strings only through the lexical
//! helpers of `connstr/lex.rs`, so `url` and `connstr` both import it and
//! neither imports the other back.

use crate::connstr::lex::{is_key_value, userinfo_end};

/// A URL that capstan cannot use. The message never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad database URL `{shown}`: {reason}")]
pub struct UrlError {
    /// The URL with its password replaced by `***`.
    pub shown: String,
    /// What is wrong.
    pub reason: String,
}

/// Replaces every password in a connection string with `***`, working on
/// the raw text so that a string capstan cannot parse is hidden as well: the
/// `user:password@` part of a URL (up to its last `@`, so `@ / ? #` in a
/// password are hidden too), and every `password=` value (quoted or not, in
/// a URL query or a `key=value` string).
pub fn redact(s: &str) -> String {
    let out = if let Some(p) = s.find("://") {
        let rest = &s[p + 3..];
        match userinfo_end(rest) {
            Some(at) => match rest[..at].find(':') {
                Some(c) => format!("{}{}:***{}", &s[..p + 3], &rest[..c], &rest[at..]),
                None => s.to_string(),
            },
            None => s.to_string(),
        }
    } else if is_key_value(s) {
        s.to_string()
    } else {
        // Not a form capstan knows (a typo'd scheme, say): hide everything
        // between the first `:` and the last `@`.
        match (s.find(':'), s.rfind('@')) {
            (Some(c), Some(a)) if c < a => format!("{}:***{}", &s[..c], &s[a..]),
            _ => s.to_string(),
        }
    };
    redact_password_params(&out, is_key_value(s))
}

/// Hides every `password = value` (also `sslpassword=`), case-insensitive.
/// An unquoted value ends at white space, and also at `&` outside a
/// `key=value` string; a quoted one at its closing quote (or the end).
fn redact_password_params(s: &str, key_value: bool) -> String {
    const KEY: &str = "password";
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find(KEY) {
        let key_end = i + found + KEY.len();
        let mut j = key_end;
        let bytes = s.as_bytes();
        while j < s.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= s.len() || bytes[j] != b'=' {
            out.push_str(&s[i..key_end]);
            i = key_end;
            continue;
        }
        j += 1;
        while j < s.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        out.push_str(&s[i..j]);
        let end = if bytes.get(j) == Some(&b'\'') {
            let mut k = j + 1;
            loop {
                match bytes.get(k) {
                    None => break s.len(),
                    Some(b'\\') => k += 2,
                    Some(b'\'') => break k + 1,
                    Some(_) => k += 1,
                }
            }
            .min(s.len())
        } else {
            s[j..]
                .find(|c: char| c.is_whitespace() || (!key_value && c == '&'))
                .map_or(s.len(), |e| j + e)
        };
        out.push_str("***");
        i = end;
    }
    out.push_str(&s[i..]);
    out
}

/// [`redact`] applied to free text (an error message that may quote a
/// connection string, a config file's line): every `scheme://…` (up to the
/// last `@` on its line, so a raw password with spaces is covered), every
/// word shaped `x:…@y` (a connection string with a typo in its scheme), and
/// every `password=` value (to the next white space, or its closing quote).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let mut rest = line;
        while let Some(p) = rest.find("://") {
            let start = rest[..p]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '.' || c == '-'))
                .map_or(0, |i| i + 1);
            let after = &rest[p + 3..];
            let word_from = userinfo_end(after).map_or(0, |at| at);
            let end = after[word_from..]
                .find(|c: char| c.is_whitespace() || c == '"' || c == '`' || c == '\'')
                .map_or(rest.len(), |e| p + 3 + word_from + e);
            out.push_str(&rest[..start]);
            out.push_str(&redact(&rest[start..end]));
            rest = &rest[end..];
        }
        let words: Vec<String> = rest
            .split(' ')
            .map(|w| match (w.find(':'), w.rfind('@')) {
                (Some(c), Some(a)) if c < a && !w.contains("://") => {
                    format!("{}:***{}", &w[..c], &w[a..])
                }
                _ => w.to_string(),
            })
            .collect();
        out.push_str(&words.join(" "));
    }
    redact_password_params(&out, true)
}
