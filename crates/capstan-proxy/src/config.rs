//! `proxy.toml`: parsed strictly (unknown keys refused), validated, and
//! turned into [`Settings`]. Every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::routing::{CohortRules, MirrorRule, ReleasePool, RoutingTable, Sticky, TableError};

/// Environment variable holding the admin token when the file and flags do not.
pub const ADMIN_TOKEN_ENV: &str = "CAPSTAN_PROXY_ADMIN_TOKEN";

/// A configuration the proxy cannot start with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A syntax error, an unknown key, a wrong type or a bad value.
    #[error("{path}: {message}")]
    Invalid {
        /// The file (or `flags`).
        path: PathBuf,
        /// `line N: key: why`.
        message: String,
    },
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| {
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration ({e})")))
    })
    .transpose()
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Address the proxy serves clients on.
    pub listen: Option<String>,
    /// Address of the admin API.
    pub admin_listen: Option<String>,
    /// Bearer token of the admin API.
    pub admin_token: Option<String>,
    /// The service's name in events.
    pub service: Option<String>,
    /// Timeout for routes without their own (time to response headers).
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// Largest request or response body buffered for mirroring and retries.
    pub body_limit: Option<usize>,
    /// After SIGTERM, how long open connections keep being answered (with
    /// `Connection: close`) before idle ones are closed.
    #[serde(default, deserialize_with = "de_duration")]
    pub drain: Option<Duration>,
    /// `[[release]]` sections.
    #[serde(default, rename = "release")]
    pub releases: Vec<Spanned<ReleaseSection>>,
    /// `[[route]]` sections.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
    /// `[cohort]`.
    #[serde(default)]
    pub cohort: CohortRules,
    /// `[routing]`.
    #[serde(default)]
    pub routing: RoutingSection,
    /// `[events]`.
    #[serde(default)]
    pub events: EventsSection,
    /// `[health]`.
    #[serde(default)]
    pub health: HealthSection,
}

/// `[[release]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSection {
    /// Release name.
    pub name: String,
    /// `host:port` list.
    pub upstreams: Vec<String>,
}

/// `[[route]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// `/api/chirps/{id}`: `{name}` matches one path segment, `{*name}` the rest.
    pub template: String,
    /// Timeout to response headers for this route.
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
}

/// `[routing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// Release of the internal cohort.
    pub internal: Option<Spanned<String>>,
    /// Percent per release.
    pub weights: Option<Spanned<BTreeMap<String, u32>>>,
    /// Sticky key source.
    pub sticky: Option<Spanned<Sticky>>,
    /// Mirror rule.
    pub mirror: Option<Spanned<MirrorRule>>,
}

/// `[events]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// SQLite event store (`capstan-events.db` by default).
    pub store: Option<PathBuf>,
    /// Events queued for the store before new ones are dropped.
    pub capacity: Option<usize>,
    /// Off: record no events.
    pub enabled: Option<bool>,
    /// Mixed into the hash of user keys.
    pub salt: Option<String>,
}

/// `[health]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Path checked on each upstream (`/readyz`).
    pub path: Option<String>,
    /// Time between checks.
    #[serde(default, deserialize_with = "de_duration")]
    pub interval: Option<Duration>,
    /// Timeout of one check.
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// Consecutive successes that make an unready upstream ready.
    pub healthy_threshold: Option<u32>,
    /// Consecutive failures that make a ready upstream unready.
    pub unhealthy_threshold: Option<u32>,
}

/// A route template and its timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The template.
    pub template: String,
    /// Timeout to response headers.
    pub timeout: Duration,
}

/// Health-check settings.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    /// Path checked (`/readyz`).
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
    /// Timeout of one check.
    pub timeout: Duration,
    /// Consecutive successes to become ready.
    pub healthy_threshold: u32,
    /// Consecutive failures to become unready.
    pub unhealthy_threshold: u32,
}

/// Everything the proxy runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Client listener.
    pub listen: SocketAddr,
    /// Admin listener (none: no admin API).
    pub admin_listen: Option<SocketAddr>,
    /// Admin bearer token.
    pub admin_token: Option<String>,
    /// Service name in events.
    pub service: String,
    /// Timeout of requests matching no route with its own.
    pub default_timeout: Duration,
    /// Largest body buffered for mirroring, retries and response hashing.
    pub body_limit: usize,
    /// After the signal, how long open connections are answered with `Connection: close`.
    pub drain: Duration,
    /// Route templates, in file order.
    pub routes: Vec<Route>,
    /// The initial routing table (validated).
    pub table: RoutingTable,
    /// Event store (none: events off).
    pub events_store: Option<PathBuf>,
    /// Recorder queue capacity.
    pub events_capacity: usize,
    /// Salt mixed into user-key hashes.
    pub user_salt: String,
    /// Health checks.
    pub health: HealthSettings,
}

/// Default client listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl ProxyFile {
    /// Reads and parses `path` (syntax, unknown keys, types).
    pub fn load(path: &Path) -> Result<(ProxyFile, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file = toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: describe_toml_error(&text, &e),
        })?;
        Ok((file, text))
    }

    /// Validates and resolves defaults. `text` is the file's text (for line
    /// numbers; empty for flags), `origin` names it in errors.
    pub fn resolve(self, origin: &Path, text: &str) -> Result<Settings, ConfigError> {
        let line_of = |span: std::ops::Range<usize>| {
            if text.is_empty() {
                String::new()
            } else {
                format!(
                    "line {}: ",
                    text[..span.start.min(text.len())].matches('\n').count() + 1
                )
            }
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_path_buf(),
            message,
        };
        let addr = |key: &str, v: &str| -> Result<SocketAddr, ConfigError> {
            v.parse()
                .map_err(|e| invalid(format!("{key}: `{v}` is not ip:port ({e})")))
        };
        let listen = addr("listen", self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let admin_listen = self
            .admin_listen
            .as_deref()
            .map(|v| addr("admin_listen", v))
            .transpose()?;
        let admin_token = self
            .admin_token
            .or_else(|| std::env::var(ADMIN_TOKEN_ENV).ok())
            .filter(|t| !t.is_empty());
        if admin_listen.is_some() && admin_token.is_none() {
            return Err(invalid(format!(
                "admin_listen is set but no admin_token (or {ADMIN_TOKEN_ENV}): the admin API is never open"
            )));
        }
        let default_timeout = self.timeout.unwrap_or(Duration::from_secs(30));
        let mut routes = Vec::new();
        let mut matcher = matchit::Router::new();
        for (i, r) in self.routes.iter().enumerate() {
            matcher
                .insert(r.template.as_str(), i)
                .map_err(|e| invalid(format!("route.template: `{}`: {e}", r.template)))?;
            routes.push(Route {
                template: r.template.clone(),
                timeout: r.timeout.unwrap_or(default_timeout),
            });
        }
        let spans: Vec<_> = self.releases.iter().map(|r| r.span()).collect();
        let releases: Vec<ReleasePool> = self
            .releases
            .into_iter()
            .map(|r| {
                let r = r.into_inner();
                ReleasePool {
                    name: r.name,
                    upstreams: r.upstreams,
                }
            })
            .collect();
        let routing = self.routing;
        let weights_span = routing.weights.as_ref().map(|w| w.span());
        let weights = match routing.weights {
            Some(w) => w.into_inner(),
            // One release and no weights: it gets everything.
            None if releases.len() == 1 => [(releases[0].name.clone(), 100)].into(),
            None => {
                return Err(invalid(
                    "routing.weights: missing; with several releases name each one's percent"
                        .into(),
                ))
            }
        };
        let internal_span = routing.internal.as_ref().map(|s| s.span());
        let mirror_span = routing.mirror.as_ref().map(|s| s.span());
        let sticky_span = routing.sticky.as_ref().map(|s| s.span());
        let table = RoutingTable {
            releases,
            cohort: self.cohort,
            internal: routing.internal.map(Spanned::into_inner),
            weights,
            sticky: routing.sticky.map(Spanned::into_inner).unwrap_or_default(),
            mirror: routing.mirror.map(Spanned::into_inner),
        };
        if let Err(e) = table.validate() {
            let release_span = |name: &str| {
                table
                    .index_of(name)
                    .and_then(|i| spans.get(i).cloned())
                    .map(&line_of)
                    .unwrap_or_default()
            };
            let at = match &e {
                TableError::EmptyPool(r) | TableError::DuplicateRelease(r) => release_span(r),
                TableError::BadAddress { release, .. } => release_span(release),
                TableError::OverlappingPools { b, .. } => release_span(b),
                TableError::UnknownRelease {
                    field: "internal", ..
                } => internal_span.map(&line_of).unwrap_or_default(),
                TableError::UnknownRelease {
                    field: "mirror.release",
                    ..
                }
                | TableError::MirrorPercent(_) => mirror_span.map(&line_of).unwrap_or_default(),
                TableError::UnknownRelease { .. } | TableError::WeightSum(_) => {
                    weights_span.map(&line_of).unwrap_or_default()
                }
                TableError::StickyBoth | TableError::EmptyName("sticky") => {
                    sticky_span.map(&line_of).unwrap_or_default()
                }
                _ => String::new(),
            };
            let section = match &e {
                TableError::NoReleases
                | TableError::DuplicateRelease(_)
                | TableError::EmptyPool(_)
                | TableError::BadAddress { .. }
                | TableError::OverlappingPools { .. } => "",
                TableError::EmptyName(f) if f.starts_with("cohort") => "",
                _ => "routing.",
            };
            let msg = e.to_string().replacen("releases", "release", 1);
            return Err(invalid(format!("{at}{section}{msg}")));
        }
        let health = HealthSettings {
            path: self.health.path.unwrap_or_else(|| "/readyz".into()),
            interval: self.health.interval.unwrap_or(Duration::from_secs(1)),
            timeout: self.health.timeout.unwrap_or(Duration::from_secs(1)),
            healthy_threshold: self.health.healthy_threshold.unwrap_or(1).max(1),
            unhealthy_threshold: self.health.unhealthy_threshold.unwrap_or(2).max(1),
        };
        if !health.path.starts_with('/') {
            return Err(invalid(format!(
                "health.path: `{}` must start with /",
                health.path
            )));
        }
        let enabled = self.events.enabled.unwrap_or(true);
        Ok(Settings {
            listen,
            admin_listen,
            admin_token,
            service: self.service.unwrap_or_else(|| "service".into()),
            default_timeout,
            body_limit: self.body_limit.unwrap_or(1 << 20),
            drain: self.drain.unwrap_or(Duration::from_secs(2)),
            routes,
            table,
            events_store: enabled.then(|| {
                self.events
                    .store
                    .unwrap_or_else(|| PathBuf::from("capstan-events.db"))
            }),
            events_capacity: self.events.capacity.unwrap_or(65_536).max(1),
            user_salt: self.events.salt.unwrap_or_default(),
            health,
        })
    }
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// Parses `text` as a `proxy.toml` named `origin` and resolves it.
pub fn parse(origin: &Path, text: &str) -> Result<Settings, ConfigError> {
    let file: ProxyFile = toml::from_str(text).map_err(|e| ConfigError::Invalid {
        path: origin.to_path_buf(),
        message: describe_toml_error(text, &e),
    })?;
    file.resolve(origin, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:0"
service = "chirpy"

[[release]]
name = "1.0.0"
upstreams = ["127.0.0.1:8081"]

[[release]]
name = "2.0.0"
upstreams = ["127.0.0.1:8082"]

[[route]]
template = "/users/{id}"
timeout = "2s"

[cohort]
headers = [{ name = "x-internal", value = "1" }]

[routing]
internal = "2.0.0"
weights = { "1.0.0" = 90, "2.0.0" = 10 }
sticky = { header = "x-user" }
mirror = { release = "2.0.0", percent = 5 }
"#;

    fn err(text: &str) -> String {
        parse(Path::new("proxy.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_full_file_resolves() {
        let s = parse(Path::new("proxy.toml"), GOOD).unwrap();
        assert_eq!(s.table.weights["2.0.0"], 10);
        assert_eq!(s.routes[0].timeout, Duration::from_secs(2));
        assert_eq!(s.table.sticky.header.as_deref(), Some("x-user"));
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = err(&GOOD.replace("service =", "servise ="));
        assert!(e.contains("line 3") && e.contains("servise"), "{e}");
        let e = err(&GOOD.replace("\"2.0.0\" = 10", "\"2.0.0\" = 5"));
        assert!(
            e.contains("line 22") && e.contains("weights: sum to 95"),
            "{e}"
        );
        let e = err(&GOOD.replace("8082", "8081"));
        assert!(
            e.contains("line 9") && e.contains("must not overlap"),
            "{e}"
        );
        let e = err(&GOOD.replace("[\"127.0.0.1:8082\"]", "[]"));
        assert!(e.contains("line 9") && e.contains("pool is empty"), "{e}");
        let e = err(&GOOD.replace("internal = \"2.0.0\"", "internal = \"3.0.0\""));
        assert!(
            e.contains("line 21") && e.contains("no release `3.0.0`"),
            "{e}"
        );
        let e = err(&GOOD.replace("timeout = \"2s\"", "timeout = \"soon\""));
        assert!(e.contains("line 15") && e.contains("soon"), "{e}");
        let e = err(&GOOD.replace("[routing]", "[routing"));
        assert!(e.contains("line 20"), "{e}");
        let e = err(&GOOD.replace("percent = 5", "percent = 5, extra = 1"));
        assert!(e.contains("line 24") && e.contains("extra"), "{e}");
    }
}
