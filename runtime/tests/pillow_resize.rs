//! `stages::preprocess::resize_pil` against Pillow's `Image.resize` (BICUBIC, LANCZOS), and
//! `stages::video::read_image` against Pillow's `exif_transpose(open(f)).convert("RGB")`.
//!
//! Fixtures: `tests/fixtures/preprocess/` written by `tools/golden/pillow_fixtures.py`
//! (Pillow version recorded in its manifest.json). Bit-exact equality is required; on a
//! mismatch the test prints, per case, the max absolute difference and the fraction of
//! differing bytes before failing.

use std::path::{Path, PathBuf};

use loc3r::stages::preprocess::{resize_pil, siglip_norm, siglip_pixels, Filter};
use loc3r::stages::video::read_image;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/preprocess")
}

#[test]
fn resize_matches_pillow_bit_exactly() {
    let dir = fixtures();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json")).unwrap();
    println!("fixtures from Pillow {}", manifest["pillow_version"]);
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    let mut worst = 0u8;
    let mut total_bytes = 0usize;
    let mut total_diff = 0usize;
    let mut failures = Vec::new();
    for case in cases {
        let input = case["input"].as_str().unwrap();
        let in_file = manifest["inputs"][input]["file"].as_str().unwrap();
        let src = read_image(&dir.join(in_file)).unwrap();
        let want = read_image(&dir.join(case["file"].as_str().unwrap())).unwrap();
        let (w, h) = (case["width"].as_u64().unwrap() as usize, case["height"].as_u64().unwrap() as usize);
        let filter = match case["filter"].as_str().unwrap() {
            "bicubic" => Filter::Bicubic,
            "lanczos" => Filter::Lanczos,
            f => panic!("unknown filter {f}"),
        };
        let got = resize_pil(src.view(), w, h, filter).unwrap();
        assert_eq!(got.dim(), want.dim());
        let (mut max, mut diff) = (0u8, 0usize);
        for (a, b) in got.iter().zip(want.iter()) {
            let d = a.abs_diff(*b);
            max = max.max(d);
            diff += (d != 0) as usize;
        }
        worst = worst.max(max);
        total_bytes += got.len();
        total_diff += diff;
        println!(
            "{input} {:?} -> {w}x{h}: max |diff| = {max}, differing bytes = {diff}/{} ({:.4}%)",
            filter,
            got.len(),
            100.0 * diff as f64 / got.len() as f64
        );
        if max != 0 {
            failures.push(format!("{input} {filter:?} {w}x{h}"));
        }
    }
    println!("overall: max |diff| = {worst}, differing bytes = {total_diff}/{total_bytes} ({:.4}%)", 100.0 * total_diff as f64 / total_bytes as f64);
    assert!(failures.is_empty(), "not bit-exact with Pillow: {failures:?}");
}

#[test]
fn siglip_pixels_of_a_fixture_use_the_pillow_resize() {
    let dir = fixtures();
    let src = read_image(&dir.join("in_b_640x480.png")).unwrap();
    let want = read_image(&dir.join("out_b_640x480_bicubic_384x384.png")).unwrap();
    let px = siglip_pixels(&[src.view()], 384).unwrap();
    assert_eq!(px.shape(), &[1, 3, 384, 384]);
    for ((y, x, c), &u) in want.indexed_iter() {
        assert_eq!(px[[0, c, y, x]], siglip_norm(u));
    }
}

/// JPEG (every chroma subsampling, greyscale, progressive, EXIF orientation, partial MCUs) and
/// 16-bit PNG frames decode to Pillow's bytes exactly; 16-bit greyscale is refused clearly.
#[test]
fn decoding_matches_pillow_bit_exactly() {
    let dir = fixtures();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json")).unwrap();
    let cases = manifest["decode"].as_array().expect("decode cases in the manifest (tools/golden/pillow_fixtures.py)");
    assert!(cases.len() >= 8);
    let mut failures = Vec::new();
    for case in cases {
        let input = dir.join(case["input"].as_str().unwrap());
        if case["refused"] == true {
            let e = read_image(&input).expect_err("16-bit greyscale is refused").to_string();
            assert!(e.contains("16-bit greyscale") && e.contains("8-bit"), "{e}");
            continue;
        }
        let got = read_image(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let want = read_image(&dir.join(case["expected"].as_str().unwrap())).unwrap();
        assert_eq!(got.dim(), want.dim(), "{}", input.display());
        let max = got.iter().zip(want.iter()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        let diff = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
        println!("{}: {}x{}, max |diff| = {max}, differing bytes = {diff}/{}", case["input"], got.dim().1, got.dim().0, got.len());
        if max != 0 {
            failures.push(case["input"].to_string());
        }
    }
    assert!(failures.is_empty(), "not bit-exact with Pillow: {failures:?}");
}
