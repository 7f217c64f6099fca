//! The runtime's stages, in pipeline order. Each module owns one step, with typed inputs,
//! outputs and errors:
//!
//! | module         | input                          | output                                              |
//! |----------------|--------------------------------|-----------------------------------------------------|
//! | [`video`]      | a video file / image dir       | [`video::Frames`] (uniformly sampled RGB)           |
//! | [`preprocess`] | frames                         | SigLIP / CUT3R pixel tensors (NCHW, [-1,1])         |
//! | [`cut3r`]      | CUT3R pixels, recurrent state  | [`cut3r::CameraTokens`] per frame, the next state   |
//! | [`vision`]     | SigLIP pixels, camera tokens   | [`vision::VisionEmbeds`] (LLM-width video tokens)   |
//! | [`prompt`]     | question, video timing         | [`prompt::PromptPlan`] (token ids around the video) |
//! | [`decode`]     | embeddings, KV cache           | logits, hidden states, new cache                    |
//! | [`heads`]      | hidden states at `<Pos>`/`<Ori>` and of the grid tokens | position, yaw, σ, BEV (`heads.onnx` + decoding) |
//! | [`sampling`]   | logits                         | next token id                                       |

pub mod cut3r;
pub mod decode;
pub mod heads;
pub mod preprocess;
pub mod prompt;
pub mod sampling;
pub mod video;
pub mod vision;
