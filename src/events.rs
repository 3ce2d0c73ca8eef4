//! Input and output event types, and the validation that turns raw bytes
//! into a typed event or a specific, permanent [`EventError`].
//!
//! Parsing goes through `serde_json::Value` by hand rather than derived
//! deserialisers so that every violation gets its own error naming the field
//! (an operator reading the DLQ should not need the source code).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::EventLimits;

/// Which input stream a record came from; decides what a tombstone means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `catalog.products`
    Products,
    /// `ads.creatives`
    Ads,
    /// A mixed file or stdin: the `type` field alone decides.
    Mixed,
}

/// A validated input event.
#[derive(Debug, Clone, PartialEq)]
pub enum InputEvent {
    /// A product was created or changed.
    ProductUpserted(ProductUpsert),
    /// A product is gone (`updated_at` is `None` for a Kafka tombstone).
    ProductDeleted { product_id: String, updated_at: Option<DateTime<Utc>> },
    /// An ad creative was created or changed.
    AdUpserted(AdUpsert),
    /// An ad is gone.
    AdDeleted { ad_id: String, updated_at: Option<DateTime<Utc>> },
}

impl InputEvent {
    /// The entity id the event is about.
    pub fn entity_id(&self) -> &str {
        match self {
            InputEvent::ProductUpserted(p) => &p.product_id,
            InputEvent::ProductDeleted { product_id, .. } => product_id,
            InputEvent::AdUpserted(a) => &a.ad_id,
            InputEvent::AdDeleted { ad_id, .. } => ad_id,
        }
    }

    /// The event's `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            InputEvent::ProductUpserted(_) => "product.upserted",
            InputEvent::ProductDeleted { .. } => "product.deleted",
            InputEvent::AdUpserted(_) => "ad.upserted",
            InputEvent::AdDeleted { .. } => "ad.deleted",
        }
    }
}

/// A product's new state.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductUpsert {
    /// Product id (non-empty, bounded, no control characters).
    pub product_id: String,
    /// Where its image is.
    pub image_url: String,
    /// Display title, if any.
    pub title: Option<String>,
    /// Whether it can be sold now (default true).
    pub in_stock: bool,
    /// Free-form attributes; ad filters match on them.
    pub attributes: Map<String, Value>,
    /// Version of this product state.
    pub updated_at: DateTime<Utc>,
}

/// An ad creative's new state.
#[derive(Debug, Clone, PartialEq)]
pub struct AdUpsert {
    /// Ad id.
    pub ad_id: String,
    /// Where its creative image is.
    pub image_url: String,
    /// List length; `None` means the configured default.
    pub k: Option<usize>,
    /// Which products may appear in its list.
    pub filter: AdFilter,
    /// Version of this ad state.
    pub updated_at: DateTime<Utc>,
}

/// Which products an ad may recommend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdFilter {
    /// Only products with this stock state (usually `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_stock: Option<bool>,
    /// Attribute name → accepted values (any one must match).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Vec<AttrValue>>,
}

/// An attribute value a filter can match: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// Exact string.
    Str(String),
    /// Exact integer.
    Int(i64),
}

impl AttrValue {
    /// Whether a product's attribute value equals this one.
    pub fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (AttrValue::Str(s), Value::String(t)) => s == t,
            (AttrValue::Int(i), Value::Number(n)) => n.as_i64() == Some(*i),
            _ => false,
        }
    }
}

impl AdFilter {
    /// Whether a product with this stock state and these attributes passes.
    pub fn accepts(&self, in_stock: bool, attributes: &Map<String, Value>) -> bool {
        if self.in_stock.is_some_and(|want| want != in_stock) {
            return false;
        }
        self.attributes
            .iter()
            .all(|(key, accepted)| attributes.get(key).is_some_and(|v| accepted.iter().any(|a| a.matches(v))))
    }
}

/// One entry of a published list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListItem {
    /// Recommended product.
    pub product_id: String,
    /// Cosine similarity to the ad's creative.
    pub score: f32,
    /// The product's image.
    pub image_url: String,
}

/// A published recommendation list (value on `ads.recommendations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendationList {
    /// The ad (also the message key).
    pub ad_id: String,
    /// Per-ad version, strictly increasing with every change.
    pub version: u64,
    /// Embedding space the scores come from.
    pub model: String,
    /// When this list was computed.
    pub generated_at: DateTime<Utc>,
    /// Ranked best first.
    pub items: Vec<ListItem>,
}

/// Why an input record was rejected. All of these are permanent: the same
/// bytes will never succeed, so the record goes to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// Payload larger than `events.max_payload_bytes`.
    #[error("payload is {size} bytes, over the {max}-byte limit (events.max_payload_bytes)")]
    TooLarge { size: usize, max: usize },
    /// Payload bytes are not UTF-8.
    #[error("payload is not valid UTF-8 (first bad byte at {0})")]
    NotUtf8(usize),
    /// Payload is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Payload is JSON but not an object.
    #[error("event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A required field is absent or null.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType { field: &'static str, expected: &'static str },
    /// `type` is not one we know.
    #[error("unknown event type `{0}` (expected product.upserted, product.deleted, ad.upserted or ad.deleted)")]
    UnknownType(String),
    /// Id is an empty string.
    #[error("`{0}` is empty")]
    EmptyId(&'static str),
    /// Id longer than `events.max_id_bytes`.
    #[error("`{field}` is {len} bytes, over the {max}-byte limit (events.max_id_bytes)")]
    IdTooLong { field: &'static str, len: usize, max: usize },
    /// Id contains a control character.
    #[error("`{0}` contains a control character")]
    IdControlChar(&'static str),
    /// `updated_at` does not parse.
    #[error("`updated_at` is not an RFC 3339 timestamp: {0}")]
    BadTimestamp(String),
    /// `updated_at` too far ahead of now.
    #[error("`updated_at` {0} is more than {1} s in the future (events.max_future_skew_s)")]
    FutureTimestamp(String, i64),
    /// `image_url` is not a URL.
    #[error("`image_url` is not a valid absolute URL: {0}")]
    BadUrl(String),
    /// `k` out of range.
    #[error("`k` must be between 1 and {max} (recommend.max_k), got {got}")]
    BadK { got: String, max: usize },
    /// `filter` has the wrong shape.
    #[error("`filter` {0}")]
    BadFilter(String),
    /// A product event on the ads topic or the other way round.
    #[error("event type `{ty}` does not belong on the {stream} stream")]
    WrongStream { ty: String, stream: &'static str },
    /// Message key differs from the id inside the event.
    #[error("message key `{key}` differs from the event's id `{id}` (key must be the entity id)")]
    KeyMismatch { key: String, id: String },
    /// A null-valued message without a usable key.
    #[error("tombstone (null payload) without a UTF-8 key: cannot tell what to delete")]
    TombstoneWithoutKey,
    /// A tombstone on a mixed stream where its kind cannot be known.
    #[error("tombstone on a mixed stream: cannot tell whether it deletes a product or an ad")]
    AmbiguousTombstone,
}

/// Parse and validate one record. `key` is the message key (if any),
/// `payload` its value (`None` = tombstone).
pub fn parse_event(
    stream: Stream,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    limits: &EventLimits,
    max_k: usize,
    now: DateTime<Utc>,
) -> Result<InputEvent, EventError> {
    let raw_key = key;
    let key = key.map(|k| std::str::from_utf8(k).map_err(|_| EventError::TombstoneWithoutKey));
    let Some(payload) = payload else {
        let id = match key {
            Some(Ok(k)) => k.to_string(),
            _ => return Err(EventError::TombstoneWithoutKey),
        };
        check_id("key", &id, limits)?;
        return match stream {
            Stream::Products => Ok(InputEvent::ProductDeleted { product_id: id, updated_at: None }),
            Stream::Ads => Ok(InputEvent::AdDeleted { ad_id: id, updated_at: None }),
            Stream::Mixed => Err(EventError::AmbiguousTombstone),
        };
    };
    if payload.len() > limits.max_payload_bytes {
        return Err(EventError::TooLarge { size: payload.len(), max: limits.max_payload_bytes });
    }
    let text = std::str::from_utf8(payload).map_err(|e| EventError::NotUtf8(e.valid_up_to()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| EventError::InvalidJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(EventError::NotAnObject(json_kind(&value)));
    };
    let ty = required_str(&obj, "type")?;
    let event = match ty {
        "product.upserted" | "product.deleted" if stream == Stream::Ads => {
            return Err(EventError::WrongStream { ty: ty.into(), stream: "ads" });
        }
        "ad.upserted" | "ad.deleted" if stream == Stream::Products => {
            return Err(EventError::WrongStream { ty: ty.into(), stream: "products" });
        }
        "product.upserted" => InputEvent::ProductUpserted(ProductUpsert {
            product_id: required_id(&obj, "product_id", limits)?,
            image_url: required_url(&obj)?,
            title: optional_str(&obj, "title")?.map(str::to_string),
            in_stock: optional_bool(&obj, "in_stock")?.unwrap_or(true),
            attributes: match obj.get("attributes") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => return Err(EventError::WrongType { field: "attributes", expected: "an object" }),
            },
            updated_at: required_time(&obj, limits, now)?,
        }),
        "product.deleted" => InputEvent::ProductDeleted {
            product_id: required_id(&obj, "product_id", limits)?,
            updated_at: Some(required_time(&obj, limits, now)?),
        },
        "ad.upserted" => InputEvent::AdUpserted(AdUpsert {
            ad_id: required_id(&obj, "ad_id", limits)?,
            image_url: required_url(&obj)?,
            k: parse_k(obj.get("k"), max_k)?,
            filter: parse_filter(obj.get("filter"))?,
            updated_at: required_time(&obj, limits, now)?,
        }),
        "ad.deleted" => InputEvent::AdDeleted {
            ad_id: required_id(&obj, "ad_id", limits)?,
            updated_at: Some(required_time(&obj, limits, now)?),
        },
        other => return Err(EventError::UnknownType(other.to_string())),
    };
    // A key that is not UTF-8 cannot be the id either: it would route the
    // entity's records to another partition, breaking their order.
    if let Some(raw) = raw_key
        && raw != event.entity_id().as_bytes()
    {
        let key = String::from_utf8_lossy(raw).into_owned();
        return Err(EventError::KeyMismatch { key, id: event.entity_id().to_string() });
    }
    Ok(event)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, EventError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(EventError::MissingField(field)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(EventError::WrongType { field, expected: "a string" }),
    }
}

fn optional_str<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>, EventError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EventError::WrongType { field, expected: "a string" }),
    }
}

fn optional_bool(obj: &Map<String, Value>, field: &'static str) -> Result<Option<bool>, EventError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(EventError::WrongType { field, expected: "a boolean" }),
    }
}

fn check_id(field: &'static str, id: &str, limits: &EventLimits) -> Result<(), EventError> {
    if id.is_empty() {
        return Err(EventError::EmptyId(field));
    }
    if id.len() > limits.max_id_bytes {
        return Err(EventError::IdTooLong { field, len: id.len(), max: limits.max_id_bytes });
    }
    if id.chars().any(char::is_control) {
        return Err(EventError::IdControlChar(field));
    }
    Ok(())
}

fn required_id(obj: &Map<String, Value>, field: &'static str, limits: &EventLimits) -> Result<String, EventError> {
    let id = required_str(obj, field)?;
    check_id(field, id, limits)?;
    Ok(id.to_string())
}

fn required_url(obj: &Map<String, Value>) -> Result<String, EventError> {
    let raw = required_str(obj, "image_url")?;
    url::Url::parse(raw).map_err(|e| EventError::BadUrl(format!("{raw:?}: {e}")))?;
    Ok(raw.to_string())
}

fn required_time(
    obj: &Map<String, Value>,
    limits: &EventLimits,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, EventError> {
    let raw = required_str(obj, "updated_at")?;
    let t = DateTime::parse_from_rfc3339(raw)
        .map_err(|e| EventError::BadTimestamp(format!("{raw:?}: {e}")))?
        .with_timezone(&Utc);
    if (t - now).num_seconds() > limits.max_future_skew_s {
        return Err(EventError::FutureTimestamp(raw.to_string(), limits.max_future_skew_s));
    }
    Ok(t)
}

fn parse_k(v: Option<&Value>, max_k: usize) -> Result<Option<usize>, EventError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) if k >= 1 && k <= max_k as u64 => Ok(Some(k as usize)),
            _ => Err(EventError::BadK { got: n.to_string(), max: max_k }),
        },
        Some(_) => Err(EventError::WrongType { field: "k", expected: "an integer" }),
    }
}

fn parse_filter(v: Option<&Value>) -> Result<AdFilter, EventError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(AdFilter::default()),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(EventError::BadFilter(format!("must be an object, got {}", json_kind(other)))),
    };
    let mut filter = AdFilter::default();
    for (key, value) in obj {
        match (key.as_str(), value) {
            ("in_stock", Value::Bool(b)) => filter.in_stock = Some(*b),
            ("in_stock", Value::Null) => {}
            ("in_stock", other) => {
                return Err(EventError::BadFilter(format!("`in_stock` must be a boolean, got {}", json_kind(other))));
            }
            ("attributes", Value::Object(attrs)) => {
                for (name, accepted) in attrs {
                    filter.attributes.insert(name.clone(), parse_accepted(name, accepted)?);
                }
            }
            ("attributes", other) => {
                return Err(EventError::BadFilter(format!("`attributes` must be an object, got {}", json_kind(other))));
            }
            (other, _) => {
                return Err(EventError::BadFilter(format!(
                    "has unknown key `{other}` (allowed: in_stock, attributes)"
                )));
            }
        }
    }
    Ok(filter)
}

fn parse_accepted(name: &str, v: &Value) -> Result<Vec<AttrValue>, EventError> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(AttrValue::Str(s.clone())),
        Value::Number(n) if n.as_i64().is_some() => Ok(AttrValue::Int(n.as_i64().unwrap_or_default())),
        other => Err(EventError::BadFilter(format!(
            "attribute `{name}` values must be strings or integers, got {}",
            json_kind(other)
        ))),
    };
    match v {
        Value::Array(items) if items.is_empty() => {
            Err(EventError::BadFilter(format!("attribute `{name}` has an empty list: nothing could match")))
        }
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z").expect("ts").with_timezone(&Utc)
    }

    fn parse(stream: Stream, key: Option<&str>, payload: &str) -> Result<InputEvent, EventError> {
        parse_event(stream, key.map(str::as_bytes), Some(payload.as_bytes()), &EventLimits::default(), 100, now())
    }

    fn product(extra: &str) -> String {
        format!(
            r#"{{"type":"product.upserted","product_id":"p1","image_url":"https://cdn.example/p1.jpg","updated_at":"2026-12-04T10:00:00Z"{extra}}}"#
        )
    }

    #[test]
    fn a_key_that_is_not_utf8_is_a_key_mismatch() {
        // Found by the parse_event fuzzer: such a key used to be ignored.
        let payload = product("");
        let e = parse_event(
            Stream::Products,
            Some(b"p\xdf"),
            Some(payload.as_bytes()),
            &EventLimits::default(),
            100,
            now(),
        );
        assert!(matches!(e, Err(EventError::KeyMismatch { .. })), "{e:?}");
    }

    #[test]
    fn valid_product_with_unknown_fields() {
        let e = parse(
            Stream::Products,
            Some("p1"),
            &product(r#","title":"Polo","in_stock":false,"attributes":{"category":"polo"},"colour_hex":"fff""#),
        )
        .expect("valid");
        let InputEvent::ProductUpserted(p) = e else { panic!("wrong variant") };
        assert_eq!(p.product_id, "p1");
        assert!(!p.in_stock);
        assert_eq!(p.title.as_deref(), Some("Polo"));
        assert_eq!(p.attributes["category"], "polo");
    }

    #[test]
    fn in_stock_defaults_to_true() {
        let Ok(InputEvent::ProductUpserted(p)) = parse(Stream::Mixed, None, &product("")) else { panic!() };
        assert!(p.in_stock);
    }

    #[test]
    fn valid_ad_with_filter() {
        let e = parse(
            Stream::Ads,
            None,
            r#"{"type":"ad.upserted","ad_id":"a","image_url":"http://x/a.jpg","k":5,"filter":{"in_stock":true,"attributes":{"category":["polo","tee"],"size":3}},"updated_at":"2026-12-04T10:00:00Z"}"#,
        )
        .expect("valid");
        let InputEvent::AdUpserted(a) = e else { panic!() };
        assert_eq!(a.k, Some(5));
        assert_eq!(a.filter.in_stock, Some(true));
        assert_eq!(a.filter.attributes["category"], vec![AttrValue::Str("polo".into()), AttrValue::Str("tee".into())]);
        assert_eq!(a.filter.attributes["size"], vec![AttrValue::Int(3)]);
    }

    #[test]
    fn each_violation_has_its_error() {
        use EventError::*;
        let cases: Vec<(&str, EventError)> = vec![
            ("{not json", InvalidJson(String::new())),
            ("[1,2]", NotAnObject("an array")),
            (r#"{"product_id":"p"}"#, MissingField("type")),
            (r#"{"type":5}"#, WrongType { field: "type", expected: "a string" }),
            (r#"{"type":"product.exploded"}"#, UnknownType("product.exploded".into())),
            (
                r#"{"type":"product.upserted","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z"}"#,
                MissingField("product_id"),
            ),
            (
                r#"{"type":"product.upserted","product_id":"","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z"}"#,
                EmptyId("product_id"),
            ),
            (
                r#"{"type":"product.upserted","product_id":"a\u0007b","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z"}"#,
                IdControlChar("product_id"),
            ),
            (
                r#"{"type":"product.upserted","product_id":7,"image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z"}"#,
                WrongType { field: "product_id", expected: "a string" },
            ),
            (
                r#"{"type":"product.upserted","product_id":"p","updated_at":"2026-12-04T10:00:00Z"}"#,
                MissingField("image_url"),
            ),
            (
                r#"{"type":"product.upserted","product_id":"p","image_url":"not a url","updated_at":"2026-12-04T10:00:00Z"}"#,
                BadUrl(String::new()),
            ),
            (r#"{"type":"product.upserted","product_id":"p","image_url":"http://x/y"}"#, MissingField("updated_at")),
            (
                r#"{"type":"product.upserted","product_id":"p","image_url":"http://x/y","updated_at":"yesterday"}"#,
                BadTimestamp(String::new()),
            ),
            (
                r#"{"type":"product.upserted","product_id":"p","image_url":"http://x/y","updated_at":"2099-01-01T00:00:00Z"}"#,
                FutureTimestamp(String::new(), 0),
            ),
            (
                r#"{"type":"product.upserted","product_id":"p","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","in_stock":"yes"}"#,
                WrongType { field: "in_stock", expected: "a boolean" },
            ),
            (
                r#"{"type":"product.upserted","product_id":"p","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","attributes":[1]}"#,
                WrongType { field: "attributes", expected: "an object" },
            ),
            (
                r#"{"type":"ad.upserted","ad_id":"a","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","k":0}"#,
                BadK { got: String::new(), max: 100 },
            ),
            (
                r#"{"type":"ad.upserted","ad_id":"a","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","k":101}"#,
                BadK { got: String::new(), max: 100 },
            ),
            (
                r#"{"type":"ad.upserted","ad_id":"a","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","k":"ten"}"#,
                WrongType { field: "k", expected: "an integer" },
            ),
            (
                r#"{"type":"ad.upserted","ad_id":"a","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","filter":[]}"#,
                BadFilter(String::new()),
            ),
            (
                r#"{"type":"ad.upserted","ad_id":"a","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","filter":{"colour":"red"}}"#,
                BadFilter(String::new()),
            ),
            (
                r#"{"type":"ad.upserted","ad_id":"a","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","filter":{"attributes":{"c":[1.5]}}}"#,
                BadFilter(String::new()),
            ),
            (
                r#"{"type":"ad.upserted","ad_id":"a","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","filter":{"attributes":{"c":[]}}}"#,
                BadFilter(String::new()),
            ),
            (r#"{"type":"ad.deleted","updated_at":"2026-12-04T10:00:00Z"}"#, MissingField("ad_id")),
        ];
        for (payload, want) in cases {
            let got = parse(Stream::Mixed, None, payload).expect_err(payload);
            assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&want), "{payload}: got {got}");
            if let (WrongType { field: a, .. }, WrongType { field: b, .. }) | (MissingField(a), MissingField(b)) =
                (&got, &want)
            {
                assert_eq!(a, b, "{payload}");
            }
        }
    }

    #[test]
    fn oversized_id_is_rejected() {
        let id = "x".repeat(257);
        let payload =
            format!(r#"{{"type":"product.deleted","product_id":"{id}","updated_at":"2026-12-04T10:00:00Z"}}"#);
        assert_eq!(
            parse(Stream::Products, None, &payload),
            Err(EventError::IdTooLong { field: "product_id", len: 257, max: 256 })
        );
    }

    #[test]
    fn hostile_json_shapes() {
        // Deep nesting within the size limit is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        assert!(
            matches!(parse(Stream::Mixed, None, &deep), Err(EventError::InvalidJson(e)) if e.contains("recursion limit"))
        );
        assert_eq!(parse(Stream::Mixed, None, "null"), Err(EventError::NotAnObject("null")));
        assert_eq!(parse(Stream::Mixed, None, "\"x\""), Err(EventError::NotAnObject("a string")));
        for id in ["a\\u0000", "a\\n", "\\u007f", "\\u0085"] {
            let payload = format!(r#"{{"type":"ad.deleted","ad_id":"{id}","updated_at":"2026-12-04T10:00:00Z"}}"#);
            assert_eq!(parse(Stream::Mixed, None, &payload), Err(EventError::IdControlChar("ad_id")), "{id}");
        }
        let k = |v: &str| {
            parse(
                Stream::Mixed,
                None,
                &format!(
                    r#"{{"type":"ad.upserted","ad_id":"a","image_url":"http://x/y","updated_at":"2026-12-04T10:00:00Z","k":{v}}}"#
                ),
            )
        };
        for v in ["-3", "1.5", "1e3", "18446744073709551616"] {
            assert!(matches!(k(v), Err(EventError::BadK { .. })), "k = {v}: {:?}", k(v));
        }
    }

    #[test]
    fn oversized_payload_and_bad_utf8() {
        let big = product(&format!(r#","title":"{}""#, "a".repeat(70_000)));
        assert!(matches!(parse(Stream::Products, None, &big), Err(EventError::TooLarge { .. })));
        let bad =
            parse_event(Stream::Products, None, Some(b"{\"type\":\"\xff\"}"), &EventLimits::default(), 100, now());
        assert_eq!(bad, Err(EventError::NotUtf8(9)));
    }

    #[test]
    fn tombstones_follow_the_stream() {
        let limits = EventLimits::default();
        let p = parse_event(Stream::Products, Some(b"p9"), None, &limits, 100, now());
        assert_eq!(p, Ok(InputEvent::ProductDeleted { product_id: "p9".into(), updated_at: None }));
        let a = parse_event(Stream::Ads, Some(b"a9"), None, &limits, 100, now());
        assert_eq!(a, Ok(InputEvent::AdDeleted { ad_id: "a9".into(), updated_at: None }));
        assert_eq!(
            parse_event(Stream::Products, None, None, &limits, 100, now()),
            Err(EventError::TombstoneWithoutKey)
        );
        assert_eq!(
            parse_event(Stream::Mixed, Some(b"x"), None, &limits, 100, now()),
            Err(EventError::AmbiguousTombstone)
        );
    }

    #[test]
    fn wrong_stream_and_key_mismatch() {
        assert!(matches!(parse(Stream::Ads, None, &product("")), Err(EventError::WrongStream { .. })));
        assert!(matches!(parse(Stream::Products, Some("other"), &product("")), Err(EventError::KeyMismatch { .. })));
    }

    #[test]
    fn filter_accepts() {
        let mut f = AdFilter { in_stock: Some(true), ..Default::default() };
        f.attributes.insert("category".into(), vec![AttrValue::Str("polo".into()), AttrValue::Int(3)]);
        let attrs = |v: Value| serde_json::json!({ "category": v }).as_object().cloned().unwrap_or_default();
        assert!(f.accepts(true, &attrs("polo".into())));
        assert!(f.accepts(true, &attrs(3.into())));
        assert!(!f.accepts(false, &attrs("polo".into())));
        assert!(!f.accepts(true, &attrs("tee".into())));
        assert!(!f.accepts(true, &Map::new()));
    }
}
