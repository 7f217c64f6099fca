//! What to quantize and how: the validated settings behind `loc3r-export export --weights`,
//! `--block-size`, `--quant-format`, `--zero-points`, `--accuracy-level`, `--quantize-also`
//! and `--preset` (docs/quantization.md §1).

use std::fmt;
use std::str::FromStr;

use loc3r_bundle::{Graph, QuantFormat, Quantization, WeightBits};

use crate::error::{Error, Result};

/// How one linear layer's weight is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightQuant {
    pub bits: WeightBits,
    pub format: QuantFormat,
    /// Weights per scale along K; `None`: one scale per output channel (QDQ int8 only).
    pub block_size: Option<usize>,
    pub symmetric: bool,
    /// MatMulNBits' `accuracy_level` (0-4); `None` for QDQ.
    pub accuracy_level: Option<u8>,
}

/// Groups of linear layers that can be quantized, each inside one graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuantLayer {
    /// The LLM decoder's q/k/v/o and gate/up/down projections (`decoder.onnx`).
    Decoder,
    /// The LLM's output projection (`decoder.onnx`, last position only).
    LmHead,
    /// SigLIP's MLPs (`fc1`, `fc2` of every layer; `siglip.onnx`).
    Siglip,
    /// CUT3R's transformer MLPs (`fc1`, `fc2`; `cut3r_encoder.onnx`, `cut3r_step.onnx`).
    Cut3r,
}

impl QuantLayer {
    pub const ALL: [QuantLayer; 4] = [QuantLayer::Decoder, QuantLayer::LmHead, QuantLayer::Siglip, QuantLayer::Cut3r];

    pub fn as_str(self) -> &'static str {
        match self {
            QuantLayer::Decoder => "decoder",
            QuantLayer::LmHead => "lm_head",
            QuantLayer::Siglip => "siglip",
            QuantLayer::Cut3r => "cut3r",
        }
    }

    /// The graphs these layers live in.
    pub fn graphs(self) -> &'static [Graph] {
        match self {
            QuantLayer::Decoder | QuantLayer::LmHead => &[Graph::Decoder],
            QuantLayer::Siglip => &[Graph::Siglip],
            QuantLayer::Cut3r => &[Graph::Cut3rEncoder, Graph::Cut3rStep],
        }
    }

    /// The group the Linear at checkpoint path `path` of graph `graph` belongs to, if any.
    pub fn of(graph: &str, path: &str) -> Option<QuantLayer> {
        let last = path.rsplit('.').next().unwrap_or(path);
        let mlp = matches!(last, "fc1" | "fc2");
        match graph {
            "decoder" if path == "lm_head" => Some(QuantLayer::LmHead),
            "decoder" if path.starts_with("model.layers.") => Some(QuantLayer::Decoder),
            "siglip" if mlp => Some(QuantLayer::Siglip),
            "cut3r_encoder" | "cut3r_step" if mlp => Some(QuantLayer::Cut3r),
            _ => None,
        }
    }
}

impl fmt::Display for QuantLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QuantLayer {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        QuantLayer::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| format!("unknown layer group `{s}`; use lm_head, siglip or cut3r (the decoder's layers are always quantized)"))
    }
}

/// Named combinations of the quantization flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The fastest combination that passes the accuracy gates on the CPU (docs/quantization.md §4).
    Cpu,
    /// The QDQ form TensorRT builds INT8 layers from: int8 weights, one scale per output channel.
    TensorRtInt8,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Cpu => "cpu",
            Preset::TensorRtInt8 => "tensorrt-int8",
        }
    }

    /// The settings the preset stands for.
    pub fn options(self) -> QuantOptions {
        match self {
            // int4 with block 32, int8 activation compute and lm_head quantized too: the fastest
            // decode measured on the CPU (docs/quantization.md §5; lm_head is a third of the
            // small model's decoder bytes), and it passes the gates (tests/tests/quant_gates.rs).
            Preset::Cpu => QuantOptions {
                scheme: WeightQuant {
                    bits: WeightBits::Int4,
                    format: QuantFormat::MatMulNBits,
                    block_size: Some(32),
                    symmetric: true,
                    accuracy_level: Some(4),
                },
                layers: vec![QuantLayer::Decoder, QuantLayer::LmHead],
                preset: Some(self),
            },
            Preset::TensorRtInt8 => QuantOptions {
                scheme: WeightQuant { bits: WeightBits::Int8, format: QuantFormat::Qdq, block_size: None, symmetric: true, accuracy_level: None },
                layers: vec![QuantLayer::Decoder, QuantLayer::LmHead],
                preset: Some(self),
            },
        }
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Preset::Cpu),
            "tensorrt-int8" => Ok(Preset::TensorRtInt8),
            other => Err(format!("unknown preset `{other}`; use cpu or tensorrt-int8")),
        }
    }
}

/// Validated quantization settings of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantOptions {
    pub scheme: WeightQuant,
    /// Sorted, without repeats; always holds [`QuantLayer::Decoder`].
    pub layers: Vec<QuantLayer>,
    pub preset: Option<Preset>,
}

/// The quantization flags as given on the command line, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantRequest {
    /// `fp` (none), `int8` or `int4`; `None` when not given.
    pub weights: Option<String>,
    pub block_size: Option<usize>,
    pub format: Option<QuantFormat>,
    pub zero_points: bool,
    pub accuracy_level: Option<u8>,
    /// Layer groups beyond the decoder's.
    pub also: Vec<QuantLayer>,
    pub preset: Option<Preset>,
}

/// Block sizes both forms take: MatMulNBits needs a power of two ≥ 16.
pub const BLOCK_SIZES: [usize; 5] = [16, 32, 64, 128, 256];

impl QuantRequest {
    /// The flags given that refine a quantization (all but `--weights` and `--preset`).
    fn detail_flags(&self) -> Vec<&'static str> {
        [
            (self.block_size.is_some(), "--block-size"),
            (self.format.is_some(), "--quant-format"),
            (self.zero_points, "--zero-points"),
            (self.accuracy_level.is_some(), "--accuracy-level"),
            (!self.also.is_empty(), "--quantize-also"),
        ]
        .into_iter()
        .filter_map(|(set, flag)| set.then_some(flag))
        .collect()
    }

    /// The settings, or `None` for float weights; every contradiction is an input error
    /// that says which flag to drop or change.
    pub fn resolve(&self) -> Result<Option<QuantOptions>> {
        let bad = |m: String| Err(Error::Invalid(m));
        if let Some(preset) = self.preset {
            let given: Vec<&str> = self.weights.is_some().then_some("--weights").into_iter().chain(self.detail_flags()).collect();
            if !given.is_empty() {
                return bad(format!(
                    "--preset {} sets the quantization itself; drop {} (or drop --preset and give every setting)",
                    preset.as_str(),
                    given.join(", ")
                ));
            }
            return Ok(Some(preset.options()));
        }
        let bits = match self.weights.as_deref() {
            None | Some("fp" | "fp32" | "float") => None,
            Some("int8") => Some(WeightBits::Int8),
            Some("int4") => Some(WeightBits::Int4),
            Some(other) => return bad(format!("--weights {other}: use fp, int8 or int4")),
        };
        let Some(bits) = bits else {
            let stray = self.detail_flags();
            if !stray.is_empty() {
                return bad(format!("{} only apply to quantized weights; add --weights int8 or --weights int4", stray.join(", ")));
            }
            return Ok(None);
        };
        let format = self.format.unwrap_or(QuantFormat::MatMulNBits);
        if let Some(b) = self.block_size {
            if !BLOCK_SIZES.contains(&b) {
                return bad(format!("--block-size {b}: use one of 16, 32, 64, 128, 256 (MatMulNBits needs a power of two of at least 16)"));
            }
        }
        let block_size = match (format, bits) {
            // TensorRT's INT8 weights carry one scale per output channel; blocked INT8 is not a TensorRT form.
            (QuantFormat::Qdq, WeightBits::Int8) => {
                if let Some(b) = self.block_size {
                    return bad(format!(
                        "--block-size {b} with --weights int8 --quant-format qdq: QDQ int8 weights have one scale per output channel (TensorRT's INT8 form); drop --block-size"
                    ));
                }
                None
            }
            (_, WeightBits::Int4) => Some(self.block_size.unwrap_or(32)),
            (QuantFormat::MatMulNBits, WeightBits::Int8) => Some(self.block_size.unwrap_or(128)),
        };
        if format == QuantFormat::Qdq && self.zero_points {
            return bad("--zero-points with --quant-format qdq: TensorRT takes symmetric weights only (zero point 0); drop --zero-points, or use --quant-format matmulnbits".into());
        }
        let accuracy_level = match format {
            QuantFormat::MatMulNBits => {
                let level = self.accuracy_level.unwrap_or(4);
                if level > 4 {
                    return bad(format!("--accuracy-level {level}: use 0 (as A's type), 1 (fp32), 2 (fp16), 3 (bf16) or 4 (int8)"));
                }
                Some(level)
            }
            QuantFormat::Qdq => {
                if let Some(level) = self.accuracy_level {
                    return bad(format!("--accuracy-level {level} is a MatMulNBits attribute; QDQ graphs have none: drop it"));
                }
                None
            }
        };
        let mut layers = vec![QuantLayer::Decoder];
        layers.extend(self.also.iter().copied());
        layers.sort();
        layers.dedup();
        Ok(Some(QuantOptions { scheme: WeightQuant { bits, format, block_size, symmetric: !self.zero_points, accuracy_level }, layers, preset: None }))
    }
}

impl QuantOptions {
    /// The scheme for the Linear at `path` of graph `graph`, if it is quantized.
    pub fn for_linear(&self, graph: &str, path: &str) -> Option<WeightQuant> {
        QuantLayer::of(graph, path).filter(|l| self.layers.contains(l)).map(|_| self.scheme)
    }

    /// Whether any layer of `graph` is quantized.
    pub fn touches(&self, graph: Graph) -> bool {
        self.layers.iter().any(|l| l.graphs().contains(&graph))
    }

    /// Refuses settings the exported graphs cannot take, naming the graph and why.
    pub fn check_graphs(&self, exported: &[Graph], precision: crate::DType) -> Result<()> {
        for layer in &self.layers {
            if let Some(missing) = layer.graphs().iter().find(|g| !exported.contains(g)) {
                return Err(Error::Invalid(format!(
                    "quantizing the {layer} layers needs the `{missing}` graph, which --graphs leaves out; add it to --graphs or drop {}",
                    if *layer == QuantLayer::Decoder { "--weights".to_string() } else { format!("{layer} from --quantize-also") }
                )));
            }
        }
        if precision == crate::DType::BF16 {
            return Err(Error::Invalid("quantized weights need an fp32 or fp16 export (scales are stored in the graph's float type)".into()));
        }
        Ok(())
    }

    /// The manifest's record of these settings.
    pub fn manifest_entry(&self, graphs: &[Graph]) -> Quantization {
        Quantization {
            weights: self.scheme.bits,
            format: self.scheme.format,
            block_size: self.scheme.block_size,
            symmetric: self.scheme.symmetric,
            accuracy_level: self.scheme.accuracy_level,
            method: "rtn".into(),
            layers: self.layers.iter().map(|l| l.as_str().to_string()).collect(),
            graphs: graphs.iter().filter(|g| self.touches(**g)).map(|g| g.name().to_string()).collect(),
            preset: self.preset.map(|p| p.as_str().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(weights: &str) -> QuantRequest {
        QuantRequest { weights: Some(weights.into()), ..QuantRequest::default() }
    }

    #[test]
    fn defaults_per_width_and_format() {
        let q = request("int4").resolve().unwrap().unwrap();
        assert_eq!(
            q.scheme,
            WeightQuant { bits: WeightBits::Int4, format: QuantFormat::MatMulNBits, block_size: Some(32), symmetric: true, accuracy_level: Some(4) }
        );
        assert_eq!(q.layers, vec![QuantLayer::Decoder]);
        let q = QuantRequest { format: Some(QuantFormat::Qdq), ..request("int8") }.resolve().unwrap().unwrap();
        assert_eq!((q.scheme.block_size, q.scheme.accuracy_level), (None, None));
        assert_eq!(request("fp").resolve().unwrap(), None);
        assert_eq!(QuantRequest::default().resolve().unwrap(), None);
    }

    #[test]
    fn contradictions_name_the_flag_to_drop() {
        let cases = [
            (QuantRequest { preset: Some(Preset::Cpu), ..request("int8") }, "drop --weights"),
            (QuantRequest { block_size: Some(48), ..request("int4") }, "power of two"),
            (QuantRequest { block_size: Some(64), format: Some(QuantFormat::Qdq), ..request("int8") }, "one scale per output channel"),
            (QuantRequest { zero_points: true, format: Some(QuantFormat::Qdq), ..request("int4") }, "symmetric weights only"),
            (QuantRequest { accuracy_level: Some(4), format: Some(QuantFormat::Qdq), ..request("int4") }, "MatMulNBits attribute"),
            (QuantRequest { accuracy_level: Some(7), ..request("int4") }, "--accuracy-level 7"),
            (QuantRequest { block_size: Some(32), ..QuantRequest::default() }, "add --weights"),
            (request("int3"), "use fp, int8 or int4"),
        ];
        for (req, needle) in cases {
            let e = req.resolve().unwrap_err().to_string();
            assert!(e.contains(needle), "{req:?}: {e}");
        }
    }

    #[test]
    fn layers_are_found_by_graph_and_path() {
        assert_eq!(QuantLayer::of("decoder", "model.layers.3.mlp.down_proj"), Some(QuantLayer::Decoder));
        assert_eq!(QuantLayer::of("decoder", "lm_head"), Some(QuantLayer::LmHead));
        assert_eq!(QuantLayer::of("siglip", "vision_tower.encoder.layers.0.mlp.fc1"), Some(QuantLayer::Siglip));
        assert_eq!(QuantLayer::of("siglip", "vision_tower.encoder.layers.0.self_attn.q_proj"), None);
        assert_eq!(QuantLayer::of("cut3r_step", "dec_blocks.1.mlp.fc2"), Some(QuantLayer::Cut3r));
        assert_eq!(QuantLayer::of("heads", "pos_head.0"), None);
        let q = request("int4").resolve().unwrap().unwrap();
        assert!(q.for_linear("decoder", "lm_head").is_none(), "lm_head only with --quantize-also lm_head");
    }

    #[test]
    fn a_layer_whose_graph_is_not_exported_is_refused_by_name() {
        let q = QuantRequest { also: vec![QuantLayer::Siglip], ..request("int4") }.resolve().unwrap().unwrap();
        let e = q.check_graphs(&[Graph::Decoder], crate::DType::F32).unwrap_err().to_string();
        assert!(e.contains("`siglip` graph") && e.contains("--quantize-also"), "{e}");
        let e = q.check_graphs(&[Graph::Siglip], crate::DType::F32).unwrap_err().to_string();
        assert!(e.contains("`decoder` graph") && e.contains("--weights"), "{e}");
    }
}
