//! One module per graph family of the bundle (docs/bundle.md §3). Each builds its
//! graph(s) from a [`Checkpoint`](crate::checkpoint::Checkpoint) with the graph builder
//! and returns them unsaved; the bundle writer saves them.

pub mod attention;
pub mod context;
pub mod cut3r;
pub mod embed;
pub mod heads;
pub mod layers;
pub mod projector;
pub mod qwen2;
pub mod siglip;

use crate::config::PoolMode;
use crate::tensor::DType;

/// Options shared by every graph family.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Weight and activation precision at graph boundaries (f32 or f16). In f16 graphs,
    /// norm statistics and softmax are still computed in f32.
    pub precision: DType,
    /// Spatial pooling of the vision grid (defaults to the config's).
    pub pooling: PoolMode,
    /// CUT3R input size `(width, height)`, multiples of the CUT3R patch size.
    pub cut3r_size: (usize, usize),
    /// Also export the CUT3R point-map heads (`cut3r_points.onnx`).
    pub cut3r_points: bool,
    /// KV cache interface of the decoder.
    pub kv_cache: qwen2::KvCacheLayout,
    /// Weight-only quantization of selected Linear layers (`None`: float weights).
    pub weights: Option<crate::quant::QuantOptions>,
}
