//! Header work of the request path: hop-by-hop stripping, trace context,
//! `X-Forwarded-For`, user-key hashing and `x-capstan-*` event fields.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Request;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

/// Prefix of response headers that become event fields (and never reach the client).
pub const FIELD_HEADER_PREFIX: &str = "x-capstan-";

/// Whether `k` is a hop-by-hop field other than `Connection` and `Upgrade`
/// (RFC 9110 §7.6.1), or `Expect`. Standard names compare as enum values, no
/// hashing.
///
/// `Expect: 100-continue` was answered on the client's side already (the
/// client is told to continue when its body is first read); passed on, it
/// would have the upstream send a 100 of its own in the middle of the upload.
fn is_hop(k: &HeaderName) -> bool {
    *k == header::TE
        || *k == header::EXPECT
        || *k == header::TRAILER
        || *k == header::TRANSFER_ENCODING
        || *k == header::PROXY_AUTHENTICATE
        || *k == header::PROXY_AUTHORIZATION
        || is_hop_str(k.as_str())
}

/// The hop-by-hop names without a standard constant, compared as text.
fn is_hop_str(name: &str) -> bool {
    name.eq_ignore_ascii_case("keep-alive") || name.eq_ignore_ascii_case("proxy-connection")
}

/// The tokens of every `Connection` field line, trimmed, empty ones left out.
pub(crate) fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether a `Connection` field line lists `token` (case-insensitive).
pub(crate) fn connection_lists(h: &HeaderMap, token: &str) -> bool {
    connection_tokens(h).any(|t| t.eq_ignore_ascii_case(token))
}

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1).
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let connection_or_upgrade = |k: &HeaderName| *k == header::CONNECTION || *k == header::UPGRADE;
    // Most messages carry none: one pass over their few names, instead of a
    // lookup per hop-by-hop name on every request and response.
    if !h.keys().any(|k| connection_or_upgrade(k) || is_hop(k)) {
        return;
    }
    // The names present that go (usually just `Connection`), then the other
    // names Connection lists, in any of its field lines; a removal for each.
    let mut doomed: Vec<HeaderName> = h
        .keys()
        .filter(|k| is_hop(k) || (!keep_upgrade && connection_or_upgrade(k)))
        .cloned()
        .collect();
    for token in connection_tokens(h) {
        if is_hop_str(token)
            || token.eq_ignore_ascii_case("connection")
            || (token.eq_ignore_ascii_case("upgrade")
                && (keep_upgrade || doomed.contains(&header::UPGRADE)))
        {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
            if !is_hop(&n) && h.contains_key(&n) && !doomed.contains(&n) {
                doomed.push(n);
            }
        }
    }
    for n in doomed {
        h.remove(n);
    }
}

/// Appends the low `digits` hex digits of `v`, lower case, zero-padded: the
/// request path's ids without the formatting machinery.
pub(crate) fn push_hex(out: &mut String, v: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// 32 random lower-case hex digits: a new trace id or sticky-cookie user id.
pub(crate) fn random_id() -> String {
    let mut id = String::with_capacity(32);
    push_hex(&mut id, rand::random::<u128>(), 32);
    id
}

/// Whether `req` asks for a WebSocket upgrade, the one upgrade the proxy
/// tunnels. Any other (`h2c` above all: every later request on the tunnel
/// would skip routing, events and the stripping of `x-capstan-*` fields)
/// is not an upgrade here: the request goes on as an ordinary one, its
/// `Upgrade` removed with the other hop-by-hop fields, which RFC 9110
/// (7.8) allows a server to ignore.
pub(crate) fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().get_all(header::UPGRADE).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
            })
        })
        && connection_lists(req.headers(), "upgrade")
}

/// The trace id and trace flags of an incoming W3C `traceparent`, if
/// well-formed: lowercase hex, neither id all zeros, and nothing after the
/// flags in version 00 (a later version may add fields).
pub fn parse_traceparent(v: &str) -> Option<(&str, &str)> {
    let mut parts = v.split('-');
    let (ver, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (hex(ver, 2)
        && ver != "ff"
        && (ver != "00" || parts.next().is_none())
        && hex(trace, 32)
        && trace != "00000000000000000000000000000000"
        && hex(span, 16)
        && span != "0000000000000000"
        && hex(flags, 2))
    .then_some((trace, flags))
}

/// `sha256(salt + key)`, first 16 hex digits: the user key as events store it.
pub fn hash_user(salt: &str, key: &str) -> String {
    let d = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    let mut out = String::with_capacity(16);
    push_hex(&mut out, u128::from(u64::from_be_bytes(first)), 16);
    out
}

/// The client at the other end of one connection, as each of its requests
/// forwards it.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The client's address.
    pub(crate) addr: SocketAddr,
    /// Its IP as an `x-forwarded-for` value: formatted once per connection,
    /// not once per request.
    forwarded_for: HeaderValue,
}

impl Peer {
    /// The peer at `addr`.
    pub(crate) fn new(addr: SocketAddr) -> Peer {
        let ip = addr.ip().to_string();
        let forwarded_for = HeaderValue::from_maybe_shared(bytes::Bytes::from(ip.into_bytes()))
            .expect("an IP address is a valid header value");
        Peer {
            addr,
            forwarded_for,
        }
    }
}

/// Adds the peer to `x-forwarded-for`: after what the request already lists,
/// or alone when it lists nothing or something not plain text.
pub(crate) fn append_forwarded_for(h: &mut HeaderMap, peer: &Peer) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    let Some(prev) = h.get(&XFF).filter(|v| v.to_str().is_ok()) else {
        h.insert(XFF, peer.forwarded_for.clone());
        return;
    };
    let ip = peer.forwarded_for.as_bytes();
    let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
    v.extend_from_slice(prev.as_bytes());
    v.extend_from_slice(b", ");
    v.extend_from_slice(ip);
    // The vector's own buffer becomes the value: no copy.
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(v)) {
        h.insert(XFF, v);
    }
}

/// Moves `x-capstan-<name>` headers into `fields` (keyed by `<name>`).
pub fn take_fields(h: &mut HeaderMap, fields: &mut std::collections::BTreeMap<String, String>) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with(FIELD_HEADER_PREFIX))
        .cloned()
        .collect();
    for n in names {
        let key = n.as_str()[FIELD_HEADER_PREFIX.len()..].to_string();
        let vals: Vec<String> = h
            .get_all(&n)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        h.remove(&n);
        if !key.is_empty() {
            fields.insert(key, vals.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_zero_padded_lower_case_hex() {
        let mut s = String::new();
        push_hex(&mut s, 0xab, 4);
        push_hex(&mut s, u128::MAX, 32);
        assert_eq!(s, format!("00ab{:032x}", u128::MAX));
    }

    /// The names left, sorted, after stripping a map of `fields` (appended
    /// in order).
    fn left_after(fields: &[(&'static str, &str)], keep_upgrade: bool) -> Vec<String> {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(*name, value.parse().unwrap());
        }
        strip_hop_by_hop(&mut h, keep_upgrade);
        let mut left: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort_unstable();
        left
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_lists_are_stripped() {
        let listed = [
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("content-type", "text/plain"),
        ];
        assert_eq!(left_after(&listed, false), ["content-type"]);

        let upgrade = [("connection", "upgrade"), ("upgrade", "websocket")];
        assert_eq!(
            left_after(&upgrade, true),
            ["connection", "upgrade"],
            "an upgrade keeps its Connection and Upgrade"
        );

        let two_lines = [
            ("connection", "keep-alive"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("host", "a"),
        ];
        assert_eq!(
            left_after(&two_lines, false),
            ["host"],
            "a name listed on a second Connection line"
        );

        let upgrade_and_more = [
            ("connection", "Upgrade, X-Secret"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("proxy-connection", "keep-alive"),
            ("host", "a"),
        ];
        assert_eq!(
            left_after(&upgrade_and_more, true),
            ["connection", "host", "upgrade"]
        );

        assert_eq!(left_after(&[("host", "a")], false), ["host"]);
    }

    #[test]
    fn connection_tokens_come_from_every_line() {
        let mut h = HeaderMap::new();
        h.append("connection", "keep-alive, ,".parse().unwrap());
        h.append("connection", " Upgrade".parse().unwrap());
        assert_eq!(
            connection_tokens(&h).collect::<Vec<_>>(),
            ["keep-alive", "Upgrade"]
        );
        assert!(connection_lists(&h, "upgrade"));
        assert!(!connection_lists(&h, "close"));
    }

    #[test]
    fn forwarded_for_appends_the_client() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &Peer::new("10.0.0.2:5000".parse().unwrap()));
        assert_eq!(h["x-forwarded-for"], "10.0.0.2");
        append_forwarded_for(&mut h, &Peer::new("[::1]:5000".parse().unwrap()));
        assert_eq!(h["x-forwarded-for"], "10.0.0.2, ::1");
        // A list that is not plain text is not passed on.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        append_forwarded_for(&mut h, &Peer::new("10.0.0.3:5000".parse().unwrap()));
        assert_eq!(h["x-forwarded-for"], "10.0.0.3");
    }

    #[test]
    fn traceparent_is_parsed_strictly() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(t),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "01"))
        );
        // The caller's flags (here: not sampled) are kept.
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00"))
        );
        for bad in [
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        // A later version may carry more fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn capstan_headers_become_fields() {
        let mut h = HeaderMap::new();
        h.insert("x-capstan-plan", "pro".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        let mut f = Default::default();
        take_fields(&mut h, &mut f);
        assert_eq!(f.get("plan").map(String::as_str), Some("pro"));
        assert!(!h.contains_key("x-capstan-plan"));
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn user_hashes_hide_the_key() {
        let h = hash_user("", "alice");
        // The first 8 bytes of sha256("alice"), as hex.
        assert_eq!(h, "2bd806c97f0e00af");
        assert_eq!(h.len(), 16);
        assert!(!h.contains("alice"));
        assert_ne!(h, hash_user("salt", "alice"));
    }
}
