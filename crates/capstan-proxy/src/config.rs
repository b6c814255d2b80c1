//! `proxy.toml`: parsed strictly (unknown keys refused), validated, and
//! turned into [`Settings`]. Every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::routing::{
    CohortRules, FleetSource, MirrorRule, ReleasePool, RoutingTable, Sticky, TableError,
};

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
    /// How long a client may take to send a request's head, counted from
    /// when the connection is ready for it (an idle HTTP/1 keep-alive
    /// connection is closed after as long, and so is a new connection on
    /// which nothing, or too little to tell HTTP/1 from HTTP/2, arrives).
    #[serde(default, deserialize_with = "de_duration")]
    pub header_timeout: Option<Duration>,
    /// How long a write of an answer to a client may wait for the client
    /// to read before the connection is closed.
    #[serde(default, deserialize_with = "de_duration")]
    pub send_timeout: Option<Duration>,
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
    /// `[fleet]`: where releases marked `fleet` find their instances.
    pub fleet: Option<Spanned<FleetSection>>,
}

/// `[[release]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSection {
    /// Release name.
    pub name: String,
    /// `host:port` list (always in the pool, beside discovered instances).
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Find the live instances whose version is the release name in the
    /// fleet registry.
    pub fleet: Option<Spanned<bool>>,
    /// Find the live instances of this version (implies `fleet = true`).
    pub version: Option<Spanned<String>>,
}

/// `[fleet]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// The database holding the registry (`postgres://…`, `sqlite://…`).
    pub database: Option<Spanned<String>>,
    /// An environment variable holding that URL (keeps the password out of the file).
    pub database_env: Option<Spanned<String>>,
    /// The service whose fleet is read (`default` when unset).
    pub service: Option<String>,
    /// Only instances registered by this application.
    pub app: Option<String>,
    /// Time between polls.
    #[serde(default, deserialize_with = "de_duration")]
    pub refresh: Option<Duration>,
    /// Bound on one poll (connect and query).
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// An instance whose last heartbeat is older is not live.
    #[serde(default, deserialize_with = "de_duration")]
    pub ttl: Option<Duration>,
}

/// Where discovered upstreams come from.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// The registry's database (its `Debug` and `Display` hide the password).
    pub database: capstan_migrate::DatabaseUrl,
    /// The service whose fleet is read.
    pub service: String,
    /// Only instances of this application.
    pub app: Option<String>,
    /// Time between polls.
    pub refresh: Duration,
    /// Bound on one poll.
    pub timeout: Duration,
    /// Heartbeat age after which an instance is not live.
    pub ttl: Duration,
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
    /// Bound on reading a request head (and on an idle HTTP/1 keep-alive
    /// connection, and on a new connection's first bytes).
    pub header_timeout: Duration,
    /// Bound on each write to a client that reads nothing of its answer.
    pub send_timeout: Duration,
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
    /// The fleet registry, when releases find instances there.
    pub fleet: Option<FleetSettings>,
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
    /// numbers; empty without a file), `origin` names it in errors. A value
    /// a flag set has an empty span (a value in a file never has): its
    /// errors say so instead of giving a line.
    pub fn resolve(self, origin: &Path, text: &str) -> Result<Settings, ConfigError> {
        let line_of = |span: std::ops::Range<usize>| {
            if text.is_empty() {
                String::new()
            } else if span.is_empty() {
                "set by a flag: ".to_string()
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
        // A zero bound fails every request (or, for the health interval,
        // stops health checking): refused, naming the key.
        let above_zero = |key: String, d: Duration| {
            if d.is_zero() {
                Err(invalid(format!("{key}: must be above zero")))
            } else {
                Ok(())
            }
        };
        above_zero("timeout".into(), default_timeout)?;
        let mut routes = Vec::new();
        let mut matcher = matchit::Router::new();
        for (i, r) in self.routes.iter().enumerate() {
            matcher
                .insert(r.template.as_str(), i)
                .map_err(|e| invalid(format!("route.template: `{}`: {e}", r.template)))?;
            let timeout = r.timeout.unwrap_or(default_timeout);
            above_zero(format!("route.timeout of `{}`", r.template), timeout)?;
            routes.push(Route {
                template: r.template.clone(),
                timeout,
            });
        }
        let spans: Vec<_> = self.releases.iter().map(|r| r.span()).collect();
        let mut releases: Vec<ReleasePool> = Vec::with_capacity(self.releases.len());
        for r in self.releases {
            let r = r.into_inner();
            let fleet = match (&r.fleet, r.version) {
                (Some(f), Some(v)) if !*f.get_ref() => {
                    return Err(invalid(format!(
                        "{}release.version: `{}` finds instances in the fleet registry, but fleet = false",
                        line_of(f.span()),
                        v.get_ref()
                    )))
                }
                (_, Some(v)) if v.get_ref().trim().is_empty() => {
                    return Err(invalid(format!(
                        "{}release.version: empty",
                        line_of(v.span())
                    )))
                }
                (_, Some(v)) => Some((v.span(), v.into_inner())),
                (Some(f), None) if *f.get_ref() => Some((f.span(), r.name.clone())),
                _ => None,
            };
            if let Some((span, _)) = &fleet {
                if self.fleet.is_none() {
                    return Err(invalid(format!(
                        "{}release.fleet: release `{}` finds its instances in the fleet registry, but there is no [fleet] section naming its database",
                        line_of(span.clone()),
                        r.name
                    )));
                }
            }
            releases.push(ReleasePool {
                name: r.name,
                upstreams: r.upstreams,
                fleet: fleet.map(|(_, version)| FleetSource { version }),
            });
        }
        let fleet = match self.fleet {
            None => None,
            Some(f) => Some(resolve_fleet(f, &line_of, &invalid)?),
        };
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
                TableError::BadHeaderName { field, .. } if field.starts_with("cohort") => "",
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
        // Longer than the idle timeout of the load balancers usually in front
        // (AWS ALB: 60 s), so they never reuse a connection being closed.
        let header_timeout = self.header_timeout.unwrap_or(Duration::from_secs(75));
        above_zero("header_timeout".into(), header_timeout)?;
        // nginx's send_timeout.
        let send_timeout = self.send_timeout.unwrap_or(Duration::from_secs(60));
        above_zero("send_timeout".into(), send_timeout)?;
        above_zero("health.interval".into(), health.interval)?;
        above_zero("health.timeout".into(), health.timeout)?;
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
            header_timeout,
            send_timeout,
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
            fleet,
        })
    }
}

/// `[fleet]` checked: exactly one of `database` and `database_env`, a URL
/// that parses (shown redacted), durations that make sense.
fn resolve_fleet(
    f: Spanned<FleetSection>,
    line_of: &dyn Fn(std::ops::Range<usize>) -> String,
    invalid: &dyn Fn(String) -> ConfigError,
) -> Result<FleetSettings, ConfigError> {
    let at = line_of(f.span());
    let f = f.into_inner();
    let (raw, key, span) = match (f.database, f.database_env) {
        (Some(d), None) => (d.get_ref().clone(), "fleet.database", d.span()),
        (None, Some(e)) => {
            let raw = std::env::var(e.get_ref()).map_err(|_| {
                invalid(format!(
                    "{}fleet.database_env: the environment variable {} is not set",
                    line_of(e.span()),
                    e.get_ref()
                ))
            })?;
            (raw, "fleet.database_env", e.span())
        }
        (Some(d), Some(_)) => {
            return Err(invalid(format!(
                "{}fleet: set database or database_env, not both",
                line_of(d.span())
            )))
        }
        (None, None) => {
            return Err(invalid(format!(
                "{at}fleet.database: missing; name the database holding the fleet registry (or database_env)"
            )))
        }
    };
    let database = capstan_migrate::DatabaseUrl::parse(&raw)
        .map_err(|e| invalid(format!("{}{key}: {e}", line_of(span))))?;
    let refresh = f.refresh.unwrap_or(Duration::from_secs(2));
    let timeout = f.timeout.unwrap_or(Duration::from_secs(2));
    let ttl = f.ttl.unwrap_or(capstan_migrate::DEFAULT_TTL);
    for (name, d) in [("refresh", refresh), ("timeout", timeout), ("ttl", ttl)] {
        if d.is_zero() {
            return Err(invalid(format!("{at}fleet.{name}: must be above zero")));
        }
    }
    Ok(FleetSettings {
        database,
        service: f
            .service
            .unwrap_or_else(|| capstan_migrate::DEFAULT_SERVICE.to_string()),
        app: f.app,
        refresh,
        timeout,
        ttl,
    })
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
        let e = err(&GOOD.replace("timeout = \"2s\"", "timeout = \"0s\""));
        assert!(
            e.contains("route.timeout of `/users/{id}`: must be above zero"),
            "{e}"
        );
        let e = err(&format!("timeout = \"0ms\"\n{GOOD}"));
        assert!(e.contains("timeout: must be above zero"), "{e}");
        let e = err(&format!("header_timeout = \"0s\"\n{GOOD}"));
        assert!(e.contains("header_timeout: must be above zero"), "{e}");
        for key in ["interval", "timeout"] {
            let e = err(&format!("{GOOD}\n[health]\n{key} = \"0s\"\n"));
            assert!(
                e.contains(&format!("health.{key}: must be above zero")),
                "{e}"
            );
        }
        let e = err(&GOOD.replace("name = \"x-internal\"", "name = \"x internal\""));
        assert!(
            e.ends_with("cohort.headers: `x internal` is not a valid header name"),
            "{e}"
        );
        let e = err(&GOOD.replace("header = \"x-user\"", "header = \"x-user:\""));
        assert!(e.contains("routing.sticky.header: `x-user:`"), "{e}");
        let e = err(&GOOD.replace("[routing]", "[routing"));
        assert!(e.contains("line 20"), "{e}");
        let e = err(&GOOD.replace("percent = 5", "percent = 5, extra = 1"));
        assert!(e.contains("line 24") && e.contains("extra"), "{e}");
    }

    const FLEET: &str = r#"
[fleet]
database = "postgres://capstan:hunter2@db.internal/chirps"
service = "chirps"
refresh = "2s"

[[release]]
name = "1.0.0"
upstreams = ["127.0.0.1:8081"]

[[release]]
name = "2.0.0"
fleet = true

[routing]
weights = { "1.0.0" = 90, "2.0.0" = 10 }
"#;

    #[test]
    fn fleet_releases_resolve_and_errors_name_the_key_and_line() {
        let s = parse(Path::new("proxy.toml"), FLEET).unwrap();
        let f = s.fleet.as_ref().unwrap();
        assert_eq!(
            (f.service.as_str(), f.refresh),
            ("chirps", Duration::from_secs(2))
        );
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
        let r = &s.table.releases[1];
        assert_eq!(r.fleet.as_ref().unwrap().version, "2.0.0");
        assert!(r.upstreams.is_empty());
        let s = parse(
            Path::new("proxy.toml"),
            &FLEET.replace("fleet = true", "version = \"2.0.0-rc.1\""),
        )
        .unwrap();
        assert_eq!(
            s.table.releases[1].fleet.as_ref().unwrap().version,
            "2.0.0-rc.1"
        );

        let no_section = &FLEET[FLEET.find("\n[[release]]").unwrap()..];
        let e = err(no_section);
        assert!(
            e.contains("line 8") && e.contains("release.fleet") && e.contains("[fleet]"),
            "{e}"
        );
        let e = err(&FLEET.replace("fleet = true", "fleet = false\nversion = \"2.0.0\""));
        assert!(
            e.contains("line 13") && e.contains("release.version"),
            "{e}"
        );
        let e = err(&FLEET.replace("refresh = \"2s\"", "refresh = \"often\""));
        assert!(e.contains("line 5") && e.contains("often"), "{e}");
        let e = err(&FLEET.replace("refresh = \"2s\"", "refresh = \"0s\""));
        assert!(e.contains("fleet.refresh"), "{e}");
        let e = err(&FLEET.replace(
            "postgres://capstan:hunter2@db.internal/chirps",
            "mysql://u:hunter2@x/y",
        ));
        assert!(
            e.contains("line 3") && e.contains("fleet.database") && !e.contains("hunter2"),
            "{e}"
        );
        let e = err(&FLEET.replace(
            "database =",
            "database_env = \"CAPSTAN_TEST_UNSET_VAR\"\ndatabase =",
        ));
        assert!(e.contains("not both"), "{e}");
        let e = err(&FLEET.replace(
            "database = \"postgres://capstan:hunter2@db.internal/chirps\"",
            "database_env = \"CAPSTAN_TEST_UNSET_VAR\"",
        ));
        assert!(
            e.contains("line 3") && e.contains("CAPSTAN_TEST_UNSET_VAR"),
            "{e}"
        );
        let e = err(&FLEET.replace("service = \"chirps\"", "servce = \"chirps\""));
        assert!(e.contains("line 4") && e.contains("servce"), "{e}");
    }
}
