//! Memory-mapped safetensors files, validated on open.
//!
//! Our own header parser (rather than the `safetensors` crate) so that every failure
//! says exactly what is wrong with which file: a truncated file, a header length that
//! claims more bytes than exist, a tensor whose byte range does not match its shape.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::tensor::{DType, TensorData};

/// Headers above this size are refused: real ones are a few MB at most.
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// One opened safetensors file.
pub struct SafetensorsFile {
    pub path: PathBuf,
    mmap: Mmap,
    data_start: usize,
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile").field("path", &self.path).field("tensors", &self.tensors.len()).finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// `Err(name)` for a dtype we cannot use (reported only if the tensor is needed).
    pub dtype: std::result::Result<DType, String>,
    pub shape: Vec<usize>,
    /// Byte range within the data section.
    pub start: usize,
    pub end: usize,
}

#[derive(serde::Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Arc<SafetensorsFile>> {
        crate::files::require_regular_file(path)?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < 8 {
            return Err(Error::format(path, format!("file is {len} bytes, too short to be a safetensors file (truncated?)")));
        }
        // SAFETY: the checkpoint is treated as read-only input; a concurrent writer
        // could change bytes under us, which at worst yields wrong numbers, never UB in
        // our code since we only copy bytes out of the map.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let header_len = u64::from_le_bytes(mmap[..8].try_into().expect("8 bytes"));
        let available = len - 8;
        if header_len > available {
            return Err(Error::format(
                path,
                format!("header length field says {header_len} bytes but only {available} bytes follow (truncated or not a safetensors file)"),
            ));
        }
        if header_len > MAX_HEADER_BYTES {
            return Err(Error::format(path, format!("header of {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")));
        }
        let header_end = 8 + header_len as usize;
        let header = std::str::from_utf8(&mmap[8..header_end]).map_err(|e| Error::format(path, format!("header is not UTF-8: {e}")))?;
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(header).map_err(|e| Error::format(path, format!("invalid safetensors header JSON: {e}")))?;
        let data_len = (len as usize) - header_end;
        let mut tensors = BTreeMap::new();
        for (name, value) in raw {
            if name == "__metadata__" {
                continue;
            }
            let info: RawInfo = serde_json::from_value(value).map_err(|e| Error::format(path, format!("tensor `{name}`: invalid header entry: {e}")))?;
            let [start, end] = info.data_offsets;
            if start > end || end > data_len as u64 {
                return Err(Error::format(
                    path,
                    format!("tensor `{name}`: data_offsets [{start}, {end}] lie outside the {data_len}-byte data section (file truncated?)"),
                ));
            }
            let dtype = DType::from_safetensors_name(&info.dtype).ok_or(info.dtype.clone());
            if let Ok(dt) = dtype {
                let numel = info.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
                let expected = numel.and_then(|n| n.checked_mul(dt.size() as u64));
                if expected != Some(end - start) {
                    return Err(Error::format(
                        path,
                        format!(
                            "tensor `{name}`: shape {:?} of {} needs {} bytes but data_offsets span {} bytes",
                            info.shape,
                            info.dtype,
                            expected.map_or("an overflowing number of".to_string(), |b| b.to_string()),
                            end - start
                        ),
                    ));
                }
            }
            tensors.insert(name, TensorInfo { dtype, shape: info.shape, start: start as usize, end: end as usize });
        }
        Ok(Arc::new(SafetensorsFile { path: path.to_path_buf(), mmap, data_start: header_end, tensors }))
    }

    /// The raw little-endian bytes of a tensor, whatever its dtype.
    pub fn raw(&self, name: &str) -> Option<(&TensorInfo, &[u8])> {
        let info = self.tensors.get(name)?;
        Some((info, &self.mmap[self.data_start + info.start..self.data_start + info.end]))
    }

    /// The `__metadata__` string map of the header (empty if absent).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let n = u64::from_le_bytes(self.mmap[..8].try_into().expect("8 bytes")) as usize;
        serde_json::from_slice::<serde_json::Value>(&self.mmap[8..8 + n])
            .ok()
            .and_then(|v| v.get("__metadata__").cloned())
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default()
    }

    /// Drops the pages of a byte range of the data section from this process's memory
    /// (they stay in the OS page cache). Export streams many GB through the map; without
    /// this, every page read would stay resident and count towards our RSS.
    fn release(&self, start: usize, end: usize) {
        const PAGE: usize = 4096;
        let begin = (self.data_start + start) / PAGE * PAGE;
        let end = (self.data_start + end).min(self.mmap.len());
        if end > begin {
            // SAFETY: the map is read-only and file-backed; after DONTNEED, later reads
            // fault the same bytes back in from the file, so no data is lost.
            let _ = unsafe { self.mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, begin, end - begin) };
        }
    }

    pub fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// A tensor inside an opened file; cheap to clone, reads lazily from the map.
#[derive(Debug, Clone)]
pub struct TensorRef {
    file: Arc<SafetensorsFile>,
    pub name: String,
    pub dtype: DType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

impl TensorRef {
    /// `None` if the tensor is absent; `Err` names an unsupported dtype.
    pub fn new(file: &Arc<SafetensorsFile>, name: &str) -> Option<Result<TensorRef>> {
        let info = file.tensors.get(name)?;
        Some(match &info.dtype {
            Ok(dt) if dt.is_float() => {
                Ok(TensorRef { file: file.clone(), name: name.to_string(), dtype: *dt, shape: info.shape.clone(), start: info.start, end: info.end })
            }
            Ok(dt) => Err(Error::Dtype { mapped: name.into(), file: file.file_name(), dtype: dt.to_string() }),
            Err(raw) => Err(Error::Dtype { mapped: name.into(), file: file.file_name(), dtype: raw.clone() }),
        })
    }

    pub fn file_name(&self) -> String {
        self.file.file_name()
    }

    pub fn raw_bytes(&self) -> &[u8] {
        &self.file.mmap[self.file.data_start + self.start..self.file.data_start + self.end]
    }

    /// Lets the OS take back the pages of this tensor once it has been consumed.
    pub fn release(&self) {
        self.file.release(self.start, self.end);
    }

    /// All elements as f32 (for constants the exporter computes from weights).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = self.raw_bytes();
        match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => unreachable!("TensorRef::new admits float dtypes only"),
        }
    }
}

impl TensorData for TensorRef {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn write_as(&self, dtype: DType, out: &mut dyn io::Write) -> io::Result<()> {
        if dtype == self.dtype {
            // Same dtype: stream the mapped bytes without conversion.
            for chunk in self.raw_bytes().chunks(1 << 20) {
                out.write_all(chunk)?;
            }
            self.release();
            return Ok(());
        }
        // Convert in bounded chunks so RAM stays flat for multi-GB tensors.
        let elem = self.dtype.size();
        for chunk in self.raw_bytes().chunks(elem << 16) {
            let values: Vec<f32> = match self.dtype {
                DType::F32 => chunk.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                DType::F16 => chunk.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                DType::BF16 => chunk.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                _ => unreachable!("TensorRef::new admits float dtypes only"),
            };
            crate::tensor::write_f32s_as(&values, dtype, out)?;
        }
        self.release();
        Ok(())
    }
}

/// Header entry of a tensor to write.
#[derive(Debug, Clone)]
pub struct TensorToWrite {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// Writes a safetensors file (names sorted, deterministic bytes), asking `fill` for each
/// tensor's bytes in turn so that only one tensor is in memory at a time.
pub fn write_safetensors(
    path: &Path,
    tensors: &[TensorToWrite],
    metadata: Option<&BTreeMap<String, String>>,
    mut fill: impl FnMut(&TensorToWrite, &mut dyn io::Write) -> io::Result<()>,
) -> Result<()> {
    use std::io::Write;
    let mut sorted: Vec<&TensorToWrite> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = serde_json::Map::new();
    if let Some(meta) = metadata {
        header.insert("__metadata__".into(), serde_json::to_value(meta).expect("string map"));
    }
    let mut offset = 0usize;
    for t in &sorted {
        let bytes = t.shape.iter().product::<usize>() * t.dtype.size();
        header.insert(t.name.clone(), serde_json::json!({"dtype": t.dtype.safetensors_name(), "shape": t.shape, "data_offsets": [offset, offset + bytes]}));
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header).expect("json");
    // Pad the header so the data section starts 8-byte aligned.
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    let f = File::create(path).map_err(|e| Error::write(path, e))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, f);
    let io_err = |e| Error::write(path, e);
    w.write_all(&(text.len() as u64).to_le_bytes()).map_err(io_err)?;
    w.write_all(text.as_bytes()).map_err(io_err)?;
    for t in sorted {
        let mut counter = CountingWriter { inner: &mut w, written: 0 };
        fill(t, &mut counter).map_err(io_err)?;
        let expected = t.shape.iter().product::<usize>() * t.dtype.size();
        if counter.written != expected {
            return Err(Error::Internal(format!("{}: tensor `{}`: wrote {} bytes, expected {expected}", path.display(), t.name, counter.written)));
        }
    }
    w.flush().map_err(io_err)?;
    Ok(())
}

struct CountingWriter<'a, W: io::Write> {
    inner: &'a mut W,
    written: usize,
}

impl<W: io::Write> io::Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
