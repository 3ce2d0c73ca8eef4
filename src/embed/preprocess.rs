//! Image preprocessing: bytes → decoded (bounded, first frame only) → RGB on
//! white → resized to the model's input size → EXIF-oriented → normalised
//! straight into the NCHW tensor buffer. See [`decode`] for what is converted
//! and the animated-image policy.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

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
/// allocated (a few-KB PNG can claim 50,000 × 50,000), apply the EXIF
/// orientation and flatten onto white: the full-size image as a viewer would
/// show it. [`prepare`] does the same but orients after downscaling.
///
/// What is converted rather than rejected: greyscale (with or without alpha),
/// 16-bit and float samples, alpha (composited over white), CMYK/YCCK JPEGs
/// (converted to RGB by the JPEG decoder), any size from 1×1 up to
/// `max_side` on each side.
///
/// Animated GIF and WebP: **the first frame is used**, the rest are never
/// decoded (the first frame is the poster image a shop shows; decoding every
/// frame would multiply the memory and time an input can cost). An animated
/// image is therefore embedded like a still one, never rejected for being
/// animated.
pub fn decode(bytes: &[u8], max_side: u32) -> Result<RgbImage, EmbedError> {
    let (img, orientation) = decode_unoriented(bytes, max_side)?;
    let mut img = DynamicImage::ImageRgb8(img);
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// Decode (first frame only, see [`decode`]) and flatten, but leave the EXIF
/// orientation to the caller so that it can be applied to a smaller image.
fn decode_unoriented(bytes: &[u8], max_side: u32) -> Result<(RgbImage, Orientation), EmbedError> {
    if bytes.is_empty() {
        return Err(EmbedError::Decode("the image body is empty (0 bytes)".into()));
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EmbedError::Decode(e.to_string()))?;
    match reader.format() {
        None => return Err(EmbedError::Decode("unknown image format (not JPEG, PNG, GIF, WebP or BMP)".into())),
        // The JPEG decoder pads missing data with grey instead of failing.
        Some(ImageFormat::Jpeg) => check_jpeg_complete(bytes)?,
        Some(_) => {}
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
    // For GIF and WebP this reads the first frame of an animation.
    let img = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok((flatten_on_white(img)?, orientation))
}

/// Walk a JPEG's marker segments and entropy-coded data up to the
/// end-of-image marker. A truncated JPEG would otherwise decode "fine", the
/// missing part filled with grey, and be embedded as a different picture.
/// Bytes after the end-of-image marker are ignored (cameras append data).
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), EmbedError> {
    let truncated = || EmbedError::Decode("truncated JPEG: the data ends before the end-of-image marker".into());
    let at = |i: usize| bytes.get(i).copied().ok_or_else(truncated);
    let mut i = 2; // after SOI
    loop {
        // Skip to the next marker (tolerating junk between segments), then past fill bytes.
        while at(i)? != 0xff {
            i += 1;
        }
        while at(i)? == 0xff {
            i += 1;
        }
        let marker = at(i)?;
        i += 1;
        match marker {
            0xd9 => return Ok(()),
            // Markers without a length: restart markers and TEM.
            0xd0..=0xd7 | 0x01 => continue,
            _ => {}
        }
        let len = u16::from_be_bytes([at(i)?, at(i + 1)?]) as usize;
        if len < 2 {
            return Err(EmbedError::Decode(format!("corrupt JPEG: segment length {len} at byte {i}")));
        }
        i += len;
        if marker == 0xda {
            // Entropy-coded data: runs until a marker other than a stuffed
            // 0xFF00 or a restart marker.
            loop {
                if at(i)? == 0xff {
                    let next = at(i + 1)?;
                    if next == 0x00 || (0xd0..=0xd7).contains(&next) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
        }
    }
}

fn decode_error(e: image::ImageError) -> EmbedError {
    match e {
        image::ImageError::Limits(l) => EmbedError::TooLarge(l.to_string()),
        other => EmbedError::Decode(other.to_string()),
    }
}

/// Drop alpha by compositing over white: product shots sit on white, and
/// transparent pixels' colour channels are arbitrary (often black). Done in
/// place, so a large RGBA image does not need a second full-size buffer.
fn flatten_on_white(img: DynamicImage) -> Result<RgbImage, EmbedError> {
    if !img.color().has_alpha() {
        return Ok(img.into_rgb8());
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut buf = rgba.into_raw();
    let pixels = buf.len() / 4;
    // Pixel i moves from 4i to 3i: never ahead of the bytes still to be read.
    for i in 0..pixels {
        let a = buf[4 * i + 3] as u32;
        for c in 0..3 {
            buf[3 * i + c] = ((buf[4 * i + c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    buf.truncate(3 * pixels);
    RgbImage::from_raw(w, h, buf).ok_or_else(|| EmbedError::Decode("flattening produced a short buffer".into()))
}

/// Resize the whole image (no crop) to the model's square input, bilinear
/// with antialiasing. Reads `img` in place (no full-size copy).
pub fn resize(img: &RgbImage, size: u32) -> Result<RgbImage, EmbedError> {
    if img.width() == size && img.height() == size {
        return Ok(img.clone());
    }
    let mut dst = RgbImage::new(size, size);
    Resizer::new()
        .resize(img, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)))
        .map_err(|e| EmbedError::Decode(format!("resize: {e}")))?;
    Ok(dst)
}

/// Write one image (already `size`×`size`) into `out` (len 3·size², CHW),
/// scaled to [0, 1] then normalised by mean/std: one multiply-add per sample.
pub fn normalise_into(img: &RgbImage, spec: &InputSpec, out: &mut [f32]) {
    let plane = (spec.size * spec.size) as usize;
    debug_assert_eq!(out.len(), 3 * plane);
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * spec.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| spec.mean[c] / spec.std[c]);
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    // Planes and pixels zipped: no index arithmetic or bounds checks in the loop.
    for (((px, r), g), b) in img.as_raw().chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = px[0] as f32 * scale[0] - shift[0];
        *g = px[1] as f32 * scale[1] - shift[1];
        *b = px[2] as f32 * scale[2] - shift[2];
    }
}

/// Decode, resize, orient and normalise into a fresh CHW tensor (see [`prepare_into`]).
pub fn prepare(bytes: &[u8], spec: &InputSpec, max_side: u32) -> Result<Vec<f32>, EmbedError> {
    let mut out = vec![0.0; input_len(spec)];
    prepare_into(bytes, spec, max_side, &mut out)?;
    Ok(out)
}

/// Floats one image takes in the input tensor (3·size²).
pub fn input_len(spec: &InputSpec) -> usize {
    3 * (spec.size as usize) * (spec.size as usize)
}

/// Decode, resize, orient and normalise straight into `out`, one image's
/// slot of a batch tensor (len 3·size², CHW): no tensor-sized copy is made.
/// The whole image is squeezed into the square input, so orienting after
/// resizing gives the same pixels as before it, without rotating a
/// full-size copy. An image already at the input size is not resized.
/// Peak memory is the decoded frame (capped at 1 GiB by the decoder limits)
/// plus at most one 8-bit RGB copy of it for 16-bit or greyscale sources.
pub fn prepare_into(bytes: &[u8], spec: &InputSpec, max_side: u32, out: &mut [f32]) -> Result<(), EmbedError> {
    prepare_core(bytes, spec, max_side, out, None).map(drop)
}

/// [`prepare_into`], also returning the image of the same decode at
/// `side`×`side`, oriented: the model's own input pixels when `side` is the
/// input size. Features computed beside the model's (the colour histogram)
/// then need no second decode.
pub fn prepare_into_keeping(
    bytes: &[u8],
    spec: &InputSpec,
    max_side: u32,
    out: &mut [f32],
    side: u32,
) -> Result<RgbImage, EmbedError> {
    prepare_core(bytes, spec, max_side, out, Some(side))?
        .ok_or_else(|| EmbedError::Runtime("preprocessing kept no image".into()))
}

/// [`prepare_into`], keeping the image at `keep`×`keep` if asked.
fn prepare_core(
    bytes: &[u8],
    spec: &InputSpec,
    max_side: u32,
    out: &mut [f32],
    keep: Option<u32>,
) -> Result<Option<RgbImage>, EmbedError> {
    if out.len() != input_len(spec) {
        return Err(EmbedError::Runtime(format!("tensor slot holds {} floats, need {}", out.len(), input_len(spec))));
    }
    let (full, orientation) = decode_unoriented(bytes, max_side)?;
    // Another size is taken from the full image while it is still here.
    let other = match keep {
        Some(side) if side != spec.size => Some(oriented(resize(&full, side)?, orientation)),
        _ => None,
    };
    let small = if full.dimensions() == (spec.size, spec.size) {
        full
    } else {
        let small = resize(&full, spec.size)?;
        drop(full);
        small
    };
    let small = oriented(small, orientation);
    normalise_into(&small, spec, out);
    Ok(match keep {
        Some(side) if side == spec.size => Some(small),
        _ => other,
    })
}

/// Apply an EXIF orientation (no copy when there is none).
fn oriented(img: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return img;
    }
    let mut img = DynamicImage::ImageRgb8(img);
    img.apply_orientation(orientation);
    img.into_rgb8()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

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
        assert!(decode(b"", 1000).expect_err("empty").to_string().contains("empty (0 bytes)"));
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

    include!("../../tests/common/exif.rs");

    /// 64×32, white with a red 16×16 block in the top-left corner.
    fn marked_jpeg() -> Vec<u8> {
        let img = RgbImage::from_fn(64, 32, |x, y| {
            if x < 16 && y < 16 { image::Rgb([255, 0, 0]) } else { image::Rgb([255, 255, 255]) }
        });
        encode(DynamicImage::ImageRgb8(img), ImageFormat::Jpeg)
    }

    fn is_red(p: &image::Rgb<u8>) -> bool {
        p[0] > 200 && p[1] < 60 && p[2] < 60
    }

    #[test]
    fn exif_orientation_is_applied() {
        let plain = decode(&marked_jpeg(), 1000).expect("decode");
        assert_eq!(plain.dimensions(), (64, 32));
        assert!(is_red(plain.get_pixel(4, 4)));
        // 6 = rotate 90° clockwise to display: the top-left goes top-right.
        let rotated = decode(&with_exif_orientation(&marked_jpeg(), 6), 1000).expect("decode");
        assert_eq!(rotated.dimensions(), (32, 64));
        assert!(is_red(rotated.get_pixel(27, 4)), "{:?}", rotated.get_pixel(27, 4));
        assert!(!is_red(rotated.get_pixel(4, 4)));
    }

    #[test]
    fn orienting_after_the_resize_matches_orienting_before() {
        let spec = InputSpec { size: 16, mean: [0.0; 3], std: [1.0; 3] };
        for orientation in 1..=8 {
            let bytes = with_exif_orientation(&marked_jpeg(), orientation);
            let mut expected = vec![0.0; 3 * 256];
            normalise_into(&resize(&decode(&bytes, 1000).expect("decode"), 16).expect("resize"), &spec, &mut expected);
            let got = prepare(&bytes, &spec, 1000).expect("prepare");
            let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 2.0 / 255.0, "orientation {orientation}: max difference {worst}");
        }
    }

    #[test]
    fn the_kept_image_is_the_model_input_or_the_same_decode_at_another_side() {
        let spec = InputSpec { size: 16, mean: [0.0; 3], std: [1.0; 3] };
        let bytes = with_exif_orientation(&marked_jpeg(), 6);
        let mut plain = vec![0.0; 3 * 256];
        prepare_into(&bytes, &spec, 1000, &mut plain).expect("prepare");
        let mut out = vec![0.0; 3 * 256];
        let kept = prepare_into_keeping(&bytes, &spec, 1000, &mut out, 16).expect("keep");
        assert_eq!(out, plain, "keeping the image does not change the tensor");
        let mut from_kept = vec![0.0; 3 * 256];
        normalise_into(&kept, &spec, &mut from_kept);
        assert_eq!(from_kept, plain, "at the input side the kept image is the model's input");
        let other = prepare_into_keeping(&bytes, &spec, 1000, &mut out, 24).expect("keep 24");
        assert_eq!(other.dimensions(), (24, 24));
        // Oriented like the model input: the red corner went to the top right.
        assert!(is_red(other.get_pixel(20, 2)) && !is_red(other.get_pixel(2, 2)), "{:?}", other.get_pixel(20, 2));
    }

    #[test]
    fn in_place_flattening_matches_per_pixel_compositing() {
        let img = RgbaImage::from_fn(37, 23, |x, y| {
            Rgba([(x * 7) as u8, (y * 11) as u8, (x * y) as u8, ((x + y) * 5) as u8])
        });
        let rgb = flatten_on_white(DynamicImage::ImageRgba8(img.clone())).expect("flatten");
        assert_eq!(rgb.dimensions(), (37, 23));
        for (x, y, p) in img.enumerate_pixels() {
            let a = p[3] as f32 / 255.0;
            for c in 0..3 {
                let want = p[c] as f32 * a + 255.0 * (1.0 - a);
                assert!((rgb.get_pixel(x, y)[c] as f32 - want).abs() <= 0.5 + 1e-3, "({x},{y}) channel {c}");
            }
        }
    }

    #[test]
    fn sixteen_bit_and_grey_alpha_are_converted() {
        let rgb16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(5, 3, image::Rgb([65535u16, 0, 32896]));
        let out = decode(&encode(DynamicImage::ImageRgb16(rgb16), ImageFormat::Png), 100).expect("16-bit");
        assert_eq!(out.get_pixel(0, 0).0, [255, 0, 128]);
        let la = image::GrayAlphaImage::from_pixel(3, 5, image::LumaA([0, 0]));
        let out = decode(&encode(DynamicImage::ImageLumaA8(la), ImageFormat::Png), 100).expect("grey+alpha");
        assert_eq!((out.dimensions(), out.get_pixel(1, 1).0), ((3, 5), [255, 255, 255]));
    }

    #[test]
    fn animated_gif_uses_the_first_frame() {
        use image::codecs::gif::{GifEncoder, Repeat};
        let frame = |c: [u8; 4]| image::Frame::new(RgbaImage::from_pixel(8, 8, Rgba(c)));
        let mut bytes = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut bytes);
            enc.set_repeat(Repeat::Infinite).expect("repeat");
            enc.encode_frames([frame([255, 0, 0, 255]), frame([0, 0, 255, 255])]).expect("gif");
        }
        let out = decode(&bytes, 100).expect("decode");
        assert!(is_red(out.get_pixel(3, 3)), "{:?}", out.get_pixel(3, 3));
    }

    #[test]
    fn truncated_jpeg_is_rejected_but_trailing_bytes_are_not() {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 251) as u8]));
        let jpeg = encode(DynamicImage::ImageRgb8(img), ImageFormat::Jpeg);
        assert!(decode(&jpeg, 1000).is_ok());
        for cut in [jpeg.len() - 2, jpeg.len() * 3 / 4, jpeg.len() / 2, 200] {
            let err = decode(&jpeg[..cut], 1000).expect_err("truncated");
            assert!(err.to_string().contains("truncated JPEG"), "cut at {cut}: {err}");
        }
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"\0\0camera trailer\xff\xff");
        assert!(decode(&trailing, 1000).is_ok());
        // EXIF (with its own markers inside APP1) does not confuse the walk.
        assert!(decode(&with_exif_orientation(&jpeg, 3), 1000).is_ok());
    }
}
