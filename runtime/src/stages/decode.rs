//! The language model: token embeddings, prefill and autoregressive decoding through
//! `embed.onnx` and `decoder.onnx`, with the KV cache carried as ONNX Runtime values.
//!
//! The cache of a video prefix is kept as the `present` values of its prefill and passed
//! *by reference* to every question on that video: the graph concatenates, so the prefix
//! is never copied or modified (copy-on-write by construction).

use half::f16;
use ndarray::{Array2, ArrayD, IxDyn};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor};

use crate::bundle::Bundle;
use crate::error::{Error, Result};

/// KV cache: `present.{i}.key/.value` of every layer, `len` positions.
pub struct KvCache {
    /// 2 per layer: key, value.
    values: Vec<DynValue>,
    pub len: usize,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache").field("len", &self.len).finish()
    }
}

impl KvCache {
    /// Bytes held (for cache accounting).
    pub fn bytes(&self, bundle: &Bundle) -> usize {
        let l = &bundle.manifest.runtime.llm;
        let elem = if bundle.manifest.precision == "f16" { 2 } else { 4 };
        2 * l.num_layers * l.num_kv_heads * l.head_dim * self.len * elem
    }
}

/// Output of one decoder call.
pub struct StepOutput {
    /// Logits of the last position `[V]`.
    pub logits: Vec<f32>,
    /// Hidden states after the final norm `[S, H]`.
    pub hidden: Array2<f32>,
    /// Cache including this call's positions.
    pub cache: KvCache,
}

/// The LLM half of a bundle.
pub struct Llm<'b> {
    bundle: &'b Bundle,
}

impl<'b> Llm<'b> {
    pub fn new(bundle: &'b Bundle) -> Result<Llm<'b>> {
        bundle.session("embed")?;
        bundle.session("decoder")?;
        Ok(Llm { bundle })
    }

    /// An empty cache (zero past positions).
    pub fn empty_cache(&self) -> Result<KvCache> {
        let l = &self.bundle.manifest.runtime.llm;
        let shape = [1usize, l.num_kv_heads, 0, l.head_dim];
        let mut values = Vec::with_capacity(2 * l.num_layers);
        for _ in 0..2 * l.num_layers {
            let v = if self.bundle.manifest.precision == "f16" {
                Tensor::from_array(ArrayD::<f16>::from_elem(IxDyn(&shape), f16::ZERO)).map(|t| t.into_dyn())
            } else {
                Tensor::from_array(ArrayD::<f32>::zeros(IxDyn(&shape))).map(|t| t.into_dyn())
            }
            .map_err(|e| Error::ort("allocating the KV cache", e))?;
            values.push(v);
        }
        Ok(KvCache { values, len: 0 })
    }

    /// Token ids -> embeddings `[S, H]`. Ids must be valid rows (no placeholders).
    pub fn embed(&self, ids: &[u32]) -> Result<Array2<f32>> {
        let h = self.bundle.manifest.runtime.llm.hidden_size;
        let rows = self.bundle.manifest.runtime.llm.vocab_size as u32;
        if let Some(bad) = ids.iter().find(|&&i| i >= rows) {
            return Err(Error::Input(format!("token id {bad} is outside the embedding table ({rows} rows)")));
        }
        if ids.is_empty() {
            return Ok(Array2::zeros((0, h)));
        }
        let input = Array2::from_shape_vec((1, ids.len()), ids.iter().map(|&i| i as i64).collect()).expect("shape");
        let mut session = self.bundle.session("embed")?.lock().map_err(|_| Error::Input("embed session poisoned".into()))?;
        let tensor = Tensor::from_array(input).map_err(|e| Error::ort("embed input", e))?;
        let outputs = session.run(ort::inputs!["input_ids" => tensor]).map_err(|e| Error::ort("running embed", e))?;
        let e = outputs["inputs_embeds"].try_extract_array::<f32>().map_err(|e| Error::ort("embed output", e))?;
        e.to_owned()
            .into_shape_with_order((ids.len(), h))
            .map_err(|err| Error::Bundle(format!("embed.onnx returned {:?}, expected [1, {}, {h}]: {err}", e.shape(), ids.len())))
    }

    /// Runs `embeds [S, H]` after `past` (by reference: `past` stays valid).
    pub fn forward(&self, embeds: &Array2<f32>, past: &KvCache) -> Result<StepOutput> {
        let l = &self.bundle.manifest.runtime.llm;
        let s = embeds.nrows();
        if s == 0 {
            return Err(Error::Input("nothing to run: zero input positions".into()));
        }
        let total = past.len + s;
        if total > l.max_positions {
            return Err(Error::Input(format!(
                "the prompt needs {total} positions but the model supports {}; use fewer frames or a shorter question",
                l.max_positions
            )));
        }
        fn e(what: &'static str) -> impl Fn(ort::Error) -> Error {
            move |err| Error::ort(what, err)
        }
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = vec![
            ("inputs_embeds".into(), crate::values::f32_view(embeds.view().insert_axis(ndarray::Axis(0)), "decoder input")?.into()),
            ("attention_mask".into(), Tensor::from_array(Array2::<i64>::ones((1, total))).map_err(e("decoder input"))?.into_dyn().into()),
            (
                "position_ids".into(),
                Tensor::from_array(Array2::from_shape_vec((1, s), (past.len as i64..total as i64).collect()).expect("shape"))
                    .map_err(e("decoder input"))?
                    .into_dyn()
                    .into(),
            ),
        ];
        for (i, v) in past.values.iter().enumerate() {
            let name = if i % 2 == 0 { format!("past_key_values.{}.key", i / 2) } else { format!("past_key_values.{}.value", i / 2) };
            inputs.push((name, v.into()));
        }
        let mut session = self.bundle.session("decoder")?.lock().map_err(|_| Error::Input("decoder session poisoned".into()))?;
        let mut outputs = session.run(inputs).map_err(e("running decoder"))?;
        let logits = outputs["logits"].try_extract_array::<f32>().map_err(e("decoder logits"))?.iter().copied().collect();
        let hidden = outputs["hidden_states"]
            .try_extract_array::<f32>()
            .map_err(e("decoder hidden states"))?
            .to_owned()
            .into_shape_with_order((s, l.hidden_size))
            .map_err(|err| Error::Bundle(format!("decoder.onnx hidden_states do not match [1, {s}, {}]: {err}", l.hidden_size)))?;
        let mut values = Vec::with_capacity(2 * l.num_layers);
        for i in 0..l.num_layers {
            for kind in ["key", "value"] {
                let name = format!("present.{i}.{kind}");
                values.push(outputs.remove(name.as_str()).ok_or_else(|| Error::Bundle(format!("decoder.onnx has no output `{name}`")))?);
            }
        }
        Ok(StepOutput { logits, hidden, cache: KvCache { values, len: total } })
    }
}
