//! Replays the committed fuzz seed corpus (`fuzz/corpus/<target>/`) through
//! the same library functions the cargo-fuzz targets call, so the regular
//! suite catches a regression on any input the fuzzers were seeded with or
//! a crash input added later.
//!
//! `ADREC_WRITE_FUZZ_CORPUS=1 cargo test --release --test fuzz_corpus`
//! regenerates the generated seeds (crash inputs added by hand are kept).

use std::io::Cursor;
use std::path::PathBuf;

use image::codecs::gif::GifEncoder;
use image::{DynamicImage, Frame, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba, RgbaImage};

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = corpus(target);
    if std::env::var_os("ADREC_WRITE_FUZZ_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("mkdir corpus");
        let seeds = if target == "parse_event" { event_seeds() } else { image_seeds() };
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).expect("write seed");
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in &files {
        let bytes = std::fs::read(path).expect("read seed");
        // A panic here names the input that broke.
        let outcome = std::panic::catch_unwind(|| body(&bytes));
        assert!(outcome.is_ok(), "{target}: input {} panicked", path.display());
    }
    files.len()
}

#[test]
fn event_parsing_survives_the_seed_corpus() {
    let n = replay("parse_event", adrec::fuzzing::parse_event_bytes);
    assert!(n >= 20, "only {n} seeds in fuzz/corpus/parse_event");
}

#[test]
fn image_preprocessing_survives_the_seed_corpus() {
    let n = replay("preprocess_image", adrec::fuzzing::preprocess_image_bytes);
    assert!(n >= 10, "only {n} seeds in fuzz/corpus/preprocess_image");
}

/// Byte 0 = mode (see `adrec::fuzzing::parse_event_bytes`): stream = mode % 3,
/// 0x04 = a key up to the first newline, 0x08 = tombstone.
fn event_seeds() -> Vec<(String, Vec<u8>)> {
    const PRODUCTS: u8 = 0;
    const ADS: u8 = 1;
    const MIXED: u8 = 2;
    const KEY: u8 = 0x04;
    const TOMBSTONE: u8 = 0x08;
    let t = "2026-12-04T10:00:00Z";
    let product = format!(
        r#"{{"type":"product.upserted","product_id":"p1","image_url":"https://cdn.example/p1.jpg","title":"Polo","in_stock":false,"attributes":{{"category":"polo","price":98.5,"size":42}},"updated_at":"{t}"}}"#
    );
    let ad = format!(
        r#"{{"type":"ad.upserted","ad_id":"a1","image_url":"https://cdn.example/a1.jpg","k":10,"filter":{{"in_stock":true,"attributes":{{"category":["polo","tee"],"size":[40,42],"brand":"x"}}}},"updated_at":"{t}"}}"#
    );
    let seeds: Vec<(&str, u8, &str, String)> = vec![
        ("product", PRODUCTS, "", product.clone()),
        ("product-keyed", PRODUCTS | KEY, "p1", product.clone()),
        ("product-mixed", MIXED, "", product.clone()),
        ("product-on-ads", ADS, "", product.clone()),
        ("product-key-mismatch", PRODUCTS | KEY, "p2", product.clone()),
        (
            "product-deleted",
            PRODUCTS,
            "",
            format!(r#"{{"type":"product.deleted","product_id":"p1","updated_at":"{t}"}}"#),
        ),
        ("product-tombstone", PRODUCTS | KEY | TOMBSTONE, "p1", String::new()),
        ("ad", ADS, "", ad.clone()),
        ("ad-keyed", ADS | KEY, "a1", ad.clone()),
        ("ad-mixed", MIXED, "", ad),
        ("ad-deleted", ADS, "", format!(r#"{{"type":"ad.deleted","ad_id":"a1","updated_at":"{t}"}}"#)),
        ("ad-tombstone", ADS | KEY | TOMBSTONE, "a1", String::new()),
        ("mixed-tombstone", MIXED | KEY | TOMBSTONE, "a1", String::new()),
        ("tombstone-no-key", PRODUCTS | TOMBSTONE, "", String::new()),
        ("invalid-json", PRODUCTS, "", "{not json".into()),
        ("array", PRODUCTS, "", "[1,2,3]".into()),
        ("unknown-type", MIXED, "", r#"{"type":"product.teleported"}"#.into()),
        (
            "missing-id",
            PRODUCTS,
            "",
            format!(r#"{{"type":"product.upserted","image_url":"https://x/y.jpg","updated_at":"{t}"}}"#),
        ),
        ("control-char-id", PRODUCTS, "", product.replace("\"p1\"", "\"p\\u0007\"")),
        ("long-id", PRODUCTS, "", product.replace("\"p1\"", &format!("\"{}\"", "x".repeat(300)))),
        ("future", PRODUCTS, "", product.replace(t, "2099-01-01T00:00:00Z")),
        ("bad-time", PRODUCTS, "", product.replace(t, "yesterday")),
        ("bad-url", PRODUCTS, "", product.replace("https://cdn.example/p1.jpg", "not a url")),
        (
            "k-zero",
            ADS,
            "",
            format!(r#"{{"type":"ad.upserted","ad_id":"a","image_url":"https://x/a.jpg","k":0,"updated_at":"{t}"}}"#),
        ),
        (
            "k-float",
            ADS,
            "",
            format!(r#"{{"type":"ad.upserted","ad_id":"a","image_url":"https://x/a.jpg","k":2.5,"updated_at":"{t}"}}"#),
        ),
        (
            "filter-array",
            ADS,
            "",
            format!(
                r#"{{"type":"ad.upserted","ad_id":"a","image_url":"https://x/a.jpg","filter":[1],"updated_at":"{t}"}}"#
            ),
        ),
        (
            "filter-empty-list",
            ADS,
            "",
            format!(
                r#"{{"type":"ad.upserted","ad_id":"a","image_url":"https://x/a.jpg","filter":{{"attributes":{{"c":[]}}}},"updated_at":"{t}"}}"#
            ),
        ),
        (
            "filter-big-int",
            ADS,
            "",
            format!(
                r#"{{"type":"ad.upserted","ad_id":"a","image_url":"https://x/a.jpg","filter":{{"attributes":{{"n":[18446744073709551615,-9223372036854775808]}}}},"updated_at":"{t}"}}"#
            ),
        ),
        ("nested-deep", PRODUCTS, "", format!("{}{}", "[".repeat(200), "]".repeat(200))),
    ];
    let mut out: Vec<(String, Vec<u8>)> = seeds
        .into_iter()
        .map(|(name, mode, key, payload)| {
            let mut bytes = vec![mode];
            if mode & KEY != 0 {
                bytes.extend_from_slice(key.as_bytes());
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(payload.as_bytes());
            (format!("seed-{name}"), bytes)
        })
        .collect();
    let mut not_utf8 = vec![PRODUCTS];
    not_utf8.extend_from_slice(b"{\"type\":\"product.upserted\",\"product_id\":\"\xff\xfe\"}");
    out.push(("seed-not-utf8".into(), not_utf8));
    out
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).expect("encode seed image");
    buf.into_inner()
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 128]))
}

/// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (orientation 6).
fn exif_rotated_jpeg() -> Vec<u8> {
    let jpeg = encode(&DynamicImage::ImageRgb8(gradient(16, 8)), ImageFormat::Jpeg);
    // TIFF header (little endian), one IFD entry: tag 0x0112 SHORT 1 = 6.
    let tiff: [u8; 26] = [b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0];
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn animated_gif() -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut buf);
        let frames = [Rgba([255, 0, 0, 255]), Rgba([0, 0, 255, 255])]
            .into_iter()
            .map(|c| Frame::new(RgbaImage::from_pixel(8, 8, c)));
        encoder.encode_frames(frames).expect("encode gif");
    }
    buf
}

/// A PNG whose header claims 50,000 × 50,000 pixels (a few dozen bytes).
fn png_bomb_header() -> Vec<u8> {
    let mut png = encode(&DynamicImage::ImageRgb8(gradient(1, 1)), ImageFormat::Png);
    // IHDR width/height live at bytes 16..24; the CRC no longer matches, which a decoder must also survive.
    png[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    png
}

fn image_seeds() -> Vec<(String, Vec<u8>)> {
    let rgb = DynamicImage::ImageRgb8(gradient(12, 9));
    let jpeg = encode(&rgb, ImageFormat::Jpeg);
    let grey_alpha16: ImageBuffer<LumaA<u16>, Vec<u16>> =
        ImageBuffer::from_fn(6, 6, |x, y| LumaA([(x * 9000) as u16, (y * 9000) as u16]));
    let grey: ImageBuffer<Luma<u8>, Vec<u8>> = ImageBuffer::from_fn(7, 5, |x, y| Luma([(x * 30 + y) as u8]));
    vec![
        ("seed-rgb.png".into(), encode(&rgb, ImageFormat::Png)),
        ("seed-rgb.jpg".into(), jpeg.clone()),
        ("seed-truncated.jpg".into(), jpeg[..jpeg.len() / 2].to_vec()),
        ("seed-exif-rotated.jpg".into(), exif_rotated_jpeg()),
        ("seed-grey-alpha-16.png".into(), encode(&DynamicImage::ImageLumaA16(grey_alpha16), ImageFormat::Png)),
        ("seed-grey.png".into(), encode(&DynamicImage::ImageLuma8(grey), ImageFormat::Png)),
        (
            "seed-rgba.png".into(),
            encode(&DynamicImage::ImageRgba8(RgbaImage::from_pixel(4, 4, Rgba([9, 9, 9, 0]))), ImageFormat::Png),
        ),
        ("seed-1x1.png".into(), encode(&DynamicImage::ImageRgb8(gradient(1, 1)), ImageFormat::Png)),
        ("seed-animated.gif".into(), animated_gif()),
        (
            "seed-lossless.webp".into(),
            encode(&DynamicImage::ImageRgba8(RgbaImage::from_pixel(5, 3, Rgba([1, 200, 3, 90]))), ImageFormat::WebP),
        ),
        ("seed-rgb.bmp".into(), encode(&rgb, ImageFormat::Bmp)),
        ("seed-bomb-header.png".into(), png_bomb_header()),
        ("seed-empty".into(), Vec::new()),
        ("seed-text".into(), b"<html>not an image</html>".to_vec()),
    ]
}
