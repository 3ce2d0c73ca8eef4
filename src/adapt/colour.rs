//! Foreground colour histogram: the colour signature an ImageNet model's
//! pooled features mostly lose, computed on the model's own 224-px input.

use image::RgbImage;

/// Pixels differing from the border colour by more than this (any channel) are foreground.
const FOREGROUND_TOLERANCE: i16 = 12;
/// With fewer foreground pixels than this the whole image is used.
const MIN_FOREGROUND: usize = 50;

/// Joint RGB histogram (`bins` per channel) of the pixels that differ from
/// the border colour (median of the four corners), square-rooted (Hellinger)
/// and L2-normalised. Product shots sit on a uniform backdrop; leaving it out
/// makes the histogram describe the product, not the studio.
pub fn histogram(img: &RgbImage, bins: u32) -> Vec<f32> {
    let bins = bins.max(1) as usize;
    let mut h = vec![0f32; bins * bins * bins];
    let (w, ht) = img.dimensions();
    if w == 0 || ht == 0 {
        return h;
    }
    let corners =
        [img.get_pixel(0, 0), img.get_pixel(w - 1, 0), img.get_pixel(0, ht - 1), img.get_pixel(w - 1, ht - 1)];
    let background: [i16; 3] = std::array::from_fn(|c| {
        let mut v: [i16; 4] = std::array::from_fn(|i| corners[i][c] as i16);
        v.sort_unstable();
        (v[1] + v[2]) / 2
    });
    let is_foreground = |p: &image::Rgb<u8>| (0..3).any(|c| (p[c] as i16 - background[c]).abs() > FOREGROUND_TOLERANCE);
    let foreground = img.pixels().filter(|p| is_foreground(p)).count();
    let use_all = foreground <= MIN_FOREGROUND;
    let bin = |v: u8| v as usize * bins / 256;
    for p in img.pixels().filter(|p| use_all || is_foreground(p)) {
        h[(bin(p[0]) * bins + bin(p[1])) * bins + bin(p[2])] += 1.0;
    }
    h.iter_mut().for_each(|x| *x = x.sqrt());
    crate::embed::l2_normalise(&mut h);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn counts_only_the_product_not_the_backdrop() {
        // White backdrop with a red square: all mass in the red bin.
        let mut img = RgbImage::from_pixel(32, 32, Rgb([255, 255, 255]));
        for y in 8..24 {
            for x in 8..24 {
                img.put_pixel(x, y, Rgb([220, 10, 10]));
            }
        }
        let h = histogram(&img, 4);
        let red = (3 * 4) * 4; // r bin 3, g bin 0, b bin 0
        assert!((h[red] - 1.0).abs() < 1e-6, "{:?}", h);
        assert!((h.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_uniform_image_falls_back_to_all_pixels() {
        let img = RgbImage::from_pixel(16, 16, Rgb([0, 0, 0]));
        let h = histogram(&img, 8);
        assert!((h[0] - 1.0).abs() < 1e-6);
    }
}
