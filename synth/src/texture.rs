//! Procedural surface texture: a checker pattern times two octaves of value noise, as a
//! brightness factor around 1 (the colour name of an object stays recognisable).

use crate::rng::mix64;
use crate::scene::Material;

/// Brightness factor of `material` at surface coordinates `uv` (metres).
pub fn brightness(material: &Material, uv: [f64; 2]) -> f64 {
    let cell = material.checker;
    let parity = ((uv[0] / cell).floor() as i64 + (uv[1] / cell).floor() as i64) & 1;
    let checker = (if parity == 0 { -0.5 } else { 0.5 }) * material.checker_contrast;
    let f = material.noise_frequency;
    let n = 0.65 * value_noise(uv[0] * f, uv[1] * f, material.noise_seed) + 0.35 * value_noise(uv[0] * f * 2.7, uv[1] * f * 2.7, material.noise_seed ^ 0xA5A5);
    1.0 + checker + (n - 0.5) * 2.0 * material.noise_contrast
}

/// Smoothly interpolated lattice noise in [0, 1).
fn value_noise(x: f64, y: f64, seed: u64) -> f64 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i64, fy as i64);
    let (tx, ty) = (smooth(x - fx), smooth(y - fy));
    let h = |i: i64, j: i64| {
        let k = mix64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
        (k >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    };
    let top = h(ix, iy) * (1.0 - tx) + h(ix + 1, iy) * tx;
    let bottom = h(ix, iy + 1) * (1.0 - tx) + h(ix + 1, iy + 1) * tx;
    top * (1.0 - ty) + bottom * ty
}

fn smooth(t: f64) -> f64 {
    t * t * (3.0 - 2.0 * t)
}
