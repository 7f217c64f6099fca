//! `loc3r`: the Loc3R-VLM runtime library, for robot stacks and services.
//!
//! Runs a bundle written by `loc3r-export` on ONNX Runtime: open the bundle once, observe
//! a video once (CUT3R recurrence, SigLIP, projector and the LLM prefill of the video are
//! cached in a [`Scene`]), then localise and answer any number of questions cheaply.
//!
//! ```no_run
//! use loc3r::{Device, GenerationOptions, Loc3r, SessionOptions};
//!
//! # fn main() -> loc3r::Result<()> {
//! let model = Loc3r::open("bundle".as_ref(), &SessionOptions { device: Device::Cpu, ..Default::default() })?;
//! let scene = model.observe_video("room.mp4".as_ref(), 32)?;
//!
//! // Where am I? (situation text optional)
//! let pose = scene.localize(Some("I am sitting on the bed facing the window"))?;
//! println!("x={} y={} yaw={}°", pose.position.x, pose.position.y, pose.yaw_deg);
//!
//! // A question, streamed token by token; return false from the callback to stop.
//! let answer = scene.ask_streaming(None, "Where is the door?", &GenerationOptions::default(), |piece| {
//!     print!("{piece}");
//!     true
//! })?;
//! println!("\n{} tokens, first after {:.0} ms", answer.tokens.generated, answer.timings_ms.first_token);
//! # Ok(())
//! # }
//! ```
//!
//! Live frames (a robot's camera) can be appended to a scene with
//! [`Scene::push_frames`]: CUT3R continues its recurrence and only the new frames and the new
//! time instruction are prefilled; the answers equal observing all frames at once.
//! [`live::FrameSource`] reads a camera, a stream or a file at its real rate, and
//! [`live::LiveScene`] turns its frames into the keyframes of a scene of bounded size.
//!
//! [`Loc3r`] is `Clone + Send + Sync` and a [`Scene`] can be shared between threads: graph
//! sessions are behind mutexes and a scene's cached prefix is only ever read. The bundle
//! format (manifest, graph and I/O names) is the `loc3r_bundle` contract crate, shared with
//! the exporter; [`manifest`] and [`ort_env`] (loading the ONNX Runtime shared library, which
//! every binary of the project goes through) re-export it.
//!
//! The HTTP server (`server`, behind the default feature `server`) pulls in axum and tokio;
//! link with `default-features = false` to leave it out.

pub mod bundle;
pub mod cancel;
pub mod error;
pub use loc3r_bundle::files;
pub mod live;
pub mod manifest;
pub mod ort_env;
pub mod pipeline;
#[cfg(feature = "server")]
pub mod server;
pub mod session;
pub mod stages;
pub mod values;

pub use cancel::Cancel;
pub use error::{Error, Fault, Result};
pub use pipeline::{Answer, FrozenFeatures, Loc3r, Localization, Scene};
pub use session::{Device, SessionOptions};
pub use stages::sampling::GenerationOptions;
pub use stages::video::{FrameSpec, DEFAULT_MAX_PIXELS};
