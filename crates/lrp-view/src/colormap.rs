//! Colors: the symmetric blue-white-red heatmap, grayscale images, and the xterm 256-color palette.

/// An sRGB color.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

fn channel(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Blue-white-red for `v ∈ [−1, 1]` (relevance divided by the largest |R|): 0 is white, +1 red, −1 blue.
/// Values outside the range are clamped; NaN is white.
pub fn heat(v: f32) -> Rgb {
    let v = if v.is_nan() { 0.0 } else { v.clamp(-1.0, 1.0) };
    if v >= 0.0 {
        let c = channel(1.0 - v);
        Rgb(255, c, c)
    } else {
        let c = channel(1.0 + v);
        Rgb(c, c, 255)
    }
}

/// Grayscale for `v ∈ [0, 1]` (0 black, 1 white).
pub fn gray(v: f32) -> Rgb {
    let c = channel(if v.is_nan() { 0.0 } else { v });
    Rgb(c, c, c)
}

const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

fn nearest_cube(c: u8) -> (usize, u8) {
    CUBE.iter()
        .enumerate()
        .min_by_key(|(_, l)| (c as i32 - **l as i32).abs())
        .map(|(i, l)| (i, *l))
        .expect("non-empty")
}

fn dist(a: Rgb, b: Rgb) -> i32 {
    let d = |x: u8, y: u8| (x as i32 - y as i32).pow(2);
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

/// The nearest xterm 256-color palette index: the 6×6×6 cube (16–231) or the gray ramp (232–255).
pub fn xterm256(c: Rgb) -> u8 {
    let (ri, rl) = nearest_cube(c.0);
    let (gi, gl) = nearest_cube(c.1);
    let (bi, bl) = nearest_cube(c.2);
    let cube_index = 16 + 36 * ri + 6 * gi + bi;
    let cube = Rgb(rl, gl, bl);
    let avg = (c.0 as u32 + c.1 as u32 + c.2 as u32) / 3;
    let gray_step = (avg.saturating_sub(8) / 10).min(23);
    let g = (8 + 10 * gray_step) as u8;
    if dist(c, Rgb(g, g, g)) < dist(c, cube) {
        232 + gray_step as u8
    } else {
        cube_index as u8
    }
}
