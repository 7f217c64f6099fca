//! The runtime's stages: the runtime is a chain of named stages.
//!
//! Each module owns one step of the pipeline, with typed inputs, outputs and errors:
//!
//! | module         | input                    | output                                   |
//! |----------------|--------------------------|------------------------------------------|
//! | [`video`]      | a video file / image dir | [`video::Frames`] (uniformly sampled RGB) |
//! | [`preprocess`] | frames                   | SigLIP / CUT3R pixel tensors (NCHW, [-1,1]) |
//! | [`heads`]      | hidden states at `<Pos>`/`<Ori>` and of the grid tokens | position, yaw, σ, BEV (`heads.onnx` + decoding) |
//! | [`prompt`]     | question, video timing   | [`prompt::PromptPlan`] (token ids around the video) |
//! | [`sampling`]   | logits                   | next token id                            |
//! | [`decode`]     | embeddings, KV cache     | logits, hidden states, new cache         |

pub mod cut3r;
pub mod decode;
pub mod heads;
pub mod preprocess;
pub mod prompt;
pub mod sampling;
pub mod video;
pub mod vision;
