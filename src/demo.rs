//! A generated demo catalogue: garment silhouettes in visually distinct
//! families (shape × colour × pattern), product shots with small random
//! variations, and ad creatives that each resemble one family but are framed
//! differently (another size, aspect, background and placement).
//!
//! Everything is drawn here from a seed, so the demo needs no download and
//! tests know every image's family.

use std::io::Write;
use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Garment outline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// T-shirt with sleeves.
    Tee,
    /// A-line dress.
    Dress,
    /// Two-legged trousers.
    Trousers,
}

/// Fill pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pattern {
    /// Solid colour.
    Plain,
    /// Horizontal stripes in the second colour.
    Stripes,
    /// Checks.
    Checks,
    /// Polka dots.
    Dots,
}

/// One visual family of the demo catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Family label (also the products' `family` attribute).
    pub name: &'static str,
    /// Category attribute ads can filter on.
    pub category: &'static str,
    /// Outline.
    pub shape: Shape,
    /// Pattern.
    pub pattern: Pattern,
    /// Main colour.
    pub primary: [u8; 3],
    /// Pattern colour.
    pub secondary: [u8; 3],
}

/// The demo families.
pub const FAMILIES: [Family; 6] = [
    Family {
        name: "red-striped-tee",
        category: "tee",
        shape: Shape::Tee,
        pattern: Pattern::Stripes,
        primary: [200, 30, 40],
        secondary: [250, 250, 250],
    },
    Family {
        name: "navy-plain-tee",
        category: "tee",
        shape: Shape::Tee,
        pattern: Pattern::Plain,
        primary: [25, 35, 90],
        secondary: [25, 35, 90],
    },
    Family {
        name: "green-check-dress",
        category: "dress",
        shape: Shape::Dress,
        pattern: Pattern::Checks,
        primary: [30, 140, 60],
        secondary: [235, 240, 230],
    },
    Family {
        name: "yellow-dot-dress",
        category: "dress",
        shape: Shape::Dress,
        pattern: Pattern::Dots,
        primary: [240, 200, 30],
        secondary: [20, 20, 20],
    },
    Family {
        name: "black-trousers",
        category: "trousers",
        shape: Shape::Trousers,
        pattern: Pattern::Plain,
        primary: [30, 30, 30],
        secondary: [30, 30, 30],
    },
    Family {
        name: "blue-striped-trousers",
        category: "trousers",
        shape: Shape::Trousers,
        pattern: Pattern::Stripes,
        primary: [50, 100, 190],
        secondary: [170, 200, 240],
    },
];

/// Ads of the demo: (ad id, family index, list length, only in-stock, category filter).
pub const ADS: [(&str, usize, usize, bool, Option<&str>); 4] = [
    ("summer-stripes", 0, 10, true, None),
    ("garden-party", 2, 10, true, Some("dress")),
    ("sunny-days", 3, 10, false, None),
    ("denim-week", 5, 10, true, Some("trousers")),
];

/// Outline polygon in unit coordinates (x, y in [0, 1], y down).
fn outline(shape: Shape) -> &'static [(f32, f32)] {
    match shape {
        Shape::Tee => &[
            (0.35, 0.10),
            (0.45, 0.14),
            (0.55, 0.14),
            (0.65, 0.10),
            (0.92, 0.28),
            (0.82, 0.42),
            (0.74, 0.36),
            (0.74, 0.92),
            (0.26, 0.92),
            (0.26, 0.36),
            (0.18, 0.42),
            (0.08, 0.28),
        ],
        Shape::Dress => &[
            (0.40, 0.06),
            (0.60, 0.06),
            (0.62, 0.30),
            (0.58, 0.40),
            (0.86, 0.94),
            (0.14, 0.94),
            (0.42, 0.40),
            (0.38, 0.30),
        ],
        Shape::Trousers => {
            &[(0.28, 0.06), (0.72, 0.06), (0.80, 0.94), (0.58, 0.94), (0.50, 0.40), (0.42, 0.94), (0.20, 0.94)]
        }
    }
}

fn inside(poly: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut odd = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            odd = !odd;
        }
        j = i;
    }
    odd
}

fn jitter(rng: &mut StdRng, c: [u8; 3], amount: i32) -> [u8; 3] {
    c.map(|v| (v as i32 + rng.random_range(-amount..=amount)).clamp(0, 255) as u8)
}

/// Where and how big the garment sits on the canvas.
struct Placement {
    cx: f32,
    cy: f32,
    side: f32,
}

fn draw(img: &mut RgbImage, fam: &Family, at: &Placement, rng: &mut StdRng) {
    let poly = outline(fam.shape);
    let primary = jitter(rng, fam.primary, 12);
    let secondary = jitter(rng, fam.secondary, 12);
    let period = rng.random_range(0.07..0.10) * at.side;
    let (w, h) = img.dimensions();
    for py in 0..h {
        for px in 0..w {
            let u = (px as f32 - at.cx) / at.side + 0.5;
            let v = (py as f32 - at.cy) / at.side + 0.5;
            if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) || !inside(poly, u, v) {
                continue;
            }
            let (x, y) = (u * at.side, v * at.side);
            let second = match fam.pattern {
                Pattern::Plain => false,
                Pattern::Stripes => (y / period) as i32 % 2 == 1,
                Pattern::Checks => ((x / period) as i32 + (y / period) as i32) % 2 == 1,
                Pattern::Dots => {
                    let (fx, fy) = ((x / period).fract() - 0.5, (y / period).fract() - 0.5);
                    fx * fx + fy * fy < 0.09
                }
            };
            img.put_pixel(px, py, Rgb(if second { secondary } else { primary }));
        }
    }
}

/// A product shot: square, near-white background, garment centred with small variations.
pub fn product_image(fam: &Family, rng: &mut StdRng) -> RgbImage {
    let side = 256;
    let bg = jitter(rng, [246, 246, 246], 6);
    let mut img = RgbImage::from_pixel(side, side, Rgb(bg));
    let scale = rng.random_range(0.78..0.95) * side as f32;
    let at = Placement {
        cx: side as f32 / 2.0 + rng.random_range(-12.0..12.0),
        cy: side as f32 / 2.0 + rng.random_range(-12.0..12.0),
        side: scale,
    };
    draw(&mut img, fam, &at, rng);
    img
}

/// An ad creative: landscape banner, tinted background, garment large and
/// off-centre, a flat "headline" bar.
pub fn ad_image(fam: &Family, rng: &mut StdRng) -> RgbImage {
    let (w, h) = (400, 300);
    let bg = jitter(rng, [225, 215, 200], 10);
    let mut img = RgbImage::from_pixel(w, h, Rgb(bg));
    let at = Placement { cx: 140.0, cy: 150.0, side: 270.0 };
    draw(&mut img, fam, &at, rng);
    let bar = jitter(rng, [60, 60, 60], 10);
    for y in 120..150 {
        for x in 280..380 {
            img.put_pixel(x, y, Rgb(bar));
        }
    }
    img
}

/// Summary of a generated catalogue.
pub struct DemoCatalogue {
    /// Number of products.
    pub products: usize,
    /// Number of ads.
    pub ads: usize,
}

/// Write images to `dir/images/` and events to `dir/events/{products,ads}.jsonl`,
/// with image URLs under `base_url` (e.g. `http://127.0.0.1:8765`).
pub fn generate(dir: &Path, base_url: &str, per_family: usize, seed: u64) -> std::io::Result<DemoCatalogue> {
    let images = dir.join("images");
    let events = dir.join("events");
    std::fs::create_dir_all(&images)?;
    std::fs::create_dir_all(&events)?;
    let base = base_url.trim_end_matches('/');
    let mut rng = StdRng::seed_from_u64(seed);
    let save = |img: &RgbImage, name: &str| -> std::io::Result<()> {
        img.save_with_format(images.join(name), ImageFormat::Jpeg).map_err(std::io::Error::other)
    };
    let mut products = std::io::BufWriter::new(std::fs::File::create(events.join("products.jsonl"))?);
    let mut count = 0;
    for (f, fam) in FAMILIES.iter().enumerate() {
        for i in 0..per_family {
            let id = format!("{}-{:03}", fam.name, i);
            save(&product_image(fam, &mut rng), &format!("{id}.jpg"))?;
            // Every tenth product is out of stock, so in-stock filters visibly matter.
            let in_stock = i % 10 != 9;
            let event = json!({
                "type": "product.upserted",
                "product_id": id,
                "image_url": format!("{base}/images/{id}.jpg"),
                "title": format!("{} #{i}", fam.name.replace('-', " ")),
                "in_stock": in_stock,
                "attributes": { "category": fam.category, "family": fam.name, "price": 20 + (f * 7 + i) % 60 },
                "updated_at": "2026-12-01T09:00:00Z",
            });
            writeln!(products, "{event}")?;
            count += 1;
        }
    }
    products.flush()?;
    let mut ads = std::io::BufWriter::new(std::fs::File::create(events.join("ads.jsonl"))?);
    for (ad_id, fam_idx, k, in_stock, category) in ADS {
        save(&ad_image(&FAMILIES[fam_idx], &mut rng), &format!("ad-{ad_id}.jpg"))?;
        let mut filter = serde_json::Map::new();
        if in_stock {
            filter.insert("in_stock".into(), json!(true));
        }
        if let Some(c) = category {
            filter.insert("attributes".into(), json!({ "category": [c] }));
        }
        let event = json!({
            "type": "ad.upserted",
            "ad_id": ad_id,
            "image_url": format!("{base}/images/ad-{ad_id}.jpg"),
            "k": k,
            "filter": filter,
            "updated_at": "2026-12-01T09:00:00Z",
        });
        writeln!(ads, "{event}")?;
    }
    ads.flush()?;
    Ok(DemoCatalogue { products: count, ads: ADS.len() })
}

/// The family of a demo product id (`<family>-<n>`).
pub fn family_of(product_id: &str) -> Option<&'static str> {
    FAMILIES.iter().map(|f| f.name).find(|name| {
        product_id
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('-') && rest[1..].chars().all(|c| c.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_events_and_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cat = generate(dir.path(), "http://127.0.0.1:1", 3, 7).expect("generate");
        assert_eq!(cat.products, 18);
        let lines = std::fs::read_to_string(dir.path().join("events/products.jsonl")).expect("read");
        assert_eq!(lines.lines().count(), 18);
        assert!(dir.path().join("images/red-striped-tee-000.jpg").exists());
        assert!(dir.path().join("images/ad-summer-stripes.jpg").exists());
        assert_eq!(family_of("red-striped-tee-002"), Some("red-striped-tee"));
        assert_eq!(family_of("navy-plain-tee-x"), None);
    }

    #[test]
    fn same_seed_same_images() {
        let a = product_image(&FAMILIES[2], &mut StdRng::seed_from_u64(3));
        let b = product_image(&FAMILIES[2], &mut StdRng::seed_from_u64(3));
        assert_eq!(a, b);
    }
}
