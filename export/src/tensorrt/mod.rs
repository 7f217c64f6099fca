//! TensorRT: a static compatibility lint of a bundle's graphs ([`lint`]), the explicit
//! optimization profile each engine is built with ([`profile`]), and ahead-of-time
//! compilation into EP-context models through ONNX Runtime's TensorRT execution providers
//! ([`compile`]). docs/tensorrt.md describes the whole path.

pub mod compile;
pub mod lint;
pub mod ops;
pub mod profile;

use std::fmt;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{Error, Result};
use crate::graph::proto;

/// What the lint checks against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LintTarget {
    /// ONNX Runtime's TensorRT execution provider with TensorRT 10.x.
    Tensorrt,
    /// ONNX Runtime's NV TensorRT RTX execution provider (RTX GPUs).
    TensorrtRtx,
}

impl LintTarget {
    pub fn name(self) -> &'static str {
        match self {
            LintTarget::Tensorrt => "tensorrt",
            LintTarget::TensorrtRtx => "tensorrt-rtx",
        }
    }
}

impl std::str::FromStr for LintTarget {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tensorrt" | "tensorrt-fp16" => Ok(LintTarget::Tensorrt),
            "tensorrt-rtx" => Ok(LintTarget::TensorrtRtx),
            other => Err(format!("unknown lint target `{other}`; use tensorrt or tensorrt-rtx")),
        }
    }
}

impl fmt::Display for LintTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TensorRT `major.minor` version: what the parser of the target machine can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
}

impl TrtVersion {
    /// The TensorRT that ONNX Runtime 1.31's TensorRT execution provider is built against.
    pub const DEFAULT: TrtVersion = TrtVersion { major: 10, minor: 14 };
    /// The first parser that reads opsets above 20.
    pub const OPSET_24: TrtVersion = TrtVersion { major: 10, minor: 13 };
}

impl std::str::FromStr for TrtVersion {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("TensorRT version `{s}`: expected MAJOR.MINOR, e.g. 10.14");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        let minor = minor.split('.').next().unwrap_or(minor);
        let version = TrtVersion { major: major.parse().map_err(|_| bad())?, minor: minor.parse().map_err(|_| bad())? };
        if version.major != 10 {
            return Err(format!(
                "TensorRT {version}: ONNX Runtime 1.31's TensorRT execution provider loads TensorRT 10.x only (libnvinfer.so.10); use a 10.x version"
            ));
        }
        Ok(version)
    }
}

impl fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// One graph of a bundle, decoded.
#[derive(Debug, Clone)]
pub struct GraphFile {
    /// The manifest key (`decoder`).
    pub name: String,
    pub path: PathBuf,
    /// Size of the `.onnx` file (the protobuf alone, without external data).
    pub onnx_bytes: u64,
    pub model: proto::ModelProto,
}

/// Reads and decodes `path`, an ONNX file of a bundle (initializers in external data are not
/// loaded: the protobuf holds only their locations).
pub fn read_graph(name: &str, path: &Path) -> Result<GraphFile> {
    crate::files::require_regular_file(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let model = proto::ModelProto::decode(bytes.as_slice()).map_err(|e| Error::format(path, format!("not an ONNX model ({e}); re-export the bundle")))?;
    Ok(GraphFile { name: name.to_string(), path: path.to_path_buf(), onnx_bytes: bytes.len() as u64, model })
}
