//! Fuzz-target bodies, kept in the library so that `fuzz/` (cargo-fuzz,
//! libFuzzer) and the regular test suite (which replays the committed seed
//! corpus in `fuzz/corpus/`) run exactly the same code.
//!
//! Each body feeds arbitrary bytes to an input-facing function and panics
//! only if that function panics or breaks one of its documented promises
//! (a fuzzer reports panics as crashes).

use chrono::{DateTime, Utc};

use crate::config::EventLimits;
use crate::embed::preprocess::{self, InputSpec};
use crate::events::{self, InputEvent, Stream};

/// `max_k` used by [`parse_event_bytes`] (the production default).
const FUZZ_MAX_K: usize = 100;
/// Decoder side limit used by [`preprocess_image_bytes`]: smaller than the
/// production default so that one input cannot take seconds, large enough
/// that the limit check itself is exercised by crafted headers.
pub const FUZZ_MAX_IMAGE_SIDE: u32 = 2048;

/// Fixed "now" so that a crash input replays identically on any day.
fn fuzz_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

/// Event parsing on arbitrary bytes. Byte 0 picks the stream (products,
/// ads, mixed) and whether there is a message key and/or a payload; a key,
/// when present, is the bytes up to the first `\n` after byte 0; the rest
/// is the payload. Every `Ok` must satisfy the validation promises.
pub fn parse_event_bytes(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let stream = match mode % 3 {
        0 => Stream::Products,
        1 => Stream::Ads,
        _ => Stream::Mixed,
    };
    let (key, payload) = if mode & 0x04 != 0 {
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (Some(rest), &rest[rest.len()..]),
        }
    } else {
        (None, rest)
    };
    // Bit 3: a tombstone (null payload).
    let payload = if mode & 0x08 != 0 { None } else { Some(payload) };
    let limits = EventLimits::default();
    let now = fuzz_now();
    let Ok(event) = events::parse_event(stream, key, payload, &limits, FUZZ_MAX_K, now) else { return };
    check_event(&event, stream, key, &limits, now);
}

/// The promises `parse_event` makes about an accepted event.
fn check_event(event: &InputEvent, stream: Stream, key: Option<&[u8]>, limits: &EventLimits, now: DateTime<Utc>) {
    let id = event.entity_id();
    assert!(!id.is_empty(), "accepted an empty id");
    assert!(id.len() <= limits.max_id_bytes, "accepted a {}-byte id", id.len());
    assert!(!id.chars().any(char::is_control), "accepted an id with a control character: {id:?}");
    if let Some(k) = key {
        assert_eq!(k, id.as_bytes(), "accepted a key that differs from the id");
    }
    let is_product = matches!(event, InputEvent::ProductUpserted(_) | InputEvent::ProductDeleted { .. });
    match stream {
        Stream::Products => assert!(is_product, "ad event accepted on the products stream"),
        Stream::Ads => assert!(!is_product, "product event accepted on the ads stream"),
        Stream::Mixed => {}
    }
    let too_late = |t: &DateTime<Utc>| (*t - now).num_seconds() > limits.max_future_skew_s;
    match event {
        InputEvent::ProductUpserted(p) => {
            assert!(url::Url::parse(&p.image_url).is_ok(), "accepted a bad URL {:?}", p.image_url);
            assert!(!too_late(&p.updated_at), "accepted a far-future timestamp");
        }
        InputEvent::AdUpserted(a) => {
            assert!(url::Url::parse(&a.image_url).is_ok(), "accepted a bad URL {:?}", a.image_url);
            assert!(a.k.is_none_or(|k| (1..=FUZZ_MAX_K).contains(&k)), "accepted k = {:?}", a.k);
            assert!(!too_late(&a.updated_at), "accepted a far-future timestamp");
            // The filter is stored as JSON and read back on restart: it must round-trip.
            let json = serde_json::to_string(&a.filter).unwrap_or_default();
            let back: Option<events::AdFilter> = serde_json::from_str(&json).ok();
            assert_eq!(back.as_ref(), Some(&a.filter), "filter does not round-trip through JSON: {json}");
        }
        InputEvent::ProductDeleted { updated_at, .. } | InputEvent::AdDeleted { updated_at, .. } => {
            assert!(!updated_at.as_ref().is_some_and(too_late), "accepted a far-future timestamp");
        }
    }
}

/// Image decode + preprocess on arbitrary bytes: either a typed error, or
/// a 3×224×224 tensor of finite values.
pub fn preprocess_image_bytes(data: &[u8]) {
    let spec = InputSpec { size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    if let Ok(tensor) = preprocess::prepare(data, &spec, FUZZ_MAX_IMAGE_SIDE) {
        assert_eq!(tensor.len(), 3 * 224 * 224, "tensor has the wrong length");
        assert!(tensor.iter().all(|x| x.is_finite()), "tensor has a non-finite value");
    }
}
