//! The graphs a bundle can hold, and the files they are stored in.

use std::fmt;

/// One graph of a bundle. Its [`name`](Graph::name) is the key in `manifest.json`'s `graphs`
/// and the file stem: `<name>.onnx`, with the weights in `<name>.onnx.data` when the graph has any.
/// [`io`](crate::io) lists each graph's inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Graph {
    /// SigLIP vision tower: `pixel_values` → `image_features`.
    Siglip,
    /// LLaVA projector with pooling and grid newlines, plus the camera projector.
    Projector,
    /// Token embedding lookup: `input_ids` → `inputs_embeds`.
    Embed,
    /// One Qwen2 step with a KV cache (prefill and decode).
    Decoder,
    /// Loc3R localisation heads (position, orientation, BEV).
    Heads,
    /// CUT3R image encoder: `image` → `features`.
    Cut3rEncoder,
    /// One recurrent CUT3R frame: features, state and memory → camera token, pose, new state.
    Cut3rStep,
    /// Optional CUT3R point-map heads (`loc3r-export export --cut3r-points`).
    Cut3rPoints,
}

impl Graph {
    /// Every graph, in export order.
    pub const ALL: [Graph; 8] =
        [Graph::Siglip, Graph::Projector, Graph::Embed, Graph::Decoder, Graph::Heads, Graph::Cut3rEncoder, Graph::Cut3rStep, Graph::Cut3rPoints];
    /// The VLM graphs, in export order.
    pub const VLM: [Graph; 5] = [Graph::Siglip, Graph::Projector, Graph::Embed, Graph::Decoder, Graph::Heads];
    /// The CUT3R graphs every bundle with CUT3R has, in export order.
    pub const CUT3R: [Graph; 2] = [Graph::Cut3rEncoder, Graph::Cut3rStep];
    /// The graphs the runtime's pipeline runs (a bundle may hold more).
    pub const PIPELINE: [Graph; 7] = [Graph::Siglip, Graph::Projector, Graph::Embed, Graph::Decoder, Graph::Heads, Graph::Cut3rEncoder, Graph::Cut3rStep];

    /// The manifest key and file stem.
    pub const fn name(self) -> &'static str {
        match self {
            Graph::Siglip => "siglip",
            Graph::Projector => "projector",
            Graph::Embed => "embed",
            Graph::Decoder => "decoder",
            Graph::Heads => "heads",
            Graph::Cut3rEncoder => "cut3r_encoder",
            Graph::Cut3rStep => "cut3r_step",
            Graph::Cut3rPoints => "cut3r_points",
        }
    }

    /// The ONNX file, `<name>.onnx`.
    pub fn file_name(self) -> String {
        format!("{}.onnx", self.name())
    }

    /// The external-data file holding the graph's weights, `<name>.onnx.data`.
    pub fn data_file_name(self) -> String {
        format!("{}.onnx.data", self.name())
    }

    /// The graph with this manifest key.
    pub fn from_name(name: &str) -> Option<Graph> {
        Graph::ALL.into_iter().find(|g| g.name() == name)
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for g in Graph::ALL {
            assert_eq!(Graph::from_name(g.name()), Some(g));
            assert_eq!(g.file_name(), format!("{g}.onnx"));
        }
        assert_eq!(Graph::from_name("cut3r"), None);
        let mut names: Vec<_> = Graph::ALL.iter().map(|g| g.name()).collect();
        names.dedup();
        assert_eq!(names.len(), Graph::ALL.len());
        assert!(Graph::PIPELINE.iter().chain(&Graph::VLM).chain(&Graph::CUT3R).all(|g| Graph::ALL.contains(g)));
    }
}
