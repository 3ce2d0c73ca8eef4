//! Best-effort look into a raw record that may not parse: its entity id and
//! event type, for the logs and metrics of records that failed validation
//! (a dead letter must still name what it was about).

use crate::events::Stream;
use crate::source::SourceRecord;

/// Longest id echoed into logs (ids over the limit are rejected anyway).
const MAX_ID_CHARS: usize = 256;

/// The record's entity id: its key, else the payload's `product_id` or
/// `ad_id`; empty when neither can be read.
pub fn entity_id(record: &SourceRecord) -> String {
    let from_key = record.key.as_deref().map(String::from_utf8_lossy).filter(|k| !k.is_empty());
    let id = match from_key {
        Some(k) => k.into_owned(),
        None => payload_json(record)
            .and_then(|v| {
                ["product_id", "ad_id"].iter().find_map(|f| v.get(*f).and_then(|x| x.as_str()).map(str::to_string))
            })
            .unwrap_or_default(),
    };
    // Control characters would forge log lines; ids with them are invalid anyway.
    id.chars().filter(|c| !c.is_control()).take(MAX_ID_CHARS).collect()
}

/// A bounded metric label for the record's type: one of the four event
/// types, `tombstone`, `invalid` (not a JSON object) or `unknown` (any other `type`).
pub fn type_label(record: &SourceRecord) -> &'static str {
    if record.payload.is_none() {
        return match record.stream {
            Stream::Products => "product.deleted",
            Stream::Ads => "ad.deleted",
            Stream::Mixed => "tombstone",
        };
    }
    let Some(value) = payload_json(record) else { return "invalid" };
    match value.get("type").and_then(|t| t.as_str()) {
        Some("product.upserted") => "product.upserted",
        Some("product.deleted") => "product.deleted",
        Some("ad.upserted") => "ad.upserted",
        Some("ad.deleted") => "ad.deleted",
        _ => "unknown",
    }
}

fn payload_json(record: &SourceRecord) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(record.payload.as_deref()?) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stream: Stream, key: Option<&str>, payload: Option<&str>) -> SourceRecord {
        SourceRecord {
            stream,
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: key.map(|k| k.as_bytes().to_vec()),
            payload: payload.map(|p| p.as_bytes().to_vec()),
        }
    }

    #[test]
    fn ids_come_from_the_key_then_the_payload() {
        assert_eq!(entity_id(&record(Stream::Products, Some("k1"), Some("{}"))), "k1");
        let p = r#"{"type":"product.upserted","product_id":"p\n7"}"#;
        assert_eq!(entity_id(&record(Stream::Mixed, None, Some(p))), "p7", "control characters are dropped");
        assert_eq!(entity_id(&record(Stream::Mixed, None, Some(r#"{"ad_id":"a"}"#))), "a");
        assert_eq!(entity_id(&record(Stream::Mixed, None, Some("{not json"))), "");
    }

    #[test]
    fn type_labels_are_bounded() {
        assert_eq!(type_label(&record(Stream::Mixed, None, Some(r#"{"type":"ad.upserted"}"#))), "ad.upserted");
        assert_eq!(type_label(&record(Stream::Mixed, None, Some(r#"{"type":"x<script>"}"#))), "unknown");
        assert_eq!(type_label(&record(Stream::Mixed, None, Some("[1]"))), "invalid");
        assert_eq!(type_label(&record(Stream::Products, Some("p"), None)), "product.deleted");
        assert_eq!(type_label(&record(Stream::Mixed, Some("p"), None)), "tombstone");
    }
}
