//! Which ONNX operators TensorRT's ONNX parser turns into layers.
//!
//! The table follows the operator matrix of onnx-tensorrt for the TensorRT 10 series
//! (10.14/10.15): an op missing here is not parsed, so ONNX Runtime would hand it to another
//! execution provider and split the graph. Per-op restrictions (attributes, constant
//! inputs) are checked in `lint.rs`; this file only says whether the parser knows the op at
//! all, and from which TensorRT version.

use super::TrtVersion;

/// What TensorRT's parser does with an op type of the default ONNX domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpSupport {
    /// Parsed into TensorRT layers (restrictions may still apply).
    Supported,
    /// Parsed only from this TensorRT version on.
    Since(TrtVersion),
    /// Not parsed: the reason and what to emit instead.
    Unsupported(&'static str),
    /// Parsed, but every graph of ours must avoid it (the lint has a rule of its own).
    Refused(&'static str),
}

/// Op types the TensorRT 10 ONNX parser supports (default domain).
const SUPPORTED: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "AffineGrid",
    "And",
    "ArgMax",
    "ArgMin",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "AveragePool",
    "BatchNormalization",
    "BlackmanWindow",
    "Cast",
    "CastLike",
    "Ceil",
    "Celu",
    "CenterCropPad",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumSum",
    "DeformConv",
    "DepthToSpace",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "EyeLike",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "GridSample",
    "GroupNormalization",
    "GRU",
    "HammingWindow",
    "HannWindow",
    "Hardmax",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "InstanceNormalization",
    "IsInf",
    "IsNaN",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "LpNormalization",
    "LpPool",
    "LRN",
    "LSTM",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "MeanVarianceNormalization",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Neg",
    "Not",
    "OneHot",
    "Or",
    "Pad",
    "Pow",
    "PRelu",
    "QuantizeLinear",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Range",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "ReverseSequence",
    "RNN",
    "RoiAlign",
    "Round",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shape",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Upsample",
    "Where",
    "Xor",
];

/// Supported, but only by newer parsers (opset 23 ops).
const NEWER: &[(&str, TrtVersion)] = &[
    ("Attention", TrtVersion { major: 10, minor: 14 }),
    ("RMSNormalization", TrtVersion { major: 10, minor: 15 }),
    ("RotaryEmbedding", TrtVersion { major: 10, minor: 15 }),
];

/// Ops the parser rejects, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("Unique", "data-dependent output shape; not parsed by TensorRT"),
    ("Compress", "data-dependent output shape; not parsed by TensorRT"),
    ("DFT", "not parsed by TensorRT 10; compute the transform as MatMul with a constant basis"),
    ("STFT", "not parsed by TensorRT 10"),
    ("MatMulInteger", "integer matmul is not parsed; quantize with QuantizeLinear/DequantizeLinear around MatMul"),
    ("ConvInteger", "integer conv is not parsed; quantize with QuantizeLinear/DequantizeLinear around Conv"),
    ("DynamicQuantizeLinear", "not parsed; use static QuantizeLinear/DequantizeLinear scales"),
    ("Det", "not parsed by TensorRT"),
    ("MaxRoiPool", "not parsed by TensorRT"),
    ("MaxUnpool", "not parsed by TensorRT"),
    ("Multinomial", "not parsed; sample on the host"),
    ("Bernoulli", "not parsed; sample on the host"),
    ("NegativeLogLikelihoodLoss", "training op; not parsed"),
    ("SoftmaxCrossEntropyLoss", "training op; not parsed"),
    ("MelWeightMatrix", "not parsed by TensorRT"),
    ("TfIdfVectorizer", "string op; not parsed"),
    ("StringNormalizer", "string op; not parsed"),
    ("BitShift", "not parsed by TensorRT"),
    ("ImageDecoder", "not parsed by TensorRT"),
    ("Col2Im", "not parsed by TensorRT"),
];

/// Ops the parser knows but our graphs must not contain; each has its own lint rule.
const REFUSED: &[(&str, &str)] = &[
    ("If", "control flow: TensorRT needs same-rank branches and ONNX Runtime may split the graph around it; our graphs need none"),
    ("Loop", "control flow: TensorRT needs a build-time trip count and ONNX Runtime may split the graph around it; unroll it in the exporter"),
    ("Scan", "control flow: unroll it in the exporter"),
    ("NonZero", "data-dependent output shape: slow or unsupported; use a mask and Where"),
    ("NonMaxSuppression", "data-dependent output shape; run it on the host"),
    ("Einsum", "older parsers lack ellipsis, diagonal and broadcast forms; emit MatMul and Transpose instead"),
];

/// How TensorRT's parser treats `op_type` of the default domain.
pub fn support(op_type: &str) -> OpSupport {
    if let Some((_, why)) = REFUSED.iter().find(|(op, _)| *op == op_type) {
        return OpSupport::Refused(why);
    }
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(op, _)| *op == op_type) {
        return OpSupport::Unsupported(why);
    }
    if op_type.starts_with("Sequence")
        || op_type.starts_with("Optional")
        || op_type.starts_with("String")
        || op_type == "ConcatFromSequence"
        || op_type == "SplitToSequence"
    {
        return OpSupport::Unsupported("sequence, optional and string values do not exist in TensorRT");
    }
    if op_type.starts_with("QLinear") {
        return OpSupport::Unsupported("QLinear* ops are not parsed; use QuantizeLinear/DequantizeLinear pairs around float ops");
    }
    if let Some((_, since)) = NEWER.iter().find(|(op, _)| *op == op_type) {
        return OpSupport::Since(*since);
    }
    if SUPPORTED.contains(&op_type) {
        return OpSupport::Supported;
    }
    OpSupport::Unsupported("not in TensorRT 10's ONNX parser operator list")
}

/// Inputs that TensorRT reads as shape tensors (host-side values that decide output
/// shapes). A graph input must never reach them: shape-tensor inputs need their own
/// profile values, which ONNX Runtime mishandles, and their volume is limited.
pub fn shape_inputs(op_type: &str) -> &'static [usize] {
    match op_type {
        "Reshape" | "Expand" | "Tile" | "TopK" | "OneHot" | "Pad" | "Split" | "Squeeze" | "Unsqueeze" | "CumSum" => &[1],
        "ConstantOfShape" => &[0],
        "Range" => &[0, 1, 2],
        "Slice" => &[1, 2, 3, 4],
        "Resize" => &[1, 2, 3],
        op if op.starts_with("Reduce") => &[1],
        _ => &[],
    }
}

/// Inputs TensorRT requires to be build-time constants (initializers or folded constants).
pub fn constant_inputs(op_type: &str) -> &'static [(usize, &'static str)] {
    match op_type {
        "Squeeze" | "Unsqueeze" => &[(1, "axes")],
        "CumSum" => &[(1, "axis")],
        "TopK" => &[(1, "K")],
        "Conv" | "ConvTranspose" => &[(1, "weights")],
        op if op.starts_with("Reduce") => &[(1, "axes")],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_sorts_our_ops_and_the_usual_offenders() {
        for op in ["MatMul", "Softmax", "LayerNormalization", "Resize", "Trilu", "Range", "Where", "ConvTranspose", "CumSum", "ScatterND"] {
            assert_eq!(support(op), OpSupport::Supported, "{op}");
        }
        assert_eq!(support("Attention"), OpSupport::Since(TrtVersion { major: 10, minor: 14 }));
        for op in ["Loop", "If", "Scan", "NonZero", "Einsum"] {
            assert!(matches!(support(op), OpSupport::Refused(_)), "{op}");
        }
        for op in ["Unique", "SequenceAt", "OptionalHasElement", "QLinearMatMul", "StringSplit", "GroupQueryAttention", "NoSuchOp"] {
            assert!(matches!(support(op), OpSupport::Unsupported(_)), "{op}");
        }
        assert_eq!(shape_inputs("Slice"), &[1, 2, 3, 4]);
        assert_eq!(shape_inputs("ReduceMean"), &[1]);
        assert!(shape_inputs("MatMul").is_empty());
    }
}
