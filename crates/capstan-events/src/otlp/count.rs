//! Counting an export's spans before it is decoded: a body within the size
//! limit can hold millions of empty spans that decode to gigabytes, so the
//! receiver counts them on the wire (protobuf) or with a visitor that skips
//! every value (JSON), and refuses too many before decoding anything.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::MAX_SPANS_PER_REQUEST;

/// What an export carries, counted before it is decoded.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Counted {
    spans: usize,
    /// `ResourceSpans` and `ScopeSpans`: empty ones are two bytes of
    /// protobuf too, and some 100 bytes decoded.
    groups: usize,
}

impl Counted {
    /// Why an export this size is refused, if it is.
    pub(super) fn over_limit(&self) -> Option<String> {
        let max = MAX_SPANS_PER_REQUEST;
        if self.spans > max {
            Some(format!(
                "{} spans in one export, more than the {max} a request may carry; \
                 send smaller batches",
                self.spans
            ))
        } else if self.groups > max {
            Some(format!(
                "{} resource and scope span groups in one export, more than the {max} \
                 a request may carry; send smaller batches",
                self.groups
            ))
        } else {
            None
        }
    }
}

// Counting protobuf by hand: prost decodes a message whole, into its types,
// and has no way to count a repeated field's elements without decoding
// them. These few functions walk the wire format (keys, varints, lengths)
// and allocate nothing. Their errors are the decoder's for the same bytes.

/// A base-128 varint from the front of `buf`.
fn varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or("buffer underflow")?;
        *buf = rest;
        if i == 9 && b > 1 {
            break; // more than 64 bits
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err("invalid varint")
}

/// A field's key from the front of `buf`: its number and wire type.
fn key(buf: &mut &[u8]) -> Result<(u64, u8), String> {
    let key = varint(buf)?;
    if key > u64::from(u32::MAX) {
        return Err(format!("invalid key value: {key}"));
    }
    let wire = (key & 7) as u8;
    if wire > 5 {
        return Err(format!("invalid wire type value: {wire}"));
    }
    if key >> 3 == 0 {
        return Err("invalid tag value: 0".into());
    }
    Ok((key >> 3, wire))
}

/// The bytes of a length-delimited field whose length is at the front of `buf`.
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let len = varint(buf)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= buf.len())
        .ok_or("buffer underflow")?;
    let (bytes, rest) = buf.split_at(len);
    *buf = rest;
    Ok(bytes)
}

/// Skips the value of field `number` of wire type `wire` (a group whole,
/// nested up to prost's recursion limit of 100).
fn skip(number: u64, wire: u8, buf: &mut &[u8], depth: u32) -> Result<(), String> {
    let fixed = |buf: &mut &[u8], n: usize| {
        *buf = buf.get(n..).ok_or("buffer underflow")?;
        Ok::<_, String>(())
    };
    match wire {
        0 => varint(buf).map(drop)?,
        1 => fixed(buf, 8)?,
        2 => delimited(buf).map(drop)?,
        3 => loop {
            if depth >= 100 {
                return Err("recursion limit reached".into());
            }
            let (n, w) = key(buf)?;
            if w == 4 {
                if n != number {
                    return Err("unexpected end group tag".into());
                }
                break;
            }
            skip(n, w, buf, depth + 1)?;
        },
        4 => return Err("unexpected end group tag".into()),
        _ => fixed(buf, 4)?,
    }
    Ok(())
}

/// Calls `each` with the bytes of every element of the repeated message
/// field `number` of the message `msg`, skipping its other fields.
fn each_element(
    mut msg: &[u8],
    number: u64,
    mut each: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    while !msg.is_empty() {
        let (n, wire) = key(&mut msg)?;
        if n != number {
            skip(n, wire, &mut msg, 0)?;
        } else if wire == 2 {
            each(delimited(&mut msg)?)?;
        } else {
            return Err(format!(
                "invalid wire type value {wire} for field {n} (expected 2, length-delimited)"
            ));
        }
    }
    Ok(())
}

/// Counts the spans of a protobuf `ExportTraceServiceRequest` without
/// decoding it: `resource_spans` (1) → `scope_spans` (2) → `spans` (2).
pub(super) fn count_protobuf(body: &[u8]) -> Result<Counted, String> {
    let mut c = Counted::default();
    each_element(body, 1, |resource| {
        c.groups += 1;
        each_element(resource, 2, |scope| {
            c.groups += 1;
            each_element(scope, 2, |_span| {
                c.spans += 1;
                Ok(())
            })
        })
    })?;
    Ok(c)
}

/// Counts the spans of an OTLP/JSON `ExportTraceServiceRequest` without
/// decoding it: `resourceSpans[].scopeSpans[].spans[]`, every other value
/// skipped as [`IgnoredAny`], nothing allocated a span. The names are the
/// decoder's (camelCase only: it ignores `resource_spans` as an unknown
/// field, and so does the count).
pub(super) fn count_json(body: &[u8]) -> Result<Counted, serde_json::Error> {
    let mut c = Counted::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    Message {
        level: Level::Request,
        counted: &mut c,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(c)
}

/// A message on the way to the spans, and the field of it that leads there.
#[derive(Clone, Copy)]
enum Level {
    Request,
    ResourceSpans,
    ScopeSpans,
}

impl Level {
    /// The message's name, its fields in order (serde takes a struct as a
    /// map or as an array of its fields), and the index of the one to follow.
    fn shape(self) -> (&'static str, &'static [&'static str], usize) {
        match self {
            Level::Request => ("ExportTraceServiceRequest", &["resourceSpans"], 0),
            Level::ResourceSpans => ("ResourceSpans", &["resource", "scopeSpans", "schemaUrl"], 1),
            Level::ScopeSpans => ("ScopeSpans", &["scope", "spans", "schemaUrl"], 1),
        }
    }

    /// What the followed field holds a list of (`None`: spans).
    fn inner(self) -> Option<Level> {
        match self {
            Level::Request => Some(Level::ResourceSpans),
            Level::ResourceSpans => Some(Level::ScopeSpans),
            Level::ScopeSpans => None,
        }
    }
}

/// Counts within one message at `level`.
struct Message<'c> {
    level: Level,
    counted: &'c mut Counted,
}

/// Counts the elements of a list of `level` messages (`None`: of spans).
struct List<'c> {
    level: Option<Level>,
    counted: &'c mut Counted,
}

/// Whether a map key is `name`.
struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeyIs {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("field identifier")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

impl<'de> DeserializeSeed<'de> for Message<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let (name, fields, _) = self.level.shape();
        d.deserialize_struct(name, fields, self)
    }
}

impl<'de> Visitor<'de> for Message<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "struct {}", self.level.shape().0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (_, fields, follow) = self.level.shape();
        let mut seen = false;
        while let Some(is_followed) = map.next_key_seed(KeyIs(fields[follow]))? {
            if !is_followed {
                map.next_value::<IgnoredAny>()?;
            } else if seen {
                return Err(de::Error::duplicate_field(fields[follow]));
            } else {
                seen = true;
                map.next_value_seed(List {
                    level: self.level.inner(),
                    counted: &mut *self.counted,
                })?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (_, _, follow) = self.level.shape();
        for i in 0.. {
            let more = if i == follow {
                seq.next_element_seed(List {
                    level: self.level.inner(),
                    counted: &mut *self.counted,
                })?
                .is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                break;
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.level {
            None => {
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    self.counted.spans += 1;
                }
            }
            Some(level) => {
                while seq
                    .next_element_seed(Message {
                        level,
                        counted: &mut *self.counted,
                    })?
                    .is_some()
                {
                    self.counted.groups += 1;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;

    use super::*;

    /// A request with spans, attributes, a resource and unknown fields of
    /// every wire type, as prost writes it and as serde writes it.
    fn sample() -> ExportTraceServiceRequest {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Any::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let span = |n: u8| Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            name: format!("span {n}"),
            kind: 2,
            start_time_unix_nano: 1_790_000_000_000_000_000,
            end_time_unix_nano: 1_790_000_000_001_000_000,
            attributes: vec![kv("http.route", "/a")],
            ..Default::default()
        };
        let scope = |spans: Vec<Span>| ScopeSpans {
            spans,
            schema_url: "s".into(),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", "svc")],
                        ..Default::default()
                    }),
                    scope_spans: vec![scope(vec![span(1), span(2)]), scope(vec![])],
                    schema_url: "u".into(),
                },
                ResourceSpans {
                    scope_spans: vec![scope(vec![span(3)])],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn the_counts_are_what_the_decoders_find() {
        let want = Counted {
            spans: 3,
            groups: 5,
        };
        let req = sample();
        let mut pb = req.encode_to_vec();
        assert_eq!(count_protobuf(&pb).unwrap(), want);
        // Unknown fields of each wire type, a group among them, are skipped
        // by both.
        pb.extend_from_slice(&[0x78, 0x05]); // 15, varint
        pb.extend_from_slice(&[0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]); // 16, fixed64
        pb.extend_from_slice(&[0x8d, 0x01, 1, 2, 3, 4]); // 17, fixed32
        pb.extend_from_slice(&[0x93, 0x01, 0x08, 0x01, 0x94, 0x01]); // 18, a group
        assert_eq!(
            ExportTraceServiceRequest::decode(pb.as_slice()).unwrap(),
            req
        );
        assert_eq!(count_protobuf(&pb).unwrap(), want);

        let json = serde_json::to_vec(&req).unwrap();
        assert_eq!(count_json(&json).unwrap(), want);
        // serde also takes a struct as the array of its fields.
        let arrays = br#"[[null, [[null, [{}, {}], ""]], ""], {"scopeSpans": []}]"#;
        let mut as_array = br#"{"resourceSpans": "#.to_vec();
        as_array.extend_from_slice(arrays);
        as_array.push(b'}');
        let decoded: ExportTraceServiceRequest = serde_json::from_slice(&as_array).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(
            count_json(&as_array).unwrap(),
            Counted {
                spans: 2,
                groups: 3
            }
        );
    }

    /// Bytes the decoder refuses are refused by the count too.
    #[test]
    fn what_the_decoders_refuse_the_counts_refuse() {
        let pb = sample().encode_to_vec();
        // Cut anywhere but between two resources, the first length runs
        // past the end.
        for cut in 1..pb.len() {
            let part = &pb[..cut];
            assert_eq!(
                count_protobuf(part).is_err(),
                ExportTraceServiceRequest::decode(part).is_err(),
                "cut at {cut}"
            );
        }
        for bad in [
            &[0xff, 0xff, 0xff, 0x01][..], // wire type 7
            &[0x0a, 0x05, 0x12],           // length past the end
            &[0x08, 0x01],                 // resource_spans as a varint
            &[0x00],                       // field 0
            &[0x0c],                       // an end group with no start
            &[0x0b, 0x08],                 // a group never ended
            &[
                0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ], // varint overflow
        ] {
            assert!(ExportTraceServiceRequest::decode(bad).is_err(), "{bad:?}");
            assert!(count_protobuf(bad).is_err(), "{bad:?}");
        }
        for bad in [
            &br#"{"resourceSpans": 7}"#[..],
            br#"{"resourceSpans": null}"#,
            br#"{"resourceSpans": [], "resourceSpans": []}"#,
            br#"{"resourceSpans": [{"scopeSpans": [{"spans": {}}]}]}"#,
            br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{}]}]}"#,
            br#"{} {}"#,
            br#"7"#,
        ] {
            let text = String::from_utf8_lossy(bad);
            assert!(
                serde_json::from_slice::<ExportTraceServiceRequest>(bad).is_err(),
                "{text}"
            );
            assert!(count_json(bad).is_err(), "{text}");
        }
    }

    /// Empty resource and scope groups are bounded as spans are.
    #[test]
    fn too_many_empty_groups_are_over_the_limit() {
        let body = b"\x0a\x00".repeat(MAX_SPANS_PER_REQUEST + 1);
        let c = count_protobuf(&body).unwrap();
        assert_eq!(c.spans, 0);
        let msg = c.over_limit().unwrap();
        assert!(
            msg.contains("50001 resource and scope span groups"),
            "{msg}"
        );
        assert!(count_protobuf(&body[2..]).unwrap().over_limit().is_none());
    }
}
