//! Element types of checkpoint tensors, graph values and bundle I/O.

use std::fmt;

/// Element types of checkpoint tensors and graph values. Displayed (and serialised in
/// `manifest.json`'s I/O specs) in lower case: `f32`, `f16`, `bf16`, `i64`, `i32`, `u8`, `bool`,
/// and the quantized weight types `i8` and `i4` (graph initializers only, never bundle I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    BF16,
    I64,
    I32,
    U8,
    Bool,
    /// Signed 8-bit integers (QDQ weights).
    I8,
    /// Signed 4-bit integers in [-8, 7], two per byte, the first in the low nibble (ONNX
    /// `INT4`; QDQ weights).
    I4,
}

impl DType {
    /// Bytes per element; a sub-byte type (`i4`) counts one byte, so size tensors with
    /// [`storage_bytes`](Self::storage_bytes).
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            DType::U8 | DType::Bool | DType::I8 | DType::I4 => 1,
        }
    }

    /// Bytes that `numel` elements take when stored packed (`i4`: two per byte, rounded up).
    pub fn storage_bytes(self, numel: usize) -> usize {
        match self {
            DType::I4 => numel.div_ceil(2),
            other => numel * other.size(),
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// The safetensors spelling (`F32`, `BF16`, ...).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
            DType::I8 => "I8",
            // Not a safetensors dtype: checkpoints never hold packed 4-bit tensors.
            DType::I4 => "I4",
        }
    }

    pub fn from_safetensors_name(name: &str) -> Option<DType> {
        Some(match name {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "U8" => DType::U8,
            "BOOL" => DType::Bool,
            "I8" => DType::I8,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::U8 => "u8",
            DType::Bool => "bool",
            DType::I8 => "i8",
            DType::I4 => "i4",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for dt in [DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::U8, DType::Bool, DType::I8] {
            assert_eq!(DType::from_safetensors_name(dt.safetensors_name()), Some(dt));
            let json = serde_json::to_string(&dt).unwrap();
            assert_eq!(json, format!("\"{dt}\""));
            assert_eq!(serde_json::from_str::<DType>(&json).unwrap(), dt);
        }
        assert_eq!(DType::from_safetensors_name(DType::I4.safetensors_name()), None, "no 4-bit safetensors dtype");
        assert_eq!(DType::I4.to_string(), "i4");
    }

    #[test]
    fn four_bit_tensors_take_half_a_byte_per_element_rounded_up() {
        assert_eq!(DType::I4.storage_bytes(7), 4);
        assert_eq!(DType::I4.storage_bytes(8), 4);
        assert_eq!(DType::I8.storage_bytes(7), 7);
        assert_eq!(DType::F16.storage_bytes(3), 6);
    }
}
