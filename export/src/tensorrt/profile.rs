//! The one optimization profile each engine is built with, generated from the manifest's
//! symbolic shapes and three limits (frames per call, prefill chunk, context length).
//!
//! ONNX Runtime's TensorRT provider keeps its execution context on profile 0, so a graph gets
//! exactly one profile, and it must cover every call the runtime makes: the decoder's
//! chunked prefill (S ≤ C) and its decode steps (S = 1) go through the same one. Without
//! explicit profiles the provider rebuilds the engine whenever a call exceeds the shapes seen
//! so far (minutes for a 7B decoder), so every dynamic input always gets a range.
//!
//! Each symbolic dimension name the exporter writes has a rule here ([`dim_ranges`]); input
//! dimensions that are sums of names (`past_sequence+sequence`) are evaluated at each corner,
//! which keeps tied inputs (mask length = past + new) consistent at min, opt and max.

use std::collections::BTreeMap;

use loc3r_bundle::engines::{InputRange, Profile};
use loc3r_bundle::manifest::{GraphEntry, Manifest};

use crate::error::{Error, Result};

/// Frames per encoder call TensorRT tunes for (and the default opt corner).
const OPT_FRAMES: i64 = 32;

/// The limits a profile is built for (`loc3r-export compile --max-frames/--max-prefill/--max-context`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileLimits {
    /// Frames per call of the per-frame graphs (siglip, projector, cut3r_encoder) and the
    /// frames whose vision tokens the heads see at once.
    pub max_frames: i64,
    /// Positions per decoder call (the prefill chunk C; decode steps are 1).
    pub max_prefill: i64,
    /// Positions a sequence may hold in all (past plus new).
    pub max_context: i64,
}

impl ProfileLimits {
    pub const DEFAULT_MAX_FRAMES: i64 = 64;
    pub const DEFAULT_MAX_PREFILL: i64 = 2048;
    pub const DEFAULT_MAX_CONTEXT: i64 = 8192;

    /// The limits for `manifest`, from the flags where given. The context defaults to the
    /// model's positions (at most 8192) and may not exceed them; the prefill chunk may not
    /// exceed the context.
    pub fn resolve(manifest: &Manifest, max_frames: Option<u32>, max_prefill: Option<u32>, max_context: Option<u32>) -> Result<ProfileLimits> {
        let positions = manifest.runtime.llm.max_positions as i64;
        let max_context = max_context.map_or(Self::DEFAULT_MAX_CONTEXT.min(positions), i64::from);
        let max_prefill = max_prefill.map_or(Self::DEFAULT_MAX_PREFILL.min(max_context), i64::from);
        let max_frames = max_frames.map_or(Self::DEFAULT_MAX_FRAMES, i64::from);
        for (flag, value) in [("--max-frames", max_frames), ("--max-prefill", max_prefill), ("--max-context", max_context)] {
            if value < 1 {
                return Err(Error::Invalid(format!("{flag} {value}: must be at least 1")));
            }
        }
        if max_context > positions {
            return Err(Error::Invalid(format!(
                "--max-context {max_context}: the model has {positions} positions (manifest runtime.llm.max_positions); use at most {positions}"
            )));
        }
        if max_prefill > max_context {
            return Err(Error::Invalid(format!("--max-prefill {max_prefill} exceeds --max-context {max_context}; a prefill chunk lies within the context")));
        }
        Ok(ProfileLimits { max_frames, max_prefill, max_context })
    }

    /// The limits as recorded in `compiled.json`.
    pub fn as_map(&self) -> BTreeMap<String, i64> {
        [("max_frames", self.max_frames), ("max_prefill", self.max_prefill), ("max_context", self.max_context)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}

/// `[min, opt, max]` of one symbolic dimension.
pub type DimRange = [i64; 3];

/// The range of every symbolic dimension name the exporter writes.
///
/// - `batch`: the runtime always runs batch 1.
/// - `frames`: 1 to `max_frames`, tuned for 32 (or fewer when the limit is lower).
/// - `sequence`: new positions per decoder call, 1 (decode) to the prefill chunk; tuned for
///   decode, the step that repeats.
/// - `past_sequence`: positions already in the cache, 0 (first chunk) to context − 1; tuned
///   for decoding late in a long prompt (7/8 of the context: ~7k tokens after a 32-frame video).
/// - `cache_sequence` (static KV layout): the per-sequence buffer, 0 to the context; tuned for
///   what is left after the opt past.
/// - `vision_tokens`: the heads' vision tokens, one frame's to `max_frames` frames'.
pub fn dim_ranges(limits: &ProfileLimits, manifest: &Manifest) -> BTreeMap<&'static str, DimRange> {
    let ProfileLimits { max_frames, max_prefill, max_context } = *limits;
    let opt_frames = OPT_FRAMES.min(max_frames);
    let opt_past = max_context * 7 / 8;
    let tokens_per_frame = manifest.runtime.vision.tokens_per_frame as i64;
    BTreeMap::from([
        ("batch", [1, 1, 1]),
        ("frames", [1, opt_frames, max_frames]),
        ("sequence", [1, 1, max_prefill]),
        ("past_sequence", [0, opt_past, max_context - 1]),
        ("cache_sequence", [0, max_context - opt_past, max_context]),
        ("vision_tokens", [tokens_per_frame, tokens_per_frame * opt_frames, tokens_per_frame * max_frames]),
    ])
}

/// The value of a dimension expression (`64`, `sequence`, `past_sequence+cache_sequence+sequence`)
/// at one corner (0 = min, 1 = opt, 2 = max); `Err` names what has no rule.
pub fn eval_dim(expr: &str, ranges: &BTreeMap<&'static str, DimRange>, corner: usize) -> std::result::Result<i64, String> {
    let mut total = 0i64;
    for term in expr.split('+') {
        let mut product = 1i64;
        for factor in term.split('*') {
            let factor = factor.trim();
            let value = match factor.parse::<i64>() {
                Ok(n) => n,
                Err(_) => ranges.get(factor).map(|r| r[corner]).ok_or_else(|| format!("dimension `{factor}` has no profile rule"))?,
            };
            product = product.saturating_mul(value);
        }
        total = total.saturating_add(product);
    }
    Ok(total)
}

/// One manifest dimension: a size, or a symbolic expression.
fn dim_expr(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().map(|n| n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The profile of `graph` (its manifest entry): a range for every input with a symbolic
/// dimension, checked with [`coverage_problems`] and [`Profile::problems`]. `Err` lists every
/// problem found.
pub fn graph_profile(graph: &str, entry: &GraphEntry, ranges: &BTreeMap<&'static str, DimRange>) -> std::result::Result<Profile, Vec<String>> {
    let mut problems = Vec::new();
    let mut profile = Profile::default();
    for input in &entry.inputs {
        let exprs: Vec<Option<String>> = input.shape.iter().map(dim_expr).collect();
        if exprs.iter().all(|e| e.as_deref().is_some_and(|e| e.parse::<i64>().is_ok())) {
            continue;
        }
        let mut corners = [Vec::new(), Vec::new(), Vec::new()];
        for (axis, expr) in exprs.iter().enumerate() {
            let Some(expr) = expr else {
                problems.push(format!("{graph}: input `{}` dimension {axis} is neither a size nor a name", input.name));
                continue;
            };
            for (corner, dims) in corners.iter_mut().enumerate() {
                match eval_dim(expr, ranges, corner) {
                    Ok(v) => dims.push(v),
                    Err(e) => {
                        problems.push(format!("{graph}: input `{}`: {e}", input.name));
                        break;
                    }
                }
            }
        }
        let [min, opt, max] = corners;
        profile.inputs.push(InputRange { name: input.name.clone(), min, opt, max });
    }
    problems.extend(profile.problems().into_iter().map(|p| format!("{graph}: {p}")));
    problems.extend(coverage_problems(graph, entry, &profile));
    problems.dedup();
    if problems.is_empty() {
        Ok(profile)
    } else {
        Err(problems)
    }
}

/// The self-check against the graph: every input with a symbolic dimension has a range of
/// its rank, every fixed dimension is that size at all three corners, and the profile names
/// no input the graph lacks (ONNX Runtime would reject the whole profile).
pub fn coverage_problems(graph: &str, entry: &GraphEntry, profile: &Profile) -> Vec<String> {
    let mut problems = Vec::new();
    for input in &entry.inputs {
        let dynamic = input.shape.iter().any(|d| d.is_string());
        let Some(range) = profile.input(&input.name) else {
            if dynamic {
                problems.push(format!("{graph}: dynamic input `{}` has no profile range", input.name));
            }
            continue;
        };
        for corner in [&range.min, &range.opt, &range.max] {
            if corner.len() != input.shape.len() {
                problems.push(format!("{graph}: input `{}` has rank {} but its profile range has rank {}", input.name, input.shape.len(), corner.len()));
                break;
            }
            for (axis, (dim, &value)) in input.shape.iter().zip(corner).enumerate() {
                if let Some(size) = dim.as_i64() {
                    if size != value {
                        problems.push(format!("{graph}: input `{}` dimension {axis} is fixed at {size} but the profile says {value}", input.name));
                    }
                }
            }
        }
    }
    for range in &profile.inputs {
        if entry.input(&range.name).is_none() {
            problems.push(format!("{graph}: the profile names `{}`, which is not an input of the graph", range.name));
        }
    }
    problems
}

/// The profile of every graph of the bundle, or every problem found.
pub fn bundle_profiles(manifest: &Manifest, limits: &ProfileLimits) -> Result<BTreeMap<String, Profile>> {
    let ranges = dim_ranges(limits, manifest);
    let mut profiles = BTreeMap::new();
    let mut problems = Vec::new();
    for (graph, entry) in &manifest.graphs {
        match graph_profile(graph, entry, &ranges) {
            Ok(p) => {
                profiles.insert(graph.clone(), p);
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(profiles)
    } else {
        Err(Error::Invalid(format!(
            "cannot build optimization profiles for this bundle:\n{}\n(the bundle comes from another loc3r-export version, or the limits are out of range)",
            crate::error::bullet_list(&problems)
        )))
    }
}

#[cfg(test)]
mod tests {
    use loc3r_bundle::engines::Corner;
    use loc3r_bundle::manifest::IoSpec;
    use serde_json::json;

    use super::*;

    fn io(name: &str, shape: serde_json::Value) -> IoSpec {
        IoSpec { name: name.into(), dtype: "f16".into(), shape: shape.as_array().unwrap().clone() }
    }

    fn ranges(frames: i64, prefill: i64, context: i64) -> BTreeMap<&'static str, DimRange> {
        let opt_past = context * 7 / 8;
        BTreeMap::from([
            ("batch", [1, 1, 1]),
            ("frames", [1, OPT_FRAMES.min(frames), frames]),
            ("sequence", [1, 1, prefill]),
            ("past_sequence", [0, opt_past, context - 1]),
            ("cache_sequence", [0, context - opt_past, context]),
            ("vision_tokens", [210, 210 * 32, 210 * frames]),
        ])
    }

    fn decoder() -> GraphEntry {
        GraphEntry {
            file: "decoder.onnx".into(),
            data: Some("decoder.onnx.data".into()),
            inputs: vec![
                io("inputs_embeds", json!(["batch", "sequence", 3584])),
                io("attention_mask", json!(["batch", "past_sequence+sequence"])),
                io("position_ids", json!(["batch", "sequence"])),
                io("past_key_values.0.key", json!(["batch", 4, "past_sequence", 128])),
                io("flag", json!([1])),
            ],
            outputs: vec![],
            parameters: 0,
        }
    }

    /// The decoder corners of the TensorRT plan: min (S=1, P=0), opt (S=1, P=7168),
    /// max (S=2048, P=8191), with the mask length following P + S at each.
    #[test]
    fn decoder_profile_covers_prefill_and_decode_with_consistent_mask_lengths() {
        let profile = graph_profile("decoder", &decoder(), &ranges(64, 2048, 8192)).unwrap();
        assert_eq!(profile.shapes(Corner::Min), "inputs_embeds:1x1x3584,attention_mask:1x1,position_ids:1x1,past_key_values.0.key:1x4x0x128");
        assert_eq!(profile.shapes(Corner::Opt), "inputs_embeds:1x1x3584,attention_mask:1x7169,position_ids:1x1,past_key_values.0.key:1x4x7168x128");
        assert_eq!(profile.shapes(Corner::Max), "inputs_embeds:1x2048x3584,attention_mask:1x10239,position_ids:1x2048,past_key_values.0.key:1x4x8191x128");
        assert!(profile.input("flag").is_none(), "static inputs need no range");
    }

    #[test]
    fn encoder_and_heads_profiles_follow_the_frame_limit() {
        let siglip = GraphEntry {
            file: "siglip.onnx".into(),
            data: None,
            inputs: vec![io("pixel_values", json!(["frames", 3, 384, 384]))],
            outputs: vec![],
            parameters: 0,
        };
        let p = graph_profile("siglip", &siglip, &ranges(64, 2048, 8192)).unwrap();
        assert_eq!(
            [p.shapes(Corner::Min), p.shapes(Corner::Opt), p.shapes(Corner::Max)],
            ["pixel_values:1x3x384x384", "pixel_values:32x3x384x384", "pixel_values:64x3x384x384"]
        );
        let heads = GraphEntry {
            file: "heads.onnx".into(),
            data: None,
            inputs: vec![io("vision_hidden", json!(["batch", "vision_tokens", 3584]))],
            outputs: vec![],
            parameters: 0,
        };
        let p = graph_profile("heads", &heads, &ranges(64, 2048, 8192)).unwrap();
        assert_eq!(p.shapes(Corner::Max), "vision_hidden:1x13440x3584");
        let p = graph_profile("siglip", &siglip, &ranges(8, 2048, 8192)).unwrap();
        assert_eq!(p.shapes(Corner::Opt), "pixel_values:8x3x384x384", "opt never exceeds max");
    }

    #[test]
    fn unknown_dimension_names_and_uncovered_inputs_are_problems() {
        let mut entry = decoder();
        entry.inputs.push(io("mystery", json!(["batch", "beams"])));
        let problems = graph_profile("decoder", &entry, &ranges(64, 2048, 8192)).unwrap_err().join("\n");
        assert!(problems.contains("decoder: input `mystery`: dimension `beams` has no profile rule"), "{problems}");

        let mut profile = graph_profile("decoder", &decoder(), &ranges(64, 2048, 8192)).unwrap();
        profile.inputs.remove(1);
        profile.inputs[0].max[2] = 4096;
        profile.inputs.push(InputRange { name: "ghost".into(), min: vec![1], opt: vec![1], max: vec![1] });
        let problems = coverage_problems("decoder", &decoder(), &profile).join("\n");
        assert!(problems.contains("dynamic input `attention_mask` has no profile range"), "{problems}");
        assert!(problems.contains("`inputs_embeds` dimension 2 is fixed at 3584 but the profile says 4096"), "{problems}");
        assert!(problems.contains("`ghost`, which is not an input"), "{problems}");
    }

    #[test]
    fn expressions_sum_products_of_names_and_sizes() {
        let r = ranges(64, 2048, 8192);
        assert_eq!(eval_dim("past_sequence+cache_sequence+sequence", &r, 2), Ok(8191 + 8192 + 2048));
        assert_eq!(eval_dim("2*sequence+1", &r, 2), Ok(4097));
        assert_eq!(eval_dim("64", &r, 0), Ok(64));
        assert!(eval_dim("beams", &r, 0).unwrap_err().contains("`beams`"));
    }
}
