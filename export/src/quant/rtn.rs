//! Round-to-nearest quantization of a weight `W [N, K]` and the byte layouts the two
//! graph forms read (docs/quantization.md §2).
//!
//! Per block of `block` consecutive weights of one output row (one block spanning the row
//! for per-channel scales):
//!
//! - symmetric: `scale = max|w| / (2^(bits-1) - 1)`, `q = round(w / scale)` in
//!   `[-(2^(bits-1) - 1), 2^(bits-1) - 1]`; the code grid is symmetric so that +max and
//!   −max are both exact.
//! - with zero points: `lo = min(w, 0)`, `hi = max(w, 0)`, `scale = (hi - lo) / (2^bits - 1)`,
//!   `z = round(-lo / scale)`, `q = clamp(round(w / scale) + z, 0, 2^bits - 1)`; zero stays exact.
//!
//! `w ≈ (q - z) · scale`. Scales are rounded to the graph's float type *before* the codes
//! are computed, so the codes are the best ones for the scale the graph will use. `round`
//! is half away from zero. A block of zeros gets scale 0 and the zero code.
//!
//! When K is not a multiple of the block, the last block is padded with the zero code (it
//! dequantizes to 0 and the kernels never read it against real inputs).

use loc3r_bundle::{QuantFormat, WeightBits};

use super::scheme::WeightQuant;
use crate::tensor::DType;

/// The quantized layer as the graph stores it: bytes in their final layout, scales in
/// their final order (as f32; written in the graph's float type).
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    pub codes: Vec<u8>,
    pub scales: Vec<f32>,
    pub zero_points: Option<Vec<u8>>,
}

/// Shapes of a layer's initializers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Weights per scale along K (K itself for per-channel scales).
    pub block: usize,
    pub k_blocks: usize,
    pub codes_shape: Vec<usize>,
    pub scales_shape: Vec<usize>,
    pub zero_points_shape: Option<Vec<usize>>,
}

impl Layout {
    pub fn new(scheme: &WeightQuant, k: usize, n: usize) -> Layout {
        let block = scheme.block_size.unwrap_or(k);
        let k_blocks = k.div_ceil(block);
        let bits = scheme.bits.bits() as usize;
        match scheme.format {
            // MatMulNBits: B [N, k_blocks, block·bits/8], scales [N, k_blocks], zero points
            // packed like B along the blocks: [N, ⌈k_blocks·bits/8⌉].
            QuantFormat::MatMulNBits => Layout {
                block,
                k_blocks,
                codes_shape: vec![n, k_blocks, block * bits / 8],
                scales_shape: vec![n, k_blocks],
                zero_points_shape: (!scheme.symmetric).then(|| vec![n, (k_blocks * bits).div_ceil(8)]),
            },
            // DequantizeLinear on W' [K, N]: per channel, scales [N] (axis 1); blocked, [k_blocks, N] (axis 0).
            QuantFormat::Qdq => Layout {
                block,
                k_blocks,
                codes_shape: vec![k, n],
                scales_shape: match scheme.block_size {
                    None => vec![n],
                    Some(_) => vec![k_blocks, n],
                },
                zero_points_shape: None,
            },
        }
    }
}

/// `value` as the graph's float type will hold it.
fn round_to(dtype: DType, value: f32) -> f32 {
    match dtype {
        DType::F16 => half::f16::from_f32(value).to_f32(),
        DType::BF16 => half::bf16::from_f32(value).to_f32(),
        _ => value,
    }
}

/// One block: its scale, zero code and codes, in the *unsigned* domain `[0, 2^bits)` where
/// the symmetric zero code is `2^(bits-1)`.
fn quantize_block(w: &[f32], bits: u32, symmetric: bool, scale_dtype: DType, codes: &mut Vec<u8>) -> (f32, u8) {
    let levels = (1u32 << bits) - 1;
    let (scale, zero) = if symmetric {
        let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        (round_to(scale_dtype, amax / ((1u32 << (bits - 1)) - 1) as f32), 1u32 << (bits - 1))
    } else {
        let lo = w.iter().fold(0f32, |m, &v| m.min(v));
        let hi = w.iter().fold(0f32, |m, &v| m.max(v));
        let scale = round_to(scale_dtype, (hi - lo) / levels as f32);
        let zero = if scale > 0.0 { (-lo / scale).round().clamp(0.0, levels as f32) as u32 } else { 0 };
        (scale, zero)
    };
    for &v in w {
        let q = if scale > 0.0 { ((v / scale).round() + zero as f32).clamp(0.0, levels as f32) as u32 } else { zero };
        codes.push(q as u8);
    }
    (scale, zero as u8)
}

/// Quantizes `w` (`[n, k]` row-major, the checkpoint's Linear layout) into the layout of
/// `scheme.format`.
pub fn quantize(w: &[f32], n: usize, k: usize, scheme: &WeightQuant, scale_dtype: DType) -> Packed {
    assert_eq!(w.len(), n * k, "quantize: weight has {} elements, not {n}×{k}", w.len());
    let layout = Layout::new(scheme, k, n);
    let bits = scheme.bits.bits();
    let (block, k_blocks) = (layout.block, layout.k_blocks);
    // Unsigned codes per row, padded to k_blocks·block, and the per-(row, block) scale and zero.
    let mut row_codes = Vec::with_capacity(k_blocks * block);
    let mut scales = vec![0f32; n * k_blocks];
    let mut zeros = vec![0u8; n * k_blocks];
    let mut all_codes = Vec::with_capacity(n * k_blocks * block);
    for r in 0..n {
        let row = &w[r * k..(r + 1) * k];
        row_codes.clear();
        for b in 0..k_blocks {
            let chunk = &row[b * block..((b + 1) * block).min(k)];
            let (scale, zero) = quantize_block(chunk, bits, scheme.symmetric, scale_dtype, &mut row_codes);
            row_codes.resize((b + 1) * block, zero);
            scales[r * k_blocks + b] = scale;
            zeros[r * k_blocks + b] = zero;
        }
        all_codes.extend_from_slice(&row_codes);
    }
    match scheme.format {
        QuantFormat::MatMulNBits => {
            let codes = match scheme.bits {
                WeightBits::Int8 => all_codes,
                WeightBits::Int4 => pack_nibbles(&all_codes),
            };
            let zero_points = (!scheme.symmetric).then(|| match scheme.bits {
                WeightBits::Int8 => zeros,
                // Each row's zero points packed separately, so a row with an odd block count ends on a half byte.
                WeightBits::Int4 => zeros.chunks(k_blocks).flat_map(pack_nibbles).collect(),
            });
            Packed { codes, scales, zero_points }
        }
        QuantFormat::Qdq => {
            // Signed codes (symmetric only: the zero code is 2^(bits-1)), transposed to W' [K, N].
            let offset = 1i32 << (bits - 1);
            let stride = k_blocks * block;
            let signed = |kk: usize, r: usize| (i32::from(all_codes[r * stride + kk]) - offset) as i8;
            let transposed: Vec<i8> = (0..k).flat_map(|kk| (0..n).map(move |r| (kk, r))).map(|(kk, r)| signed(kk, r)).collect();
            let codes = match scheme.bits {
                WeightBits::Int8 => transposed.iter().map(|&q| q as u8).collect(),
                WeightBits::Int4 => pack_nibbles(&transposed.iter().map(|&q| (q as u8) & 0x0f).collect::<Vec<_>>()),
            };
            let scales = match scheme.block_size {
                None => scales,
                // [N, k_blocks] → [k_blocks, N]
                Some(_) => (0..k_blocks).flat_map(|b| (0..n).map(move |r| (r, b))).map(|(r, b)| scales[r * k_blocks + b]).collect(),
            };
            Packed { codes, scales, zero_points: None }
        }
    }
}

/// Two 4-bit values per byte, the first in the low nibble; an odd count ends with a zero nibble.
fn pack_nibbles(values: &[u8]) -> Vec<u8> {
    values.chunks(2).map(|p| (p[0] & 0x0f) | (p.get(1).copied().unwrap_or(0) << 4)).collect()
}

fn nibble(bytes: &[u8], i: usize) -> u8 {
    (bytes[i / 2] >> (4 * (i % 2))) & 0x0f
}

/// `W [n, k]` back from a [`Packed`] layer, reading the bytes as ONNX Runtime reads them
/// (the reference the numeric tests compare MatMulNBits and DequantizeLinear against).
pub fn dequantize_matmulnbits(p: &Packed, n: usize, k: usize, scheme: &WeightQuant) -> Vec<f32> {
    let layout = Layout::new(scheme, k, n);
    let (block, k_blocks) = (layout.block, layout.k_blocks);
    let bits = scheme.bits.bits();
    let default_zero = 1u8 << (bits - 1);
    let mut w = vec![0f32; n * k];
    for r in 0..n {
        for kk in 0..k {
            let b = kk / block;
            let i = (r * k_blocks + b) * block + kk % block;
            let q = match scheme.bits {
                WeightBits::Int8 => p.codes[i],
                WeightBits::Int4 => nibble(&p.codes, i),
            };
            let zero = match (&p.zero_points, scheme.bits) {
                (None, _) => default_zero,
                (Some(z), WeightBits::Int8) => z[r * k_blocks + b],
                (Some(z), WeightBits::Int4) => nibble(z, r * (k_blocks * 4).div_ceil(8) * 2 + b),
            };
            w[r * k + kk] = (f32::from(q) - f32::from(zero)) * p.scales[r * k_blocks + b];
        }
    }
    w
}

/// `W [n, k]` back from a QDQ [`Packed`] layer (codes `W' [k, n]`, signed).
pub fn dequantize_qdq(p: &Packed, n: usize, k: usize, scheme: &WeightQuant) -> Vec<f32> {
    let mut w = vec![0f32; n * k];
    for kk in 0..k {
        for r in 0..n {
            let i = kk * n + r;
            let q = match scheme.bits {
                WeightBits::Int8 => f32::from(p.codes[i] as i8),
                WeightBits::Int4 => f32::from(((nibble(&p.codes, i) << 4) as i8) >> 4),
            };
            let scale = match scheme.block_size {
                None => p.scales[r],
                Some(b) => p.scales[(kk / b) * n + r],
            };
            w[r * k + kk] = q * scale;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(bits: WeightBits, format: QuantFormat, block_size: Option<usize>, symmetric: bool) -> WeightQuant {
        WeightQuant { bits, format, block_size, symmetric, accuracy_level: None }
    }

    /// A deterministic pseudo-random weight with an outlier per row (the case per-block scales exist for).
    fn weight(n: usize, k: usize) -> Vec<f32> {
        let mut state = 0x9e3779b97f4a7c15u64;
        (0..n * k)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                if i % k == 3 {
                    u * 20.0
                } else {
                    u
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_error_is_at_most_half_a_step_per_block() {
        let (n, k) = (5, 75); // K not a multiple of any block size
        let w = weight(n, k);
        for bits in [WeightBits::Int4, WeightBits::Int8] {
            for (format, block, symmetric) in [
                (QuantFormat::MatMulNBits, Some(16), true),
                (QuantFormat::MatMulNBits, Some(32), false),
                (QuantFormat::Qdq, Some(32), true),
                (QuantFormat::Qdq, None, true),
            ] {
                let s = scheme(bits, format, block, symmetric);
                let p = quantize(&w, n, k, &s, DType::F32);
                let back = match format {
                    QuantFormat::MatMulNBits => dequantize_matmulnbits(&p, n, k, &s),
                    QuantFormat::Qdq => dequantize_qdq(&p, n, k, &s),
                };
                let bsize = block.unwrap_or(k);
                for r in 0..n {
                    for kk in 0..k {
                        let b = kk / bsize;
                        let scale = match (format, block) {
                            (QuantFormat::MatMulNBits, _) => p.scales[r * k.div_ceil(bsize) + b],
                            (QuantFormat::Qdq, None) => p.scales[r],
                            (QuantFormat::Qdq, Some(_)) => p.scales[b * n + r],
                        };
                        let err = (back[r * k + kk] - w[r * k + kk]).abs();
                        assert!(err <= scale * 0.5 + 1e-6, "{bits} {format} block {block:?}: w[{r},{kk}] off by {err} > scale/2 = {}", scale / 2.0);
                    }
                }
            }
        }
    }

    #[test]
    fn matmulnbits_layout_is_rows_of_blocks_with_low_nibble_first() {
        // One row, K = 20, block 16: two blocks, the second padded with the zero code 8.
        let s = scheme(WeightBits::Int4, QuantFormat::MatMulNBits, Some(16), true);
        let w: Vec<f32> = (0..20)
            .map(|i| {
                if i == 0 {
                    -7.0
                } else if i == 1 {
                    7.0
                } else {
                    0.0
                }
            })
            .collect();
        let p = quantize(&w, 1, 20, &s, DType::F32);
        assert_eq!(Layout::new(&s, 20, 1).codes_shape, vec![1, 2, 8]);
        assert_eq!(p.scales, vec![1.0, 0.0]);
        // codes -7+8 = 1 (low nibble) and 7+8 = 15 (high nibble), then zeros at code 8.
        assert_eq!(p.codes[0], 0xf1);
        assert!(p.codes[1..].iter().all(|&b| b == 0x88), "{:?}", p.codes);
    }

    #[test]
    fn zero_points_pack_per_row_and_keep_zero_exact() {
        let s = scheme(WeightBits::Int4, QuantFormat::MatMulNBits, Some(16), false);
        // 2 rows × 3 blocks: packed zero points are 2 bytes per row.
        let w: Vec<f32> = (0..96).map(|i| (i % 16) as f32 - 3.0).collect();
        let p = quantize(&w, 2, 48, &s, DType::F32);
        assert_eq!(Layout::new(&s, 48, 2).zero_points_shape, Some(vec![2, 2]));
        let z = p.zero_points.as_ref().unwrap();
        assert_eq!(z.len(), 4);
        // lo = -3, hi = 12, scale 1, zero code 3 in every block.
        assert_eq!(z, &vec![0x33, 0x03, 0x33, 0x03]);
        assert_eq!(dequantize_matmulnbits(&p, 2, 48, &s), w);
    }

    #[test]
    fn qdq_int4_codes_are_twos_complement_nibbles_of_the_transposed_weight() {
        let s = scheme(WeightBits::Int4, QuantFormat::Qdq, None, true);
        // W [2, 1] = [[-7], [7]] → W' [1, 2] = [-7, 7] → nibbles 0x9, 0x7.
        let p = quantize(&[-7.0, 7.0], 2, 1, &s, DType::F32);
        assert_eq!(p.codes, vec![0x79]);
        assert_eq!(dequantize_qdq(&p, 2, 1, &s), vec![-7.0, 7.0]);
    }

    #[test]
    fn scales_are_rounded_to_the_graph_float_type_first() {
        let s = scheme(WeightBits::Int8, QuantFormat::MatMulNBits, Some(16), true);
        let w = weight(1, 16);
        let p = quantize(&w, 1, 16, &s, DType::F16);
        assert_eq!(p.scales[0], half::f16::from_f32(p.scales[0]).to_f32());
    }
}
