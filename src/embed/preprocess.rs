//! Image preprocessing: bytes → decoded (bounded, EXIF-oriented) → RGB on
//! white → resized to the model's input size → normalised straight into the
//! NCHW tensor buffer.

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use super::EmbedError;

/// How the model wants its input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// Square input side, pixels.
    pub size: u32,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean.
    pub std: [f32; 3],
}

/// Decode image bytes with dimension limits checked before pixels are
/// allocated (a few-KB PNG can claim 50,000 × 50,000).
pub fn decode(bytes: &[u8], max_side: u32) -> Result<RgbImage, EmbedError> {
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EmbedError::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(EmbedError::Decode("unknown image format (not JPEG, PNG, GIF, WebP or BMP)".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(1 << 30);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(EmbedError::Decode("image has no pixels".into()));
    }
    let orientation = decoder.orientation().map_err(decode_error)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    img.apply_orientation(orientation);
    Ok(flatten_on_white(img))
}

fn decode_error(e: image::ImageError) -> EmbedError {
    match e {
        image::ImageError::Limits(l) => EmbedError::TooLarge(l.to_string()),
        other => EmbedError::Decode(other.to_string()),
    }
}

/// Drop alpha by compositing over white: product shots sit on white, and
/// transparent pixels' colour channels are arbitrary (often black).
fn flatten_on_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = src[3] as u32;
        for c in 0..3 {
            dst[c] = ((src[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

/// Resize the whole image (no crop) to the model's square input, bilinear
/// with antialiasing.
pub fn resize(img: &RgbImage, size: u32) -> Result<RgbImage, EmbedError> {
    if img.width() == size && img.height() == size {
        return Ok(img.clone());
    }
    let src = FirImage::from_vec_u8(img.width(), img.height(), img.as_raw().clone(), PixelType::U8x3)
        .map_err(|e| EmbedError::Decode(format!("resize source: {e}")))?;
    let mut dst = FirImage::new(size, size, PixelType::U8x3);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)))
        .map_err(|e| EmbedError::Decode(format!("resize: {e}")))?;
    RgbImage::from_raw(size, size, dst.into_vec()).ok_or_else(|| EmbedError::Decode("resize produced a short buffer".into()))
}

/// Write one image (already `size`×`size`) into `out` (len 3·size², CHW),
/// scaled to [0, 1] then normalised by mean/std.
pub fn normalise_into(img: &RgbImage, spec: &InputSpec, out: &mut [f32]) {
    let plane = (spec.size * spec.size) as usize;
    debug_assert_eq!(out.len(), 3 * plane);
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * spec.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| spec.mean[c] / spec.std[c]);
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px[c] as f32 * scale[c] - shift[c];
        }
    }
}

/// Decode, resize and normalise into a fresh CHW tensor.
pub fn prepare(bytes: &[u8], spec: &InputSpec, max_side: u32) -> Result<Vec<f32>, EmbedError> {
    let img = resize(&decode(bytes, max_side)?, spec.size)?;
    let mut out = vec![0.0; 3 * (spec.size * spec.size) as usize];
    normalise_into(&img, spec, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgba, RgbaImage};

    fn encode(img: DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, fmt).expect("encode");
        buf.into_inner()
    }

    fn spec() -> InputSpec {
        InputSpec { size: 8, mean: [0.5; 3], std: [0.25; 3] }
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(decode(b"<html>nope</html>", 1000), Err(EmbedError::Decode(_))));
        let mut png = encode(DynamicImage::new_rgb8(32, 32), ImageFormat::Png);
        png.truncate(png.len() / 2);
        assert!(matches!(decode(&png, 1000), Err(EmbedError::Decode(_))));
    }

    #[test]
    fn dimension_limit_rejects_before_decoding() {
        let png = encode(DynamicImage::new_rgb8(300, 20), ImageFormat::Png);
        assert!(matches!(decode(&png, 256), Err(EmbedError::TooLarge(_))));
    }

    #[test]
    fn transparent_pixels_become_white() {
        let img = RgbaImage::from_pixel(4, 4, Rgba([0, 0, 0, 0]));
        let rgb = decode(&encode(DynamicImage::ImageRgba8(img), ImageFormat::Png), 100).expect("decode");
        assert!(rgb.pixels().all(|p| p.0 == [255, 255, 255]));
    }

    #[test]
    fn normalisation_is_chw_with_mean_and_std() {
        let mut img = RgbImage::new(8, 8);
        img.put_pixel(1, 0, image::Rgb([255, 0, 128]));
        let bytes = encode(DynamicImage::ImageRgb8(img), ImageFormat::Png);
        let t = prepare(&bytes, &spec(), 100).expect("prepare");
        assert_eq!(t.len(), 3 * 64);
        assert!((t[1] - (1.0 - 0.5) / 0.25).abs() < 1e-6, "R of pixel (1,0)");
        assert!((t[64 + 1] - (0.0 - 0.5) / 0.25).abs() < 1e-6, "G plane");
        assert!((t[0] + 2.0).abs() < 1e-6, "black pixel");
    }

    #[test]
    fn any_size_resizes_to_the_input() {
        for (w, h) in [(1, 1), (40, 10), (3, 500)] {
            let bytes = encode(DynamicImage::new_rgb8(w, h), ImageFormat::Png);
            assert_eq!(prepare(&bytes, &spec(), 1000).expect("prepare").len(), 3 * 64);
        }
    }
}
