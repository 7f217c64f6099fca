//! Training data: ScanNet-layout RGB-D scenes, annotation readers, and the targets computed from
//! them (docs/training.md §2): BEV ground truth for every pooled vision token and situation
//! poses, all in the BEV frame of `loc3r_bundle::bev`.
//!
//! | file | concern |
//! |---|---|
//! | `scannet.rs` | a scene directory: poses, depth, intrinsics, up vector, mesh centre |
//! | `ply.rs` | vertex positions of a PLY mesh (ASCII / binary little-endian) |
//! | `annotations.rs` | SQA3D, ScanQA and synthetic `questions.jsonl` readers |
//! | `targets.rs` | token ↔ pixel geometry, BEV targets and mask, SQA3D situation targets |

pub mod annotations;
mod error;
mod ply;
pub mod scannet;
pub mod targets;

pub use error::DataError;
pub use ply::bounding_box_center;
