//! The real model through the real ONNX Runtime: deterministic, and equal to
//! an independent implementation (Python onnxruntime, recorded once in
//! tests/fixtures/ref_embedding.json by models/make_reference_fixture.py).

mod common;

use adrec::app;
use adrec::embed::Embedder;

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn embedder() -> std::sync::Arc<dyn Embedder> {
    let tmp = std::env::temp_dir();
    app::load_embedder(&common::config(&tmp, &tmp)).expect("model and ONNX Runtime (run models/fetch)")
}

#[test]
fn same_image_same_vector() {
    let e = embedder();
    let bytes = std::fs::read(common::repo().join("tests/fixtures/ref_image.png")).expect("fixture image");
    let a = e.embed(&bytes).expect("embed");
    let b = e.embed(&bytes).expect("embed again");
    assert_eq!(a.len(), e.dim());
    let max_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-5, "max |a-b| = {max_diff}");
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "vectors are L2-normalised, norm = {norm}");
}

#[test]
fn matches_the_python_reference() {
    let e = embedder();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/ref_embedding.json")).expect("fixture json"),
    )
    .expect("fixture parses");
    assert_eq!(fixture["model_id"].as_str(), Some(e.model_id()), "fixture recorded for another model");
    let reference: Vec<f32> = fixture["features_l2"]
        .as_array()
        .expect("features_l2")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    let bytes = std::fs::read(common::repo().join("tests/fixtures/ref_image.png")).expect("fixture image");
    let ours = e.embed(&bytes).expect("embed");
    assert_eq!(ours.len(), reference.len());
    let cos = cosine(&ours, &reference);
    assert!(cos >= 0.999, "cosine to the Python onnxruntime reference = {cos}");
}

#[test]
fn different_images_differ() {
    let e = embedder();
    let encode = |img: image::RgbImage| {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png).expect("encode");
        buf.into_inner()
    };
    let red = encode(image::RgbImage::from_pixel(64, 64, image::Rgb([220, 20, 20])));
    let stripes = encode(image::RgbImage::from_fn(64, 64, |_, y| {
        if y % 8 < 4 { image::Rgb([0, 0, 0]) } else { image::Rgb([255, 255, 255]) }
    }));
    let a = e.embed(&red).expect("embed");
    let b = e.embed(&stripes).expect("embed");
    assert!(cosine(&a, &b) < 0.95, "unrelated images must not look identical");
}
