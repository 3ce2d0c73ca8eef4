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

/// Eight different pictures from the fixture: flips, rotations, a colour
/// change, crops and odd sizes (so resizing is exercised), PNG and JPEG.
fn distinct_images() -> Vec<Vec<u8>> {
    use image::{DynamicImage, ImageFormat, imageops::FilterType};
    let bytes = std::fs::read(common::repo().join("tests/fixtures/ref_image.png")).expect("fixture image");
    let base = image::load_from_memory(&bytes).expect("fixture decodes");
    let encode = |img: DynamicImage, fmt: ImageFormat| {
        let mut buf = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img.to_rgb8()).write_to(&mut buf, fmt).expect("encode");
        buf.into_inner()
    };
    vec![
        bytes.clone(),
        encode(base.fliph(), ImageFormat::Png),
        encode(base.rotate90(), ImageFormat::Jpeg),
        encode(base.huerotate(120), ImageFormat::Png),
        encode(base.crop_imm(0, 0, 112, 112), ImageFormat::Png),
        encode(base.resize_exact(400, 260, FilterType::Triangle), ImageFormat::Jpeg),
        encode(base.grayscale(), ImageFormat::Png),
        encode(base.crop_imm(100, 60, 124, 164).fliph(), ImageFormat::Jpeg),
    ]
}

fn reference_vector() -> Vec<f32> {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/fixtures/ref_embedding.json")).expect("fixture json"),
    )
    .expect("fixture parses");
    fixture["features_l2"].as_array().expect("features_l2").iter().map(|v| v.as_f64().expect("number") as f32).collect()
}

#[test]
fn one_batched_call_equals_single_image_calls_slot_by_slot() {
    let e = embedder();
    let mut images = distinct_images();
    // A broken image in the middle fails its own slot only.
    images.insert(3, b"not an image".to_vec());
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let batched = e.embed_batch(&refs);
    assert_eq!(batched.len(), images.len());
    for (i, (bytes, got)) in images.iter().zip(&batched).enumerate() {
        match e.embed(bytes) {
            Err(single) => assert_eq!(got.as_ref().expect_err("slot must fail like the single call"), &single),
            Ok(single) => {
                let got = got.as_ref().unwrap_or_else(|err| panic!("slot {i}: {err}"));
                let max_diff = got.iter().zip(&single).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(max_diff <= 1e-4, "slot {i}: max |batched - single| = {max_diff}");
            }
        }
    }
    // The reference image (slot 0) still matches the independent Python implementation.
    let cos = cosine(batched[0].as_ref().expect("reference slot"), &reference_vector());
    assert!(cos >= 0.999, "batched path: cosine to the Python onnxruntime reference = {cos}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batcher_hands_every_caller_its_own_vector() {
    use adrec::embed::batcher::{BatchConfig, Batcher};
    let e = embedder();
    let images = distinct_images();
    let singles: Vec<Vec<f32>> = images.iter().map(|b| e.embed(b).expect("single embed")).collect();
    // Distinct enough that a mixed-up result would be caught below.
    for i in 0..singles.len() {
        for j in 0..i {
            assert!(cosine(&singles[i], &singles[j]) < 0.9999, "images {i} and {j} embed alike");
        }
    }
    let config = BatchConfig { max_batch: 5, max_wait: std::time::Duration::from_millis(50), max_concurrent: 2 };
    let batcher = Batcher::new(e.clone(), config);
    // Three rounds of every image, submitted concurrently in an interleaved order.
    let n = images.len();
    let order: Vec<usize> = (0..3).flat_map(|r| (0..n).map(move |i| (i * 5 + r) % n)).collect();
    let calls = order.iter().map(|&i| {
        let (batcher, bytes) = (batcher.clone(), images[i].clone());
        async move { (i, batcher.embed(bytes).await) }
    });
    for (i, result) in futures::future::join_all(calls).await {
        let got = result.expect("embedded");
        let own = cosine(&got, &singles[i]);
        assert!(own >= 0.99999, "caller of image {i}: cosine to its own single embed = {own}");
        for (j, other) in singles.iter().enumerate().filter(|(j, _)| *j != i) {
            assert!(cosine(&got, other) < own, "caller of image {i} got a vector closer to image {j}");
        }
    }
}

#[test]
fn colour_augmented_batch_equals_single_calls_and_the_separately_decoded_histogram() {
    use adrec::adapt::hybrid::ColourAugmented;
    let plain = embedder();
    let tmp = std::env::temp_dir();
    let (bins, weight, max_side) = (8, 1.0, common::config(&tmp, &tmp).fetch.max_image_side);
    let e = ColourAugmented::new(plain.clone(), bins, weight, max_side);
    let mut images = distinct_images();
    images.insert(2, b"not an image".to_vec());
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let batched = e.embed_batch(&refs);
    assert_eq!(batched.len(), images.len());
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    for (i, (bytes, got)) in images.iter().zip(&batched).enumerate() {
        match e.embed(bytes) {
            Err(single) => assert_eq!(got.as_ref().expect_err("slot must fail like the single call"), &single),
            Ok(single) => {
                let got = got.as_ref().unwrap_or_else(|err| panic!("slot {i}: {err}"));
                assert_eq!(got.len(), e.dim());
                let d = max_diff(got, &single);
                assert!(d <= 1e-4, "slot {i}: max |batched - single| = {d}");
                // The colour part from the model's own decode equals a histogram of a decode of its own.
                let mut separate = plain.embed(bytes).expect("plain embed");
                let pixels = adrec::embed::preprocess::resize(
                    &adrec::embed::preprocess::decode(bytes, max_side).expect("decode"),
                    224,
                )
                .expect("resize");
                separate.extend(adrec::adapt::colour::histogram(&pixels, bins).into_iter().map(|x| x * weight));
                adrec::embed::l2_normalise(&mut separate);
                let d = max_diff(got, &separate);
                assert!(d <= 1e-4, "slot {i}: max |shared decode - separate decode| = {d}");
            }
        }
    }
}
