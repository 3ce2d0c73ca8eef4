//! Hostile inputs through the real pipeline on the embedded default: bad
//! events, hostile image servers, malicious and unusual images, and URLs
//! that point inside our network. Every bad input must end in the DLQ with a
//! specific reason (or be counted as a stale skip), convertible images must
//! be embedded, and a valid event after all the poison must be processed.
//!
//! Where each class is also covered at the unit level: src/events.rs
//! (validation), src/fetch.rs (address ranges, redirects to forbidden
//! addresses after an allowed first hop, which needs a policy exception no
//! config can express), src/embed/preprocess.rs (decoding).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adrec::app;
use adrec::config::Config;
use adrec::embed::preprocess;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use serde_json::json;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- images --

fn encode(img: DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, fmt).expect("encode");
    buf.into_inner()
}

/// A smooth, photo-like picture (compresses well even when huge).
fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        Rgb([(255.0 * fx) as u8, (255.0 * fy) as u8, (128.0 + 100.0 * (6.0 * fx * fy).sin()) as u8])
    })
}

/// 64×32, white with a red 16×16 block in the top-left corner.
fn marked(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| if x < 16 && y < 16 { Rgb([255, 0, 0]) } else { Rgb([255, 255, 255]) })
}

fn is_red(p: &Rgb<u8>) -> bool {
    p[0] > 200 && p[1] < 60 && p[2] < 60
}

/// Bits written MSB first, with JPEG's 0xFF00 byte stuffing.
struct BitWriter {
    out: Vec<u8>,
    acc: u8,
    n: u8,
}

impl BitWriter {
    fn put(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.acc = (self.acc << 1) | ((code >> i) & 1) as u8;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc);
                if self.acc == 0xff {
                    self.out.push(0);
                }
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        while self.n != 0 {
            self.put(1, 1);
        }
        self.out
    }
}

/// A baseline four-component Adobe CMYK JPEG whose 8×8 blocks are flat:
/// `block(bx, by)` gives each block's stored C, M, Y, K samples (Adobe
/// convention: stored = 255 − ink). Only DC coefficients are coded (all
/// quantisers 1), which is all a flat block needs. The image crate decodes
/// CMYK JPEGs but cannot write them, hence this small writer.
fn cmyk_jpeg(blocks_x: u16, blocks_y: u16, block: impl Fn(u16, u16) -> [u8; 4]) -> Vec<u8> {
    let segment = |out: &mut Vec<u8>, marker: u8, body: &[u8]| {
        out.extend_from_slice(&[0xff, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
    };
    // The Annex K luminance DC table: how many codes of each length, for
    // categories 0..=11 in order; canonical codes follow from the counts.
    let dc_bits: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    let mut dc_codes = [(0u32, 0u32); 12];
    let (mut code, mut k) = (0u32, 0usize);
    for (len, &count) in dc_bits.iter().enumerate() {
        for _ in 0..count {
            dc_codes[k] = (code, len as u32 + 1);
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    let mut out = vec![0xff, 0xd8];
    // Adobe APP14: version 100, no flags, transform 0 (CMYK as stored).
    segment(&mut out, 0xee, b"Adobe\x00\x64\x00\x00\x00\x00\x00");
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1u8; 64]);
    segment(&mut out, 0xdb, &dqt);
    let (w, h) = (blocks_x * 8, blocks_y * 8);
    let mut sof = vec![8];
    sof.extend_from_slice(&h.to_be_bytes());
    sof.extend_from_slice(&w.to_be_bytes());
    sof.push(4);
    for id in 1..=4u8 {
        sof.extend_from_slice(&[id, 0x11, 0]);
    }
    segment(&mut out, 0xc0, &sof);
    let mut dht = vec![0x00];
    dht.extend_from_slice(&dc_bits);
    dht.extend(0..12u8);
    segment(&mut out, 0xc4, &dht);
    // AC table with one symbol, end-of-block, coded as the single bit `0`.
    let mut dht = vec![0x10, 1];
    dht.extend_from_slice(&[0u8; 15]);
    dht.push(0x00);
    segment(&mut out, 0xc4, &dht);
    let mut sos = vec![4];
    for id in 1..=4u8 {
        sos.extend_from_slice(&[id, 0x00]);
    }
    sos.extend_from_slice(&[0, 63, 0]);
    segment(&mut out, 0xda, &sos);
    let mut bits = BitWriter { out: Vec::new(), acc: 0, n: 0 };
    let mut previous = [0i32; 4];
    for by in 0..blocks_y {
        for bx in 0..blocks_x {
            let samples = block(bx, by);
            for c in 0..4 {
                // A flat block's DC coefficient is 8 × (sample − 128).
                let dc = 8 * (samples[c] as i32 - 128);
                let diff = dc - previous[c];
                previous[c] = dc;
                let category = 32 - diff.unsigned_abs().leading_zeros();
                let (code, len) = dc_codes[category as usize];
                bits.put(code, len);
                let extra = if diff < 0 { diff - 1 } else { diff };
                bits.put(extra as u32 & ((1u32 << category) - 1), category);
                bits.put(0, 1); // end of block
            }
        }
    }
    out.extend_from_slice(&bits.finish());
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}

fn riff_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// An animated WebP (VP8X + ANIM + one ANMF per frame); each frame's
/// bitstream comes from the image crate's (still, lossless) encoder.
fn animated_webp(frames: &[RgbaImage]) -> Vec<u8> {
    let (w, h) = frames[0].dimensions();
    let mut body = b"WEBP".to_vec();
    let mut vp8x = vec![0x02 | 0x10, 0, 0, 0]; // animation, alpha
    vp8x.extend_from_slice(&u24(w - 1));
    vp8x.extend_from_slice(&u24(h - 1));
    riff_chunk(&mut body, b"VP8X", &vp8x);
    riff_chunk(&mut body, b"ANIM", &[255, 255, 255, 255, 0, 0]); // white, loop forever
    for frame in frames {
        let still = encode(DynamicImage::ImageRgba8(frame.clone()), ImageFormat::WebP);
        // RIFF header (12 bytes), then the encoder's only chunk: VP8L.
        assert_eq!(&still[12..16], b"VP8L", "lossless WebP expected");
        let len = u32::from_le_bytes([still[16], still[17], still[18], still[19]]) as usize;
        let mut anmf = Vec::new();
        anmf.extend_from_slice(&u24(0)); // x / 2
        anmf.extend_from_slice(&u24(0)); // y / 2
        anmf.extend_from_slice(&u24(w - 1));
        anmf.extend_from_slice(&u24(h - 1));
        anmf.extend_from_slice(&u24(100)); // duration, ms
        anmf.push(0x02); // do not blend, no disposal
        riff_chunk(&mut anmf, b"VP8L", &still[20..20 + len]);
        riff_chunk(&mut body, b"ANMF", &anmf);
    }
    let mut out = Vec::new();
    riff_chunk(&mut out, b"RIFF", &body);
    out
}

fn animated_gif(frames: &[RgbaImage]) -> Vec<u8> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let mut bytes = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut bytes);
        enc.set_repeat(Repeat::Infinite).expect("repeat");
        enc.encode_frames(frames.iter().map(|f| image::Frame::new(f.clone()))).expect("gif");
    }
    bytes
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A decompression bomb: a tiny valid PNG whose IHDR (CRC fixed up) claims
/// `w` × `h`. It is a few hundred bytes; decoding it would need w·h·3 bytes.
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = encode(DynamicImage::ImageRgb8(RgbImage::new(16, 16)), ImageFormat::Png);
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height.
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A PNG with garbage in the middle of its compressed data.
fn corrupt_png() -> Vec<u8> {
    let mut png = encode(DynamicImage::ImageRgb8(photo(128, 128)), ImageFormat::Png);
    let mid = png.len() / 2;
    png[mid..mid + 64].fill(0xa5);
    png
}

type Images = HashMap<String, (&'static str, Vec<u8>)>;

/// Everything the test server serves under /img/<name>: (content type,
/// bytes). Built once per process (the large image takes a moment).
fn image_catalogue() -> &'static Images {
    static CATALOGUE: std::sync::OnceLock<Images> = std::sync::OnceLock::new();
    CATALOGUE.get_or_init(build_catalogue)
}

fn build_catalogue() -> Images {
    let rgb = |img: RgbImage, fmt| encode(DynamicImage::ImageRgb8(img), fmt);
    let red = RgbaImage::from_pixel(48, 32, Rgba([230, 20, 20, 255]));
    let blue = RgbaImage::from_pixel(48, 32, Rgba([20, 20, 230, 255]));
    let jpeg = rgb(photo(256, 192), ImageFormat::Jpeg);
    let mut images = Images::new();
    let mut add = |name: &str, ct: &'static str, bytes: Vec<u8>| {
        images.insert(name.to_string(), (ct, bytes));
    };
    add("photo.jpg", "image/jpeg", jpeg.clone());
    add("truncated.jpg", "image/jpeg", jpeg[..jpeg.len() / 2].to_vec());
    add("corrupt.png", "image/png", corrupt_png());
    add("bomb.png", "image/png", bomb_png(50_000, 50_000));
    add("html-as-jpeg.jpg", "image/jpeg", b"<!doctype html><html><body>Not found</body></html>".to_vec());
    add("empty.png", "image/png", Vec::new());
    add("animated.gif", "image/gif", animated_gif(&[red.clone(), blue.clone()]));
    add("animated.webp", "image/webp", animated_webp(&[red, blue]));
    add("cmyk.jpg", "image/jpeg", cmyk_jpeg(8, 6, |bx, by| [255 - (bx * 30) as u8, 255 - (by * 40) as u8, 200, 255]));
    let deep =
        image::ImageBuffer::<Rgb<u16>, _>::from_fn(64, 48, |x, y| Rgb([(x * 1000) as u16, (y * 1300) as u16, 40_000]));
    add("deep.png", "image/png", encode(DynamicImage::ImageRgb16(deep), ImageFormat::Png));
    let grey = image::GrayImage::from_fn(64, 48, |x, y| image::Luma([((x + y) * 2) as u8]));
    add("grey.png", "image/png", encode(DynamicImage::ImageLuma8(grey.clone()), ImageFormat::Png));
    add("grey.jpg", "image/jpeg", encode(DynamicImage::ImageLuma8(grey), ImageFormat::Jpeg));
    let grey_alpha = image::GrayAlphaImage::from_fn(40, 40, |x, y| image::LumaA([(x * 6) as u8, (y * 6) as u8]));
    add("grey-alpha.png", "image/png", encode(DynamicImage::ImageLumaA8(grey_alpha), ImageFormat::Png));
    let rgba = RgbaImage::from_fn(64, 64, |x, y| {
        Rgba([200, (x * 4) as u8, 30, if (x / 8 + y / 8) % 2 == 0 { 0 } else { 255 }])
    });
    add("rgba.png", "image/png", encode(DynamicImage::ImageRgba8(rgba), ImageFormat::Png));
    add("exif6.jpg", "image/jpeg", common::exif::with_exif_orientation(&rgb(marked(64, 32), ImageFormat::Jpeg), 6));
    add("one.png", "image/png", rgb(RgbImage::from_pixel(1, 1, Rgb([10, 120, 200])), ImageFormat::Png));
    add("large.jpg", "image/jpeg", rgb(photo(8000, 6000), ImageFormat::Jpeg));
    images
}

// ---------------------------------------------------------------- server --

struct Server {
    images: &'static Images,
    hits: Mutex<BTreeMap<String, usize>>,
    /// Largest body the fetcher accepts (for the over-the-cap answers).
    max_bytes: u64,
}

impl Server {
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().expect("hits").get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().expect("hits").values().sum()
    }

    fn image(&self, name: &str) -> Response {
        match self.images.get(name) {
            Some((ct, bytes)) => ([(header::CONTENT_TYPE, *ct)], bytes.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_string())]).into_response()
}

async fn handle(State(server): State<Arc<Server>>, uri: Uri) -> Response {
    let path = uri.path().to_string();
    let count = {
        let mut hits = server.hits.lock().expect("hits");
        let n = hits.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["img", name] => server.image(name),
        ["status", code] => {
            StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap_or(StatusCode::IM_A_TEAPOT).into_response()
        }
        // Fails the first time only.
        ["flaky", code, _] if count == 1 => {
            StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap_or(StatusCode::IM_A_TEAPOT).into_response()
        }
        ["flaky", _, name] => server.image(name),
        ["hang"] => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
        ["trickle"] => {
            let drip = futures::stream::unfold(0u32, |n| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (n < 10_000).then(|| (Ok::<_, std::io::Error>(Bytes::from_static(b"\xff")), n + 1))
            });
            ([(header::CONTENT_TYPE, "image/jpeg")], Body::from_stream(drip)).into_response()
        }
        ["declared-huge"] => {
            // Claims more than the cap, sends a little, then stalls.
            let first = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"\xff\xd8\xff")) });
            let body = Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()));
            let len = (server.max_bytes + 1).to_string();
            ([(header::CONTENT_TYPE, "image/jpeg".to_string()), (header::CONTENT_LENGTH, len)], body).into_response()
        }
        ["chunked-huge"] => {
            // No Content-Length, and no end.
            let chunk = Bytes::from(vec![0u8; 64 * 1024]);
            let endless = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            ([(header::CONTENT_TYPE, "image/png")], Body::from_stream(endless)).into_response()
        }
        ["html"] => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], "<html><body>Sorry</body></html>").into_response()
        }
        ["text"] => ([(header::CONTENT_TYPE, "text/plain")], "just text").into_response(),
        ["loop"] => redirect("/loop"),
        ["chain", n] => redirect(&format!("/chain/{}", n.parse::<u32>().unwrap_or(0) + 1)),
        ["redirect", name] => redirect(&format!("/img/{name}")),
        ["redirect-file"] => redirect("file:///etc/passwd"),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(images: &'static Images, max_bytes: u64) -> (SocketAddr, Arc<Server>) {
    let server = Arc::new(Server { images, hits: Mutex::new(BTreeMap::new()), max_bytes });
    let app = axum::Router::new().fallback(handle).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, server)
}

// ---------------------------------------------------------------- events --

const T0: &str = "2026-06-01T00:00:00Z";

fn product(id: &str, url: &str) -> String {
    json!({"type": "product.upserted", "product_id": id, "image_url": url, "updated_at": T0}).to_string()
}

fn ad(id: &str, url: &str, extra: serde_json::Value) -> String {
    let mut v = json!({"type": "ad.upserted", "ad_id": id, "image_url": url, "updated_at": T0});
    if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    v.to_string()
}

/// What must become of one input line.
#[derive(Debug, Clone)]
enum Expect {
    /// Dead-lettered, the reason containing this text.
    Dlq(String),
    /// Applied; for upserts, the entity's image was embedded.
    Applied,
    /// Ignored as older than the stored state (counted, not dead-lettered).
    Stale,
}

fn dlq(reason: &str) -> Expect {
    Expect::Dlq(reason.to_string())
}

struct Input {
    lines: Vec<(Vec<u8>, Expect)>,
}

impl Input {
    fn new() -> Self {
        Self { lines: Vec::new() }
    }

    fn push(&mut self, line: impl Into<Vec<u8>>, expect: Expect) {
        let line = line.into();
        assert!(!line.contains(&b'\n'), "one event per line");
        self.lines.push((line, expect));
    }

    fn write(&self, path: &Path) {
        let mut text = Vec::new();
        for (line, _) in &self.lines {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        std::fs::write(path, text).expect("write events");
    }

    fn count(&self, f: impl Fn(&Expect) -> bool) -> u64 {
        self.lines.iter().filter(|(_, e)| f(e)).count() as u64
    }

    /// Every expected dead letter is there (matched by line number) with its
    /// reason, and nothing else was dead-lettered.
    fn check_dlq(&self, config: &Config) {
        let text = std::fs::read_to_string(config.output_dir().join("dlq.jsonl")).unwrap_or_default();
        let mut got: BTreeMap<i64, String> = BTreeMap::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("dlq line is JSON");
            let offset = v["source"]["offset"].as_i64().expect("offset");
            let error = v["error"].as_str().expect("error").to_string();
            assert!(got.insert(offset, error).is_none(), "line {offset} dead-lettered twice");
        }
        let mut problems = Vec::new();
        for (i, (line, expect)) in self.lines.iter().enumerate() {
            let shown = String::from_utf8_lossy(&line[..line.len().min(160)]).into_owned();
            match (expect, got.get(&(i as i64))) {
                (Expect::Dlq(want), Some(reason)) if reason.contains(want.as_str()) => {}
                (Expect::Dlq(want), Some(reason)) => {
                    problems.push(format!("line {i} {shown}\n   want reason containing {want:?}\n   got {reason:?}"))
                }
                (Expect::Dlq(want), None) => {
                    problems.push(format!("line {i} {shown}\n   want DLQ {want:?}, was not dead-lettered"))
                }
                (_, Some(reason)) => {
                    problems.push(format!("line {i} {shown}\n   must not be dead-lettered, got {reason:?}"))
                }
                (_, None) => {}
            }
        }
        assert!(problems.is_empty(), "DLQ mismatches:\n{}", problems.join("\n"));
    }
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

fn base_config(root: &Path, input: &Path) -> Config {
    let mut c = common::config(root, input);
    c.fetch.timeout_ms = 1_500;
    c.fetch.connect_timeout_ms = 500;
    c.fetch.max_bytes = 8 << 20;
    c.fetch.max_redirects = 3;
    c.fetch.allow_file_urls = false;
    c.retry.initial_ms = 10;
    c.retry.max_ms = 50;
    c.retry.max_attempts = 2;
    c
}

// ----------------------------------------------------------------- tests --

/// The generated images are what the pipeline test claims they are, and
/// decode as documented in preprocess.rs (no pipeline involved).
#[test]
fn generated_images_decode_as_documented() {
    let max_side = adrec::config::FetchConfig::default().max_image_side;
    // EXIF orientation 6 (rotate 90° clockwise): 64×32 becomes 32×64 and
    // the red top-left corner moves to the top-right.
    let exif =
        common::exif::with_exif_orientation(&encode(DynamicImage::ImageRgb8(marked(64, 32)), ImageFormat::Jpeg), 6);
    let img = preprocess::decode(&exif, max_side).expect("exif jpeg");
    assert_eq!(img.dimensions(), (32, 64));
    assert!(is_red(img.get_pixel(27, 4)) && !is_red(img.get_pixel(4, 4)));

    // CMYK: the Adobe-convention samples for C0 M100 Y100 K0 decode to red.
    let cmyk = cmyk_jpeg(2, 2, |_, _| [255, 0, 0, 255]);
    assert_eq!(cmyk[cmyk.iter().position(|&b| b == 0xc0).expect("SOF0") + 8], 4, "four components");
    let img = preprocess::decode(&cmyk, max_side).expect("cmyk jpeg");
    assert_eq!(img.dimensions(), (16, 16));
    assert!(is_red(img.get_pixel(5, 5)), "{:?}", img.get_pixel(5, 5));

    // Animated: two frames each, the first (red) one is used.
    let red = RgbaImage::from_pixel(16, 8, Rgba([230, 20, 20, 255]));
    let blue = RgbaImage::from_pixel(16, 8, Rgba([20, 20, 230, 255]));
    for (name, bytes) in [("gif", animated_gif(&[red.clone(), blue.clone()])), ("webp", animated_webp(&[red, blue]))] {
        let frames = match name {
            "gif" => {
                use image::AnimationDecoder;
                image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&bytes)).expect("gif").into_frames().count()
            }
            _ => {
                use image::AnimationDecoder;
                let d = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&bytes)).expect("webp");
                assert!(d.has_animation());
                d.into_frames().count()
            }
        };
        assert_eq!(frames, 2, "{name} has two frames");
        let img = preprocess::decode(&bytes, max_side).expect(name);
        assert!(is_red(img.get_pixel(3, 3)), "{name}: first frame expected, got {:?}", img.get_pixel(3, 3));
    }

    // The bomb claims 50,000 × 50,000 in a few hundred bytes and is refused
    // by the dimension check (allocating it would take 7.5 GB).
    let bomb = bomb_png(50_000, 50_000);
    assert!(bomb.len() < 1_000);
    let dims =
        image::ImageReader::new(std::io::Cursor::new(&bomb)).with_guessed_format().expect("fmt").into_dimensions();
    assert_eq!(dims.expect("header parses"), (50_000, 50_000));
    let err = preprocess::decode(&bomb, max_side).expect_err("bomb");
    assert!(err.to_string().contains("too large"), "{err}");

    // 16-bit input really is 16-bit; 1×1 works.
    let images = image_catalogue();
    let deep = image::load_from_memory(&images["deep.png"].1).expect("deep");
    assert_eq!(deep.color(), image::ColorType::Rgb16);
    assert_eq!(preprocess::decode(&images["one.png"].1, max_side).expect("1x1").dimensions(), (1, 1));
    assert_eq!(preprocess::decode(&images["large.jpg"].1, max_side).expect("large").dimensions(), (8000, 6000));
}

/// Bad events, hostile servers and hostile or unusual images, on one run of
/// the worker; a valid ad at the end lists every convertible image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_end_in_the_dlq_and_the_worker_keeps_going() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let events = tmp.path().join("events.jsonl");
    let config = base_config(tmp.path(), &events);
    let images = image_catalogue();
    assert!((images["large.jpg"].1.len() as u64) < config.fetch.max_bytes, "the large image must fit the byte cap");
    let (addr, server) = serve(images, config.fetch.max_bytes).await;
    let base = format!("http://{addr}");
    let img = |name: &str| format!("{base}/img/{name}");

    let mut input = Input::new();
    let mut embedded: Vec<&str> = Vec::new();
    input.push(product("first", &img("photo.jpg")), Expect::Applied);
    embedded.push("first");

    // --- Events (src/events.rs) ---
    input.push("{this is not json", dlq("invalid JSON"));
    input.push(format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)), dlq("invalid JSON: recursion limit exceeded"));
    input.push("[1,2,3]", dlq("event must be a JSON object, got an array"));
    input.push("\"product.upserted\"", dlq("event must be a JSON object, got a string"));
    input.push("null", dlq("event must be a JSON object, got null"));
    input.push(json!({"product_id": "p"}).to_string(), dlq("missing required field `type`"));
    input.push(json!({"type": 7}).to_string(), dlq("field `type` must be a string"));
    input.push(
        json!({"type": "product.exploded", "product_id": "p", "updated_at": T0}).to_string(),
        dlq("unknown event type `product.exploded`"),
    );
    input.push(
        json!({"type": "product.upserted", "image_url": img("photo.jpg"), "updated_at": T0}).to_string(),
        dlq("missing required field `product_id`"),
    );
    input.push(product("", &img("photo.jpg")), dlq("`product_id` is empty"));
    input.push(product(&"x".repeat(257), &img("photo.jpg")), dlq("`product_id` is 257 bytes, over the 256-byte limit"));
    input.push(product("bell\u{7}id", &img("photo.jpg")), dlq("`product_id` contains a control character"));
    input.push(product("new\nline", &img("photo.jpg")), dlq("`product_id` contains a control character"));
    input.push(product("nul\u{0}", &img("photo.jpg")), dlq("`product_id` contains a control character"));
    input.push(json!({"type": "ad.deleted", "ad_id": "", "updated_at": T0}).to_string(), dlq("`ad_id` is empty"));
    input.push(
        b"{\"type\":\"product.upserted\",\"product_id\":\"\xff\xfe\"}".to_vec(),
        dlq("payload is not valid UTF-8"),
    );
    input.push(
        json!({"type": "product.upserted", "product_id": "big", "image_url": img("photo.jpg"), "updated_at": T0, "title": "a".repeat(70_000)}).to_string(),
        dlq("over the 65536-byte limit (events.max_payload_bytes)"),
    );
    let at = |t: serde_json::Value| {
        json!({"type": "product.upserted", "product_id": "t", "image_url": img("photo.jpg"), "updated_at": t})
            .to_string()
    };
    input.push(at(json!("yesterday")), dlq("`updated_at` is not an RFC 3339 timestamp"));
    input.push(at(json!("2026-13-45T99:00:00Z")), dlq("`updated_at` is not an RFC 3339 timestamp"));
    input.push(at(json!(1_700_000_000)), dlq("field `updated_at` must be a string"));
    input.push(at(json!("2999-01-01T00:00:00Z")), dlq("is more than 86400 s in the future"));
    let ad_img = img("photo.jpg");
    input.push(ad("k0", &ad_img, json!({"k": 0})), dlq("`k` must be between 1 and 100 (recommend.max_k), got 0"));
    input.push(ad("k101", &ad_img, json!({"k": 101})), dlq("`k` must be between 1 and 100 (recommend.max_k), got 101"));
    input.push(ad("kneg", &ad_img, json!({"k": -3})), dlq("got -3"));
    input.push(ad("kstr", &ad_img, json!({"k": "ten"})), dlq("field `k` must be an integer"));
    input.push(ad("f1", &ad_img, json!({"filter": ["in_stock"]})), dlq("`filter` must be an object, got an array"));
    input.push(ad("f2", &ad_img, json!({"filter": {"colour": "red"}})), dlq("`filter` has unknown key `colour`"));
    input.push(ad("f3", &ad_img, json!({"filter": {"in_stock": "yes"}})), dlq("`filter` `in_stock` must be a boolean"));
    input.push(
        ad("f4", &ad_img, json!({"filter": {"attributes": {"c": [1.5]}}})),
        dlq("attribute `c` values must be strings or integers"),
    );
    input.push(ad("f5", &ad_img, json!({"filter": {"attributes": {"c": []}}})), dlq("attribute `c` has an empty list"));
    input.push(
        ad("f6", &ad_img, json!({"filter": {"attributes": ["c"]}})),
        dlq("`filter` `attributes` must be an object"),
    );

    // --- URLs (src/events.rs parse, src/fetch.rs schemes) ---
    input.push(product("u1", "not a url"), dlq("`image_url` is not a valid absolute URL"));
    input.push(product("u2", "/img/photo.jpg"), dlq("`image_url` is not a valid absolute URL"));
    input.push(product("u3", "http://"), dlq("`image_url` is not a valid absolute URL"));
    input.push(product("u4", "http://exa mple.com/a.jpg"), dlq("`image_url` is not a valid absolute URL"));
    input.push(product("s1", "ftp://example.com/a.jpg"), dlq("URL scheme `ftp` is not allowed"));
    input.push(product("s2", "data:image/png;base64,iVBORw0KGgo="), dlq("URL scheme `data` is not allowed"));
    input.push(product("s3", "javascript:alert(1)"), dlq("URL scheme `javascript` is not allowed"));
    input.push(product("s4", "file:///etc/passwd"), dlq("URL scheme `file` is not allowed"));
    input.push(ad("s5", "gopher://example.com/", json!({})), dlq("URL scheme `gopher` is not allowed"));

    // --- Servers (src/fetch.rs) ---
    input.push(product("h404", &format!("{base}/status/404")), dlq("image server answered HTTP 404"));
    input.push(product("h410", &format!("{base}/status/410")), dlq("image server answered HTTP 410"));
    input.push(product("h403", &format!("{base}/status/403")), dlq("image server answered HTTP 403"));
    input.push(product("h429", &format!("{base}/flaky/429/photo.jpg")), Expect::Applied);
    embedded.push("h429");
    input.push(product("h503", &format!("{base}/flaky/503/rgba.png")), Expect::Applied);
    embedded.push("h503");
    input.push(
        product("h500", &format!("{base}/status/500")),
        dlq("gave up after 2 attempts: image server answered HTTP 500"),
    );
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    input.push(
        product("refused", &format!("http://{refused}/a.jpg")),
        dlq("gave up after 2 attempts: cannot reach image server"),
    );
    input.push(
        product("hang", &format!("{base}/hang")),
        dlq("gave up after 2 attempts: download timed out after 1500 ms"),
    );
    input.push(
        product("trickle", &format!("{base}/trickle")),
        dlq("gave up after 2 attempts: download timed out after 1500 ms"),
    );
    input.push(
        product("declared-huge", &format!("{base}/declared-huge")),
        dlq(&format!("larger than the {}-byte limit (fetch.max_bytes): Content-Length is {}", 8 << 20, (8 << 20) + 1)),
    );
    input.push(
        product("chunked-huge", &format!("{base}/chunked-huge")),
        dlq("(fetch.max_bytes): body kept coming past the limit"),
    );
    input.push(product("html", &format!("{base}/html")), dlq("response is `text/html; charset=utf-8`, not an image"));
    input.push(product("text", &format!("{base}/text")), dlq("response is `text/plain`, not an image"));
    input.push(
        product("loop", &format!("{base}/loop")),
        dlq(&format!("redirect loop: {base}/loop was already visited")),
    );
    input.push(product("chain", &format!("{base}/chain/0")), dlq("too many redirects (fetch.max_redirects = 3)"));
    input.push(product("redirect-file", &format!("{base}/redirect-file")), dlq("redirect to a `file` URL refused"));
    input.push(product("redirected", &format!("{base}/redirect/grey.jpg")), Expect::Applied);
    embedded.push("redirected");

    // --- Images (src/embed/preprocess.rs) ---
    input.push(product("html-as-jpeg", &img("html-as-jpeg.jpg")), dlq("cannot decode image: unknown image format"));
    input.push(product("empty", &img("empty.png")), dlq("cannot decode image: the image body is empty (0 bytes)"));
    input.push(product("truncated", &img("truncated.jpg")), dlq("cannot decode image: truncated JPEG"));
    input.push(product("corrupt", &img("corrupt.png")), dlq("cannot decode image"));
    input.push(product("bomb", &img("bomb.png")), dlq("image too large to decode"));
    input.push(ad("bomb-ad", &img("bomb.png"), json!({})), dlq("image too large to decode"));
    for (id, name) in [
        ("anim-gif", "animated.gif"),
        ("anim-webp", "animated.webp"),
        ("cmyk", "cmyk.jpg"),
        ("deep", "deep.png"),
        ("grey", "grey.png"),
        ("grey-jpeg", "grey.jpg"),
        ("grey-alpha", "grey-alpha.png"),
        ("rgba", "rgba.png"),
        ("exif6", "exif6.jpg"),
        ("one-pixel", "one.png"),
        ("large", "large.jpg"),
    ] {
        input.push(product(id, &img(name)), Expect::Applied);
        embedded.push(id);
    }

    // --- A counted skip: an update older than the stored state ---
    let versioned = |t: &str| {
        json!({"type": "product.upserted", "product_id": "versioned", "image_url": img("one.png"), "updated_at": t})
            .to_string()
    };
    input.push(versioned("2026-06-02T00:00:00Z"), Expect::Applied);
    embedded.push("versioned");
    input.push(versioned("2026-06-01T00:00:00Z"), Expect::Stale);

    // --- After all the poison, a valid ad that must list every embedded image ---
    input.push(ad("final-ad", &img("photo.jpg"), json!({"k": 50})), Expect::Applied);
    input.write(&events);

    let started = std::time::Instant::now();
    let report = app::run(config.clone(), CancellationToken::new()).await.expect("the worker survives every input");
    let elapsed = started.elapsed();
    let s = &report.stats;
    input.check_dlq(&config);
    assert_eq!(s.records, input.lines.len() as u64, "{s:?}");
    assert_eq!(s.dead_lettered, input.count(|e| matches!(e, Expect::Dlq(_))), "{s:?}");
    assert_eq!(s.stale, input.count(|e| matches!(e, Expect::Stale)), "{s:?}");
    assert_eq!(s.applied, input.count(|e| matches!(e, Expect::Applied)), "{s:?}");
    assert_eq!(s.images_embedded, embedded.len() as u64 + 1, "products plus the final ad: {s:?}");

    // Transient failures were retried and then succeeded; the permanent ones
    // were tried once; the transient ones that never recover, max_attempts times.
    assert!(s.retries > 0, "{s:?}");
    assert_eq!(server.hits("/flaky/429/photo.jpg"), 2);
    assert_eq!(server.hits("/flaky/503/rgba.png"), 2);
    assert_eq!(server.hits("/status/404"), 1);
    assert_eq!(server.hits("/status/410"), 1);
    assert_eq!(server.hits("/status/500"), 2);
    assert_eq!(server.hits("/hang"), 2);
    assert_eq!(server.hits("/trickle"), 2);

    // The valid ad after all the poison: its list holds every embedded product.
    let final_ad = report.ads.iter().find(|a| a.ad_id == "final-ad").expect("final ad is live");
    let listed: BTreeSet<&str> = final_ad.items.iter().map(|i| i.product_id.as_str()).collect();
    let want: BTreeSet<&str> = embedded.iter().copied().collect();
    assert_eq!(listed, want, "the final ad lists exactly the embedded products");
    let published = std::fs::read_to_string(config.output_dir().join("lists.jsonl")).expect("lists.jsonl");
    assert!(published.lines().any(|l| l.contains("\"final-ad\"")), "the final ad's list was published");

    // Bounded memory: the bomb was never allocated (7.5 GB), the endless body
    // stopped at the cap, and the 8000×6000 image cost about one decoded frame.
    if let Some(peak) = peak_rss_mib() {
        eprintln!("peak RSS {peak} MiB, run took {elapsed:?}");
        assert!(peak < 1_024, "peak RSS {peak} MiB");
    }
    assert!(elapsed < Duration::from_secs(60), "run took {elapsed:?}");
}

/// With `fetch.allow_private_networks = false`, URLs that point at
/// loopback, link-local (cloud metadata), private, carrier-grade NAT or
/// unique-local addresses, literally or through a name, are refused before
/// any connection: the local server never sees a request. (Redirects to such
/// addresses need an allowed first hop, i.e. a public server: they are
/// covered by the unit test `fetch::tests::redirects_are_checked_hop_by_hop`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_addresses_are_refused_before_connecting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let events = tmp.path().join("events.jsonl");
    let mut config = base_config(tmp.path(), &events);
    config.fetch.allow_private_networks = false;
    config.fetch.allow_file_urls = true;
    // Fail-safe: if a check ever regressed, give up on any connection quickly.
    config.fetch.connect_timeout_ms = 300;
    config.fetch.timeout_ms = 600;
    config.retry.max_attempts = 1;
    static NO_IMAGES: std::sync::OnceLock<Images> = std::sync::OnceLock::new();
    let (addr, server) = serve(NO_IMAGES.get_or_init(Images::new), config.fetch.max_bytes).await;
    let port = addr.port();

    let mut input = Input::new();
    // (The address a name resolved to is not checked: hosts files differ.)
    let forbidden = |shown: &str| match shown {
        "" => dlq("URL targets a non-public address"),
        ip => dlq(&format!("URL targets a non-public address {ip} (set fetch.allow_private_networks")),
    };
    for (url, shown) in [
        (format!("http://127.0.0.1:{port}/img/photo.jpg"), "127.0.0.1"),
        (format!("http://localhost:{port}/img/photo.jpg"), ""),
        (format!("http://[::1]:{port}/img/photo.jpg"), "::1"),
        (format!("http://[::ffff:127.0.0.1]:{port}/img/photo.jpg"), "::ffff:127.0.0.1"),
        (format!("http://2130706433:{port}/img/photo.jpg"), "127.0.0.1"),
        (format!("http://0x7f.1:{port}/img/photo.jpg"), "127.0.0.1"),
        (format!("http://0.0.0.0:{port}/img/photo.jpg"), "0.0.0.0"),
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/".into(), "169.254.169.254"),
        ("http://[fd00:ec2::254]/latest/meta-data/".into(), "fd00:ec2::254"),
        ("http://10.0.0.1/a.jpg".into(), "10.0.0.1"),
        ("http://172.16.5.4/a.jpg".into(), "172.16.5.4"),
        ("http://192.168.1.1/a.jpg".into(), "192.168.1.1"),
        ("http://100.64.0.1/a.jpg".into(), "100.64.0.1"),
        ("http://[fd00::1]/a.jpg".into(), "fd00::1"),
        ("http://[fe80::1]/a.jpg".into(), "fe80::1"),
        ("http://[64:ff9b::a9fe:a9fe]/a.jpg".into(), "64:ff9b::a9fe:a9fe"),
    ] {
        let id = format!("p{}", input.lines.len());
        input.push(product(&id, &url), forbidden(shown));
    }
    input.push(ad("ad-metadata", "http://169.254.169.254/latest/meta-data/", json!({})), forbidden("169.254.169.254"));

    // Valid events after the poison (local files are enabled in this config).
    let photo_path = tmp.path().join("photo.png");
    std::fs::write(&photo_path, encode(DynamicImage::ImageRgb8(photo(64, 64)), ImageFormat::Png)).expect("write photo");
    let file_url = url::Url::from_file_path(&photo_path).expect("file url").to_string();
    input.push(product("local", &file_url), Expect::Applied);
    input.push(ad("local-ad", &file_url, json!({"k": 5})), Expect::Applied);
    input.write(&events);

    let report = app::run(config.clone(), CancellationToken::new()).await.expect("run");
    input.check_dlq(&config);
    let s = &report.stats;
    assert_eq!(s.dead_lettered, input.count(|e| matches!(e, Expect::Dlq(_))), "{s:?}");
    assert_eq!(s.applied, 2, "{s:?}");
    assert_eq!(s.retries, 0, "a forbidden address is permanent: {s:?}");
    assert_eq!(server.total_hits(), 0, "no request may reach the loopback server");
    let local_ad = report.ads.iter().find(|a| a.ad_id == "local-ad").expect("local ad is live");
    assert_eq!(local_ad.items.iter().map(|i| i.product_id.as_str()).collect::<Vec<_>>(), ["local"]);
}
