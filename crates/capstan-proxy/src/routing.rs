//! The routing table as data, and the pure function that routes one request.
//!
//! Order of evaluation: cohort rules (a header, a cookie or a client network
//! marks a request `internal`, and internal requests go to the release the
//! table names for them), then a sticky weighted split, then the mirror.
//!
//! The split hashes the user key into one of 10,000 buckets and walks the
//! releases **in table order**, each covering `weight × 100` buckets, so the
//! first release covers the bottom of the range and the last the top. When
//! the last release (the canary) grows at the expense of the ones before it,
//! its range only extends downwards: a user on the canary stays there, and a
//! user on the stable release either stays or moves to the canary, never back.

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Number of hash buckets a user key falls into; a weight of 1 % is 100 buckets.
pub const BUCKETS: u32 = 10_000;

/// The cookie the proxy sets when the table names no sticky header or cookie.
pub const DEFAULT_STICKY_COOKIE: &str = "capstan_uid";

/// Everything that decides where a request goes. Published to the proxy
/// through a `tokio::sync::watch` channel; replaced whole, never mutated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingTable {
    /// The releases and their pools, in hash-range order: list the stable
    /// release first and the canary last.
    pub releases: Vec<ReleasePool>,
    /// What marks a request internal.
    #[serde(default)]
    pub cohort: CohortRules,
    /// The release internal requests go to (none: they follow the weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<String>,
    /// Percent of public traffic per release; releases not named get 0. Sums to 100.
    pub weights: BTreeMap<String, u32>,
    /// Where the user key comes from.
    #[serde(default)]
    pub sticky: Sticky,
    /// A fraction of requests copied to a shadow release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorRule>,
}

/// One release and the upstream addresses that serve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePool {
    /// The release name (its version, `2.0.0`).
    pub name: String,
    /// `host:port` of each instance configured by hand (always in the pool).
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Instances found in the fleet registry: the live instances of this
    /// version join the pool (none: the pool is `upstreams` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSource>,
}

/// Which registered instances serve a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSource {
    /// The application version the instances registered with (`2.0.0`).
    pub version: String,
}

/// Rules that mark a request internal; any one matching is enough.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohortRules {
    /// Request headers (name, and the value it must have; any value when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Match>,
    /// Request cookies (name, and the value it must have; any value when absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<Match>,
    /// Client networks (`10.0.0.0/8`, `127.0.0.1/32`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<IpNet>,
}

/// A header or cookie to look for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Header or cookie name (headers case-insensitively).
    pub name: String,
    /// Required value; any value when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Where the sticky user key comes from: a request header, a cookie, or
/// (neither set) the `capstan_uid` cookie, which the proxy sets when missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// Request header holding the user key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Cookie holding the user key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// Copy `percent` % of requests to `release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorRule {
    /// The shadow release (it needs a pool; a weight is not needed).
    pub release: String,
    /// 0–100.
    pub percent: u32,
}

/// Why a routing table is refused. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// `releases` is empty.
    #[error("releases: at least one release is needed")]
    NoReleases,
    /// A release name appears twice.
    #[error("releases: `{0}` is listed twice")]
    DuplicateRelease(String),
    /// A release has no upstreams and no fleet source.
    #[error("releases.{0}.upstreams: the pool is empty (no upstreams and no fleet source)")]
    EmptyPool(String),
    /// An upstream address is not `host:port`.
    #[error("releases.{release}.upstreams: `{addr}` is not host:port")]
    BadAddress {
        /// The release.
        release: String,
        /// The address.
        addr: String,
    },
    /// One address serves two releases (or is listed twice).
    #[error("releases: `{addr}` is in the pools of both `{a}` and `{b}`; pools must not overlap")]
    OverlappingPools {
        /// The address.
        addr: String,
        /// First release.
        a: String,
        /// Second release.
        b: String,
    },
    /// A field names a release that is not in `releases`.
    #[error("{field}: no release `{release}` (releases: {known})")]
    UnknownRelease {
        /// The field (`weights`, `internal`, `mirror.release`).
        field: &'static str,
        /// The name given.
        release: String,
        /// The names known.
        known: String,
    },
    /// Weights do not sum to 100.
    #[error("weights: sum to {0}, must be 100")]
    WeightSum(u64),
    /// Mirror percent above 100.
    #[error("mirror.percent: {0} is above 100")]
    MirrorPercent(u32),
    /// Both a sticky header and cookie.
    #[error("sticky: name a header or a cookie, not both")]
    StickyBoth,
    /// An empty header or cookie name.
    #[error("{0}: empty name")]
    EmptyName(&'static str),
    /// A header name no request can carry.
    #[error("{field}: `{name}` is not a valid header name")]
    BadHeaderName {
        /// Where it was given.
        field: &'static str,
        /// The name.
        name: String,
    },
}

impl RoutingTable {
    /// Checks every rule; a table that passes can be routed with.
    pub fn validate(&self) -> Result<(), TableError> {
        if self.releases.is_empty() {
            return Err(TableError::NoReleases);
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, r) in self.releases.iter().enumerate() {
            if self.releases[..i].iter().any(|o| o.name == r.name) {
                return Err(TableError::DuplicateRelease(r.name.clone()));
            }
            if r.upstreams.is_empty() && r.fleet.is_none() {
                return Err(TableError::EmptyPool(r.name.clone()));
            }
            for addr in &r.upstreams {
                if !is_host_port(addr) {
                    return Err(TableError::BadAddress {
                        release: r.name.clone(),
                        addr: addr.clone(),
                    });
                }
                if let Some(prev) = seen.insert(addr, &r.name) {
                    return Err(TableError::OverlappingPools {
                        addr: addr.clone(),
                        a: prev.to_string(),
                        b: r.name.clone(),
                    });
                }
            }
        }
        let known = || {
            self.releases
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let check = |field: &'static str, name: &str| {
            if self.index_of(name).is_none() {
                Err(TableError::UnknownRelease {
                    field,
                    release: name.to_string(),
                    known: known(),
                })
            } else {
                Ok(())
            }
        };
        for name in self.weights.keys() {
            check("weights", name)?;
        }
        let sum: u64 = self.weights.values().map(|&w| u64::from(w)).sum();
        if sum != 100 {
            return Err(TableError::WeightSum(sum));
        }
        if let Some(internal) = &self.internal {
            check("internal", internal)?;
        }
        if let Some(m) = &self.mirror {
            check("mirror.release", &m.release)?;
            if m.percent > 100 {
                return Err(TableError::MirrorPercent(m.percent));
            }
        }
        if self.sticky.header.is_some() && self.sticky.cookie.is_some() {
            return Err(TableError::StickyBoth);
        }
        if self.sticky.header.as_deref() == Some("") || self.sticky.cookie.as_deref() == Some("") {
            return Err(TableError::EmptyName("sticky"));
        }
        if self.cohort.headers.iter().any(|m| m.name.is_empty()) {
            return Err(TableError::EmptyName("cohort.headers"));
        }
        // A name no header can have would never match: the sticky split
        // would fall back to the request, the cohort rule never apply.
        let header_names = self.sticky.header.iter().map(|n| ("sticky.header", n));
        let header_names = header_names.chain(
            self.cohort
                .headers
                .iter()
                .map(|m| ("cohort.headers", &m.name)),
        );
        for (field, name) in header_names {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(TableError::BadHeaderName {
                    field,
                    name: name.clone(),
                });
            }
        }
        if self.cohort.cookies.iter().any(|m| m.name.is_empty()) {
            return Err(TableError::EmptyName("cohort.cookies"));
        }
        Ok(())
    }

    /// Position of release `name` in [`RoutingTable::releases`].
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.releases.iter().position(|r| r.name == name)
    }

    /// The user key a request carries, per [`RoutingTable::sticky`].
    pub fn user_key<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        if let Some(h) = &self.sticky.header {
            return headers
                .get(h.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty());
        }
        cookie(headers, self.sticky_cookie()).filter(|v| !v.is_empty())
    }

    /// The cookie the user key is read from, when it is a cookie.
    pub fn sticky_cookie(&self) -> &str {
        self.sticky
            .cookie
            .as_deref()
            .unwrap_or(DEFAULT_STICKY_COOKIE)
    }

    /// Whether the proxy sets the sticky cookie itself (no header or cookie named).
    pub fn sets_cookie(&self) -> bool {
        self.sticky.header.is_none() && self.sticky.cookie.is_none()
    }

    /// Whether public traffic is split: more than one release has a weight.
    pub fn splits(&self) -> bool {
        self.weights.values().filter(|&&w| w > 0).nth(1).is_some()
    }

    /// Cumulative upper bucket bound per release, in table order.
    fn bounds(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        let mut acc = 0u32;
        self.releases.iter().enumerate().map(move |(i, r)| {
            acc += self.weights.get(&r.name).copied().unwrap_or(0) * (BUCKETS / 100);
            (i, acc)
        })
    }
}

/// `host:port` that is also a valid URI authority (an IPv6 address in
/// brackets), since requests are sent to it as one.
fn is_host_port(addr: &str) -> bool {
    let Ok(a) = addr.parse::<http::uri::Authority>() else {
        return false;
    };
    a.as_str() == addr
        && !a.host().is_empty()
        && !addr.contains('@')
        && a.port_u16().is_some_and(|p| p != 0)
}

/// The value of cookie `name` in the request's `Cookie` headers. The
/// lines are split as bytes: another cookie's non-ASCII value (set by some
/// other application on the domain) does not hide this one.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            if pair[..eq].trim_ascii() != name.as_bytes() {
                return None;
            }
            let v = std::str::from_utf8(pair[eq + 1..].trim_ascii()).ok()?;
            Some(v.trim_matches('"'))
        })
}

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The client's address, for CIDR cohort rules.
    pub client_ip: Option<IpAddr>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The sticky user key ([`RoutingTable::user_key`], or a fresh one the
    /// caller generated and will set as a cookie).
    pub user_key: Option<&'a str>,
    /// A per-request key (the trace id): decides the split for requests
    /// without a user key, and whether this request is mirrored.
    pub request_key: &'a str,
}

/// Which cohort a request is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cohort {
    /// Matched a cohort rule.
    Internal,
    /// Everyone else.
    Public,
}

impl Cohort {
    /// `internal` or `public`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cohort::Internal => "internal",
            Cohort::Public => "public",
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Index of the release in the table.
    pub release: usize,
    /// The request's cohort.
    pub cohort: Cohort,
    /// Index of the release to mirror to, if this request is mirrored.
    pub mirror: Option<usize>,
}

/// The bucket in `[0, BUCKETS)` a key hashes to (SHA-256, stable across
/// processes and versions).
pub fn bucket(key: &str) -> u32 {
    let d = Sha256::digest(key.as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (n % u64::from(BUCKETS)) as u32
}

/// Routes one request with a validated table. Pure: same table and facts,
/// same decision.
pub fn route(table: &RoutingTable, facts: &RequestFacts<'_>) -> Decision {
    let cohort = if is_internal(&table.cohort, facts) {
        Cohort::Internal
    } else {
        Cohort::Public
    };
    let internal = match (cohort, &table.internal) {
        (Cohort::Internal, Some(name)) => table.index_of(name),
        _ => None,
    };
    let release = internal.unwrap_or_else(|| {
        if !table.splits() {
            // One release takes all public traffic: no key to hash.
            return table
                .bounds()
                .find(|&(_, upper)| upper > 0)
                .map(|(i, _)| i)
                .unwrap_or(0);
        }
        let b = bucket(facts.user_key.unwrap_or(facts.request_key));
        table
            .bounds()
            .find(|&(_, upper)| b < upper)
            .map(|(i, _)| i)
            .unwrap_or(0)
    });
    let mirror = table.mirror.as_ref().and_then(|m| {
        let hit = bucket(&format!("mirror:{}", facts.request_key)) < m.percent * (BUCKETS / 100);
        hit.then(|| table.index_of(&m.release)).flatten()
    });
    Decision {
        release,
        cohort,
        mirror,
    }
}

fn is_internal(rules: &CohortRules, facts: &RequestFacts<'_>) -> bool {
    let value_ok = |want: &Option<String>, got: &str| want.as_deref().is_none_or(|w| w == got);
    rules.headers.iter().any(|m| {
        facts
            .headers
            .get_all(m.name.as_str())
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| value_ok(&m.value, v)))
    }) || rules
        .cookies
        .iter()
        .any(|m| cookie(facts.headers, &m.name).is_some_and(|v| value_ok(&m.value, v)))
        || facts
            .client_ip
            // An IPv4 client of a dual-stack listener arrives as
            // `::ffff:a.b.c.d`; IPv4 rules match it as the IPv4 address, and
            // rules written as mapped addresses match it as it came.
            .is_some_and(|ip| {
                let v4 = ip.to_canonical();
                rules
                    .cidrs
                    .iter()
                    .any(|n| n.contains(&ip) || n.contains(&v4))
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(stable: u32, canary: u32) -> RoutingTable {
        RoutingTable {
            releases: vec![
                ReleasePool {
                    name: "1.0.0".into(),
                    upstreams: vec!["127.0.0.1:1".into()],
                    fleet: None,
                },
                ReleasePool {
                    name: "2.0.0".into(),
                    upstreams: vec!["127.0.0.1:2".into()],
                    fleet: None,
                },
            ],
            cohort: CohortRules {
                headers: vec![Match {
                    name: "x-internal".into(),
                    value: Some("1".into()),
                }],
                cookies: vec![Match {
                    name: "staff".into(),
                    value: None,
                }],
                cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            },
            internal: Some("2.0.0".into()),
            weights: [("1.0.0".into(), stable), ("2.0.0".into(), canary)].into(),
            sticky: Sticky::default(),
            mirror: None,
        }
    }

    fn facts<'a>(h: &'a HeaderMap, user: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            client_ip: Some("192.168.1.1".parse().unwrap()),
            headers: h,
            user_key: Some(user),
            request_key: "r",
        }
    }

    #[test]
    fn cohort_rules_send_internal_requests_to_the_internal_release() {
        let t = table(100, 0);
        t.validate().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(route(&t, &facts(&h, "u")).release, 0);
        h.insert("x-internal", "1".parse().unwrap());
        let d = route(&t, &facts(&h, "u"));
        assert_eq!((d.release, d.cohort), (1, Cohort::Internal));
        let mut h = HeaderMap::new();
        h.insert("x-internal", "0".parse().unwrap());
        assert_eq!(route(&t, &facts(&h, "u")).cohort, Cohort::Public);
        h.insert("cookie", "a=b; staff=anyone".parse().unwrap());
        assert_eq!(route(&t, &facts(&h, "u")).release, 1);
        let h = HeaderMap::new();
        let mut f = facts(&h, "u");
        f.client_ip = Some("10.1.2.3".parse().unwrap());
        assert_eq!(route(&t, &f).cohort, Cohort::Internal);
        // The same client on a dual-stack listener.
        f.client_ip = Some("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(route(&t, &f).cohort, Cohort::Internal);
        f.client_ip = Some("::ffff:11.1.2.3".parse().unwrap());
        assert_eq!(route(&t, &f).cohort, Cohort::Public);
        // A rule written as mapped addresses still matches such a client.
        let mut mapped = t.clone();
        mapped.cohort.cidrs = vec!["::ffff:11.0.0.0/104".parse().unwrap()];
        assert_eq!(route(&mapped, &f).cohort, Cohort::Internal);
    }

    #[test]
    fn a_cookie_is_found_beside_another_with_a_non_ascii_value() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            http::HeaderValue::from_bytes(
                "theme=caf\u{e9}; staff=yes; capstan_uid=\"u1\"".as_bytes(),
            )
            .unwrap(),
        );
        assert_eq!(cookie(&h, "staff"), Some("yes"));
        assert_eq!(cookie(&h, "capstan_uid"), Some("u1"));
        assert_eq!(cookie(&h, "theme"), Some("caf\u{e9}"));
        assert_eq!(cookie(&h, "them"), None);
        let t = table(100, 0);
        assert_eq!(route(&t, &facts(&h, "u")).cohort, Cohort::Internal);
    }

    #[test]
    fn an_upstream_is_refused_unless_it_is_a_uri_authority_with_a_port() {
        for ok in ["127.0.0.1:8080", "[::1]:8080", "chirpy-v2.internal:80"] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "::1:8080",
            "a:b:80",
            "[::1:8080",
            "localhost",
            "localhost:0",
            "user@host:80",
            "host:80/x",
            ":80",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut t = table(90, 5);
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "weights: sum to 95, must be 100"
        );
        t = table(90, 10);
        t.releases[1].upstreams = vec!["127.0.0.1:1".into()];
        assert!(matches!(
            t.validate(),
            Err(TableError::OverlappingPools { .. })
        ));
        t = table(90, 10);
        t.releases[1].upstreams.clear();
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "releases.2.0.0.upstreams: the pool is empty (no upstreams and no fleet source)"
        );
        t = table(90, 10);
        t.weights.insert("9.9.9".into(), 0);
        assert!(t
            .validate()
            .unwrap_err()
            .to_string()
            .contains("no release `9.9.9`"));
        t = table(90, 10);
        t.releases[0].upstreams = vec!["localhost".into()];
        assert!(matches!(t.validate(), Err(TableError::BadAddress { .. })));
        t = table(90, 10);
        t.cohort.headers[0].name = "x-internal:".into();
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "cohort.headers: `x-internal:` is not a valid header name"
        );
        t = table(90, 10);
        t.sticky.header = Some("x user".into());
        t.sticky.cookie = None;
        assert!(matches!(
            t.validate(),
            Err(TableError::BadHeaderName {
                field: "sticky.header",
                ..
            })
        ));
    }

    #[test]
    fn a_split_lands_near_its_weights() {
        let t = table(90, 10);
        let h = HeaderMap::new();
        let canary = (0..10_000)
            .filter(|i| route(&t, &facts(&h, &format!("user-{i}"))).release == 1)
            .count();
        assert!((800..=1200).contains(&canary), "{canary}");
    }

    #[test]
    fn mirror_hits_about_its_percent() {
        let mut t = table(100, 0);
        t.mirror = Some(MirrorRule {
            release: "2.0.0".into(),
            percent: 5,
        });
        let h = HeaderMap::new();
        let n = (0..10_000)
            .filter(|i| {
                let key = format!("trace-{i}");
                let f = RequestFacts {
                    request_key: &key,
                    ..facts(&h, "u")
                };
                route(&t, &f).mirror == Some(1)
            })
            .count();
        assert!((350..=650).contains(&n), "{n}");
    }

    proptest! {
        /// While the canary's weight only grows, a user on the canary stays
        /// there, and a user on the stable release stays or moves to the canary.
        #[test]
        fn growing_canary_never_moves_a_user_back(
            user in "[a-zA-Z0-9_-]{1,40}",
            mut steps in proptest::collection::vec(0u32..=100, 1..8),
        ) {
            steps.sort_unstable();
            let h = HeaderMap::new();
            let mut on_canary = false;
            for w in steps {
                let d = route(&table(100 - w, w), &facts(&h, &user));
                if on_canary {
                    prop_assert_eq!(d.release, 1);
                }
                on_canary = d.release == 1;
            }
        }

        /// Every release named in the bounds gets exactly its share of buckets.
        #[test]
        fn buckets_per_release_match_weights(w in 0u32..=100) {
            let t = table(100 - w, w);
            let b: Vec<_> = t.bounds().collect();
            prop_assert_eq!(b, vec![(0, (100 - w) * 100), (1, BUCKETS)]);
        }
    }
}
