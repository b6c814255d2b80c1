//! Who may act (pause, resume, promote, abort a rollout). Reading needs
//! nothing; acting needs the token, or a trusted header set by an
//! authenticating proxy in front of the dashboard.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// The action policy.
#[derive(Clone, Default)]
pub struct Auth {
    /// SHA-256 of the token (the token itself is not kept).
    token_sha: Option<[u8; 32]>,
    /// A header whose non-empty value names a user the proxy authenticated.
    trusted_header: Option<axum::http::HeaderName>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token_sha.map(|_| "<set>"))
            .field("trusted_header", &self.trusted_header)
            .finish()
    }
}

/// Who acted, for the deploy log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The token holder.
    Token,
    /// The user the trusted header named.
    User(String),
}

impl Actor {
    /// `token` or `user alice`.
    pub fn label(&self) -> String {
        match self {
            Actor::Token => "token".into(),
            Actor::User(u) => format!("user {u}"),
        }
    }
}

fn sha(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Auth {
    /// Actions need `token` (when given) or the `trusted_header` (when given);
    /// with neither, the dashboard is read-only.
    pub fn new(token: Option<&str>, trusted_header: Option<axum::http::HeaderName>) -> Auth {
        Auth {
            token_sha: token.map(sha),
            trusted_header,
        }
    }

    /// Whether any action can be allowed.
    pub fn enabled(&self) -> bool {
        self.token_sha.is_some() || self.trusted_header.is_some()
    }

    /// The actor of a request, if it may act: the token from a form field or
    /// an `Authorization: Bearer` header, or the trusted header.
    pub fn check(&self, headers: &HeaderMap, form_token: Option<&str>) -> Option<Actor> {
        if let Some(want) = &self.token_sha {
            let bearer = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            for given in [form_token, bearer].into_iter().flatten() {
                // Comparing digests: equal length, no early exit on the secret.
                let got = sha(given.trim());
                if got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
                    return Some(Actor::Token);
                }
            }
        }
        if let Some(h) = &self.trusted_header {
            if let Some(user) = headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|u| !u.is_empty())
            {
                return Some(Actor::User(user.to_string()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_trusted_header() {
        let a = Auth::new(Some("s3cret"), Some("x-forwarded-user".parse().unwrap()));
        let mut h = HeaderMap::new();
        assert_eq!(a.check(&h, None), None);
        assert_eq!(a.check(&h, Some("wrong")), None);
        assert_eq!(a.check(&h, Some("s3cret")), Some(Actor::Token));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert_eq!(a.check(&h, None), Some(Actor::Token));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", " ".parse().unwrap());
        assert_eq!(a.check(&h, None), None);
        h.insert("x-forwarded-user", "alice".parse().unwrap());
        assert_eq!(a.check(&h, None), Some(Actor::User("alice".into())));
        assert!(!Auth::new(None, None).enabled());
        assert_eq!(Auth::new(None, None).check(&h, Some("")), None);
    }
}
