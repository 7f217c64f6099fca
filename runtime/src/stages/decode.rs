//! The language model: token embeddings, prefill and autoregressive decoding through
//! `embed.onnx` and `decoder.onnx`.
//!
//! A video's prompt prefix is prefilled once into a [`KvCache`] that many questions share
//! read-only. Each question is a [`Sequence`] on top of that prefix. How the sequence keeps
//! its own positions depends on the bundle's KV layout (manifest `llm.kv_cache`):
//!
//! - **static** (default): the sequence owns one preallocated buffer per layer,
//!   `[1,KVH,C,D]` with C = question + new tokens, allocated once. The graph reads the
//!   prefix and the buffer in place and returns only the new positions, which are written
//!   into the next free slots. Decode steps run through ONNX Runtime I/O bindings made once
//!   per sequence: the token id, its embedding (written by `embed.onnx` straight into the
//!   decoder's input), position, mask, logits and new K/V all live in buffers that are
//!   reused every step. Nothing is copied from the prefix, and no tensor is allocated per step.
//! - **concat** (optimum-style bundles): the graph returns `present = concat(past, new)`,
//!   a fresh tensor every step; the prefix is still passed by reference, never modified.

use half::f16;
use ndarray::{s, Array2, ArrayD, ArrayViewMutD, Axis, IxDyn};
use ort::memory::Allocator;
use ort::session::{IoBinding, SessionInputValue, SessionOutputs};
use ort::value::PrimitiveTensorElementType;
use ort::value::{DynValue, Tensor};

use loc3r_bundle::io::decoder::{self, KvFamily, ATTENTION_MASK, HIDDEN_STATES, INPUTS_EMBEDS, LOGITS, POSITION_IDS};
use loc3r_bundle::io::embed::INPUT_IDS;
use loc3r_bundle::Graph;

use crate::bundle::{batches, Bundle};
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::manifest::{KvCacheLayout, Precision};

/// A KV cache of `len` positions: 2 values per layer (key, value), `[1,KVH,len,D]`.
pub struct KvCache {
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
        let element = if bundle.manifest.precision == Precision::F16 { 2 } else { 4 };
        2 * l.num_layers * l.num_kv_heads * l.head_dim * self.len * element
    }
}

/// Output of a prefill from an empty cache.
pub struct Prefill {
    /// Logits of the last position `[V]`.
    pub logits: Vec<f32>,
    /// Hidden states after the final norm `[S, H]`.
    pub hidden: Array2<f32>,
    /// The cache of these positions, to be shared as a prefix.
    pub cache: KvCache,
}

/// Output of feeding positions to a [`Sequence`].
pub struct Fed {
    pub logits: Vec<f32>,
    pub hidden: Array2<f32>,
}

/// The LLM half of a bundle.
pub struct Llm<'b> {
    bundle: &'b Bundle,
}

fn e(what: &'static str) -> impl Fn(ort::Error) -> Error {
    move |err| Error::ort(what, err)
}

/// The name of KV value `index` (2 per layer: key, value) of a family.
fn kv_name(family: KvFamily, index: usize) -> String {
    if index % 2 == 0 {
        family.key(index / 2)
    } else {
        family.value(index / 2)
    }
}

impl<'b> Llm<'b> {
    pub fn new(bundle: &'b Bundle) -> Result<Llm<'b>> {
        bundle.session(Graph::Embed)?;
        bundle.session(Graph::Decoder)?;
        Ok(Llm { bundle })
    }

    fn layout(&self) -> KvCacheLayout {
        self.bundle.manifest.runtime.llm.kv_cache
    }

    fn f16(&self) -> bool {
        self.bundle.manifest.precision == Precision::F16
    }

    /// KV values of `positions` zeros each, 2 per layer.
    fn zero_kv(&self, positions: usize, what: &'static str) -> Result<Vec<DynValue>> {
        let l = &self.bundle.manifest.runtime.llm;
        let shape = [1usize, l.num_kv_heads, positions, l.head_dim];
        (0..2 * l.num_layers)
            .map(|_| {
                if self.f16() {
                    Tensor::from_array(ArrayD::<f16>::from_elem(IxDyn(&shape), f16::ZERO)).map(|t| t.into_dyn())
                } else {
                    Tensor::from_array(ArrayD::<f32>::zeros(IxDyn(&shape))).map(|t| t.into_dyn())
                }
                .map_err(e(what))
            })
            .collect()
    }

    /// An empty cache (zero positions).
    pub fn empty_cache(&self) -> Result<KvCache> {
        Ok(KvCache { values: self.zero_kv(0, "allocating the KV cache")?, len: 0 })
    }

    /// Token ids -> embeddings `[S, H]`. Ids must be valid rows (no placeholders).
    pub fn embed(&self, ids: &[u32]) -> Result<Array2<f32>> {
        let h = self.bundle.manifest.runtime.llm.hidden_size;
        self.check_ids(ids)?;
        if ids.is_empty() {
            return Ok(Array2::zeros((0, h)));
        }
        let input = Array2::from_shape_vec((1, ids.len()), ids.iter().map(|&i| i as i64).collect()).expect("shape");
        self.bundle.check_shape(Graph::Embed, INPUT_IDS, input.shape())?;
        let mut session = self.bundle.lock(Graph::Embed)?;
        let tensor = Tensor::from_array(input).map_err(e("embed input"))?;
        let outputs = session.run(ort::inputs![INPUT_IDS => tensor]).map_err(e("running embed"))?;
        let embeds = outputs[INPUTS_EMBEDS].try_extract_array::<f32>().map_err(e("embed output"))?;
        embeds
            .to_owned()
            .into_shape_with_order((ids.len(), h))
            .map_err(|err| Error::Bundle(format!("embed.onnx returned {:?}, expected [1, {}, {h}]: {err}", embeds.shape(), ids.len())))
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let rows = self.bundle.manifest.runtime.llm.vocab_size as u32;
        match ids.iter().find(|&&i| i >= rows) {
            // Ids come from the bundle's tokenizer or from sampling its logits.
            Some(bad) => Err(Error::Bundle(format!("token id {bad} is outside the embedding table ({rows} rows): the bundle's tokenizer and model disagree"))),
            None => Ok(()),
        }
    }

    fn check_room(&self, total: usize) -> Result<()> {
        let max = self.bundle.manifest.runtime.llm.max_positions;
        if total > max {
            return Err(Error::Input(format!("the prompt needs {total} positions but the model supports {max}; use fewer frames or a shorter question")));
        }
        Ok(())
    }

    /// Prefills `embeds [S, H]` from an empty cache, `prefill_chunk` positions per decoder
    /// call (each chunk extends the cache of the ones before); the result's cache can be
    /// shared by any number of sequences as their prefix.
    pub fn prefill(&self, embeds: &Array2<f32>) -> Result<Prefill> {
        self.prefill_cancellable(embeds, &Cancel::new())
    }

    /// [`Llm::prefill`], checking `cancel` before every chunk.
    pub fn prefill_cancellable(&self, embeds: &Array2<f32>, cancel: &Cancel) -> Result<Prefill> {
        self.chunked(embeds, 0, cancel, |first| self.prefill_whole(first))
    }

    /// Runs `first` on the first `prefill_chunk` positions of `embeds` (which follow `before`
    /// cached positions), then extends its cache chunk by chunk; hidden states are joined,
    /// logits are the last position's.
    fn chunked(&self, embeds: &Array2<f32>, before: usize, cancel: &Cancel, first: impl FnOnce(&Array2<f32>) -> Result<Prefill>) -> Result<Prefill> {
        let total = embeds.nrows();
        // The whole prompt, not the chunk that would cross the limit, is what the error names.
        self.check_room(before.saturating_add(total))?;
        let mut ranges = batches(total, self.bundle.prefill_chunk);
        let head = ranges.next().unwrap_or(0..total);
        cancel.check()?;
        let first = first(&embeds.slice(s![head, ..]).to_owned())?;
        let (mut logits, mut cache, mut hidden) = (first.logits, first.cache, vec![first.hidden]);
        for range in ranges {
            cancel.check()?;
            let next = self.extend_whole(&cache, cache.len, &embeds.slice(s![range, ..]).to_owned())?;
            (logits, cache) = (next.logits, next.cache);
            hidden.push(next.hidden);
        }
        let hidden = if hidden.len() == 1 {
            hidden.remove(0)
        } else {
            let views: Vec<_> = hidden.iter().map(|h| h.view()).collect();
            ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Internal(format!("joining the decoder hidden states of the prefill chunks: {e}")))?
        };
        Ok(Prefill { logits, hidden, cache })
    }

    /// Prefills `embeds [S, H]` in one decoder call.
    fn prefill_whole(&self, embeds: &Array2<f32>) -> Result<Prefill> {
        let empty = self.empty_cache()?;
        match self.layout() {
            KvCacheLayout::Concat => {
                let (fed, cache) = self.run_concat(embeds, &empty)?;
                Ok(Prefill { logits: fed.logits, hidden: fed.hidden, cache })
            }
            KvCacheLayout::Static => {
                let (fed, new) = self.run(embeds, &empty, &[], &[])?;
                Ok(Prefill { logits: fed.logits, hidden: fed.hidden, cache: KvCache { values: new, len: embeds.nrows() } })
            }
        }
    }

    /// Prefills `embeds [S, H]` after the first `keep` positions of `prefix`, for a prefix
    /// that grows (frames pushed to a scene), `prefill_chunk` positions per call. Returns a new
    /// cache of `keep + S` positions; `prefix` itself is not modified.
    pub fn extend(&self, prefix: &KvCache, keep: usize, embeds: &Array2<f32>) -> Result<Prefill> {
        self.chunked(embeds, keep, &Cancel::new(), |first| self.extend_whole(prefix, keep, first))
    }

    /// [`Llm::extend`] in one decoder call.
    fn extend_whole(&self, prefix: &KvCache, keep: usize, embeds: &Array2<f32>) -> Result<Prefill> {
        if keep > prefix.len {
            return Err(Error::Internal(format!("cannot keep {keep} positions of a {}-position cache", prefix.len)));
        }
        let f16 = self.f16();
        // The whole prefix is used as it is; only a shorter one is copied out.
        let trimmed;
        let kept = if keep == prefix.len {
            prefix
        } else {
            let values = prefix.values.iter().map(|v| if f16 { leading::<f16>(v, keep) } else { leading::<f32>(v, keep) }).collect::<Result<Vec<_>>>()?;
            trimmed = KvCache { values, len: keep };
            &trimmed
        };
        match self.layout() {
            KvCacheLayout::Concat => {
                let (fed, cache) = self.run_concat(embeds, kept)?;
                Ok(Prefill { logits: fed.logits, hidden: fed.hidden, cache })
            }
            KvCacheLayout::Static => {
                let (fed, new) = self.run(embeds, kept, &[], &[])?;
                let values =
                    kept.values.iter().zip(&new).map(|(a, b)| if f16 { joined::<f16>(a, b) } else { joined::<f32>(a, b) }).collect::<Result<Vec<_>>>()?;
                Ok(Prefill { logits: fed.logits, hidden: fed.hidden, cache: KvCache { values, len: keep + embeds.nrows() } })
            }
        }
    }

    /// A sequence after `prefix` with room for `capacity` more positions (its prompt and
    /// the tokens it will generate), clamped to the model's context.
    pub fn sequence<'p>(&self, prefix: Prefix<'p>, capacity: usize) -> Result<Sequence<'p, 'b>> {
        let capacity = capacity.min(self.bundle.manifest.runtime.llm.max_positions.saturating_sub(prefix.get().len));
        let own = match self.layout() {
            KvCacheLayout::Concat => Own::Concat(None),
            KvCacheLayout::Static => {
                // Zeros, not uninitialised memory: masked slots get probability 0, and 0 × NaN
                // garbage would still be NaN.
                Own::Static(StaticCache { buffers: self.zero_kv(capacity, "allocating the KV cache buffers")?, capacity, filled: 0, decode: None })
            }
        };
        Ok(Sequence { llm: Llm { bundle: self.bundle }, prefix, own })
    }

    /// The common inputs of a decoder call.
    fn step_inputs<'v>(&self, embeds: &'v Array2<f32>, start: usize, mask: Vec<i64>) -> Result<Vec<(String, SessionInputValue<'v>)>> {
        let s = embeds.nrows();
        let positions = Array2::from_shape_vec((1, s), (start as i64..(start + s) as i64).collect()).expect("shape");
        let mask = Array2::from_shape_vec((1, mask.len()), mask).expect("shape");
        Ok(vec![
            (INPUTS_EMBEDS.into(), crate::values::f32_view(embeds.view().insert_axis(ndarray::Axis(0)), "decoder input")?.into()),
            (ATTENTION_MASK.into(), Tensor::from_array(mask).map_err(e("decoder input"))?.into_dyn().into()),
            (POSITION_IDS.into(), Tensor::from_array(positions).map_err(e("decoder input"))?.into_dyn().into()),
        ])
    }

    fn read_outputs(&self, outputs: &SessionOutputs<'_>, s: usize) -> Result<Fed> {
        let h = self.bundle.manifest.runtime.llm.hidden_size;
        let logits = outputs[LOGITS].try_extract_array::<f32>().map_err(e("decoder logits"))?.iter().copied().collect();
        let hidden = outputs[HIDDEN_STATES]
            .try_extract_array::<f32>()
            .map_err(e("decoder hidden states"))?
            .to_owned()
            .into_shape_with_order((s, h))
            .map_err(|err| Error::Bundle(format!("decoder.onnx hidden_states do not match [1, {s}, {h}]: {err}")))?;
        Ok(Fed { logits, hidden })
    }

    /// Concat layout: runs `embeds` after `past`; returns the new whole cache.
    fn run_concat(&self, embeds: &Array2<f32>, past: &KvCache) -> Result<(Fed, KvCache)> {
        let (fed, values) = self.run(embeds, past, &[], &[])?;
        Ok((fed, KvCache { values, len: past.len + embeds.nrows() }))
    }

    /// One decoder call: `embeds` after `past` and (static layout) the sequence's `slots`,
    /// of which `slot_mask` marks the filled ones (no slots: an empty cache block). Returns
    /// the logits, hidden states and the K/V outputs (`present.*`, or `present_new.*`: the
    /// new positions only).
    fn run(&self, embeds: &Array2<f32>, past: &KvCache, slots: &[DynValue], slot_mask: &[i64]) -> Result<(Fed, Vec<DynValue>)> {
        let s = embeds.nrows();
        if s == 0 {
            return Err(Error::Internal("nothing to run: zero input positions".into()));
        }
        let filled = slot_mask.iter().filter(|&&m| m == 1).count();
        self.check_room(past.len + filled + s)?;
        let mut mask = vec![1i64; past.len];
        mask.extend_from_slice(slot_mask);
        mask.extend(std::iter::repeat_n(1, s));
        self.bundle.check_shape(Graph::Decoder, INPUTS_EMBEDS, &[1, s, embeds.ncols()])?;
        self.bundle.check_shape(Graph::Decoder, ATTENTION_MASK, &[1, mask.len()])?;
        let mut inputs = self.step_inputs(embeds, past.len + filled, mask)?;
        for (i, v) in past.values.iter().enumerate() {
            inputs.push((kv_name(decoder::PAST_KEY_VALUES, i), v.into()));
        }
        let no_slots = match self.layout() {
            KvCacheLayout::Static if slots.is_empty() => self.zero_kv(0, "allocating the KV cache")?,
            _ => Vec::new(),
        };
        for (i, v) in slots.iter().chain(&no_slots).enumerate() {
            inputs.push((kv_name(decoder::CACHE, i), v.into()));
        }
        let kv_outputs = match self.layout() {
            KvCacheLayout::Concat => decoder::PRESENT,
            KvCacheLayout::Static => decoder::PRESENT_NEW,
        };
        let mut session = self.bundle.lock(Graph::Decoder)?;
        let mut outputs = session.run(inputs).map_err(e("running decoder"))?;
        let fed = self.read_outputs(&outputs, s)?;
        let kv = (0..past.values.len())
            .map(|i| {
                let name = kv_name(kv_outputs, i);
                outputs.remove(name.as_str()).ok_or_else(|| Error::Bundle(format!("decoder.onnx has no output `{name}`")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((fed, kv))
    }
}

/// The prefix of a sequence: usually a scene's cache shared by reference.
pub enum Prefix<'p> {
    Shared(&'p KvCache),
    Owned(KvCache),
}

impl Prefix<'_> {
    pub fn get(&self) -> &KvCache {
        match self {
            Prefix::Shared(c) => c,
            Prefix::Owned(c) => c,
        }
    }
}

/// A question's own positions on top of a shared prefix.
pub struct Sequence<'p, 'b> {
    llm: Llm<'b>,
    prefix: Prefix<'p>,
    own: Own,
}

enum Own {
    /// The whole cache after the last call (None before the first).
    Concat(Option<KvCache>),
    Static(StaticCache),
}

/// The preallocated per-sequence buffers of the static layout.
struct StaticCache {
    /// `[1,KVH,capacity,D]` per layer and kind; slots `..filled` hold this sequence's K/V.
    buffers: Vec<DynValue>,
    capacity: usize,
    filled: usize,
    /// Bound lazily by the first single-token step (boxed: bindings are large and most
    /// sequences of `localize` never decode).
    decode: Option<Box<DecodeBinding>>,
}

/// Everything a decode step touches, bound once to both sessions.
struct DecodeBinding {
    embed: IoBinding,
    decoder: IoBinding,
    /// `[1,1]` token id, input of `embed.onnx`.
    token: Tensor<i64>,
    /// `[1,1,H]`, written by `embed.onnx`, read by the decoder.
    embeds: Tensor<f32>,
    /// `[1,1]` position id.
    position: Tensor<i64>,
    /// `[1, P + C + 1]`: prefix, slots (1 once filled), the new position.
    mask: Tensor<i64>,
    /// `present_new.*` `[1,KVH,1,D]`, written by the decoder.
    new_kv: Vec<DynValue>,
    /// `[1,1,V]`.
    logits: Tensor<f32>,
}

impl<'p, 'b> Sequence<'p, 'b> {
    /// Positions so far: prefix plus this sequence's own.
    pub fn len(&self) -> usize {
        self.prefix.get().len + self.own_len()
    }

    fn own_len(&self) -> usize {
        match &self.own {
            Own::Concat(None) => 0,
            Own::Concat(Some(cache)) => cache.len - self.prefix.get().len,
            Own::Static(c) => c.filled,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `positions` more fit (in the model's context and, for the static layout,
    /// in the buffers allocated for this sequence).
    pub fn has_room(&self, positions: usize) -> bool {
        match &self.own {
            Own::Concat(_) => self.len() + positions <= self.llm.bundle.manifest.runtime.llm.max_positions,
            Own::Static(c) => c.filled + positions <= c.capacity,
        }
    }

    /// Runs `embeds [S, H]` as the next positions; returns the last logits and all hidden states.
    pub fn feed(&mut self, embeds: &Array2<f32>) -> Result<Fed> {
        let llm = &self.llm;
        match &mut self.own {
            Own::Concat(own) => {
                let past = own.as_ref().unwrap_or(self.prefix.get());
                let (fed, cache) = llm.run_concat(embeds, past)?;
                *own = Some(cache);
                Ok(fed)
            }
            Own::Static(c) => {
                let s = embeds.nrows();
                llm.check_room(self.prefix.get().len + c.filled + s)?;
                c.check_room(s)?;
                // The first call (the question's prompt) sees no slots at all, so its result
                // does not depend on the capacity reserved for the answer: `localize` and
                // `ask` give bit-identical poses whatever `max_new_tokens` is.
                let (fed, new) =
                    if c.filled == 0 { llm.run(embeds, self.prefix.get(), &[], &[])? } else { llm.run(embeds, self.prefix.get(), &c.buffers, &c.slot_mask())? };
                c.write(&new, llm.f16())?;
                if let Some(d) = &mut c.decode {
                    d.mark_filled(self.prefix.get().len, c.filled - s..c.filled)?;
                }
                Ok(fed)
            }
        }
    }

    /// Runs one token as the next position; returns its logits `[V]`.
    pub fn feed_token(&mut self, id: u32) -> Result<Vec<f32>> {
        self.llm.check_ids(&[id])?;
        if matches!(self.own, Own::Concat(_)) {
            let embeds = self.llm.embed(&[id])?;
            return Ok(self.feed(&embeds)?.logits);
        }
        let llm = &self.llm;
        let Own::Static(c) = &mut self.own else { unreachable!("the concat layout returned above") };
        llm.check_room(self.prefix.get().len + c.filled + 1)?;
        c.check_room(1)?;
        if c.decode.is_none() {
            // The binding's mask spans prefix, buffer and the new token for the whole sequence.
            llm.bundle.check_shape(Graph::Decoder, ATTENTION_MASK, &[1, self.prefix.get().len + c.capacity + 1])?;
            c.decode = Some(Box::new(DecodeBinding::new(llm, self.prefix.get(), c)?));
        }
        let d = c.decode.as_mut().expect("bound above");
        let position = (self.prefix.get().len + c.filled) as i64;
        d.token.extract_array_mut().fill(id as i64);
        d.position.extract_array_mut().fill(position);
        // Inputs written on the host are bound again before each run: ONNX Runtime's
        // contract is that a bound value is what it was at binding time (device sessions
        // copy it then). On the CPU this is bookkeeping only; the buffers are not copied.
        d.embed.bind_input(INPUT_IDS, &d.token).map_err(e("binding embed"))?;
        {
            let mut embed = llm.bundle.lock(Graph::Embed)?;
            embed.run_binding(&d.embed).map_err(e("running embed"))?;
        }
        d.bind_step_inputs(&c.buffers)?;
        {
            let mut decoder = llm.bundle.lock(Graph::Decoder)?;
            decoder.run_binding(&d.decoder).map_err(e("running decoder"))?;
        }
        let logits = d.logits.extract_array().iter().copied().collect();
        let new_kv = std::mem::take(&mut d.new_kv);
        let written = c.write(&new_kv, llm.f16());
        let d = c.decode.as_mut().expect("bound above");
        d.new_kv = new_kv;
        written?;
        d.mark_filled(self.prefix.get().len, c.filled - 1..c.filled)?;
        Ok(logits)
    }

    /// Address of the first K/V buffer's data (a regression test checks that decode steps
    /// keep writing into the buffers allocated for the sequence). A test hook, built only
    /// with the `testing` feature.
    #[cfg(feature = "testing")]
    pub fn kv_buffer_address(&self) -> Option<usize> {
        match &self.own {
            Own::Concat(own) => own.as_ref().map(|c| tensor_address(&c.values[0])),
            Own::Static(c) => c.buffers.first().map(tensor_address),
        }
    }
}

#[cfg(feature = "testing")]
fn tensor_address(v: &DynValue) -> usize {
    v.try_extract_tensor::<f32>().map(|(_, d)| d.as_ptr() as usize).or_else(|_| v.try_extract_tensor::<f16>().map(|(_, d)| d.as_ptr() as usize)).unwrap_or(0)
}

impl StaticCache {
    /// 1 for the filled slots, 0 for the rest.
    fn slot_mask(&self) -> Vec<i64> {
        (0..self.capacity).map(|slot| i64::from(slot < self.filled)).collect()
    }

    fn check_room(&self, positions: usize) -> Result<()> {
        if self.filled + positions > self.capacity {
            return Err(Error::Internal(format!(
                "the sequence's KV cache has room for {} positions and {} are used; {positions} more do not fit (reserve more when creating the sequence)",
                self.capacity, self.filled
            )));
        }
        Ok(())
    }

    /// Writes the K/V of new positions (`[1,KVH,S,D]` each) into the next free slots.
    fn write(&mut self, new: &[DynValue], f16: bool) -> Result<()> {
        let mut s = 0;
        for (dst, src) in self.buffers.iter_mut().zip(new) {
            s = if f16 { copy_slots::<f16>(dst, src, self.filled)? } else { copy_slots::<f32>(dst, src, self.filled)? };
        }
        self.filled += s;
        Ok(())
    }
}

/// The first `keep` positions of a K/V value, as a new value.
fn leading<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(v: &DynValue, keep: usize) -> Result<DynValue> {
    let a = v.try_extract_array::<T>().map_err(e("reading the KV cache"))?;
    Tensor::from_array(a.slice(s![.., .., ..keep, ..]).to_owned()).map(|t| t.into_dyn()).map_err(e("copying the KV cache"))
}

/// Two K/V values joined along the sequence axis.
fn joined<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(a: &DynValue, b: &DynValue) -> Result<DynValue> {
    let a = a.try_extract_array::<T>().map_err(e("reading the KV cache"))?;
    let b = b.try_extract_array::<T>().map_err(e("reading new K/V"))?;
    let both = ndarray::concatenate(ndarray::Axis(2), &[a.view(), b.view()]).map_err(|err| {
        Error::Bundle(format!("decoder.onnx returned new K/V of shape {:?}, which does not extend the cache {:?}: {err}", b.shape(), a.shape()))
    })?;
    Tensor::from_array(both).map(|t| t.into_dyn()).map_err(e("copying the KV cache"))
}

/// `dst[:, :, at..at+S, :] = src`; returns S.
fn copy_slots<T: PrimitiveTensorElementType + Copy + std::fmt::Debug>(dst: &mut DynValue, src: &DynValue, at: usize) -> Result<usize> {
    let src = src.try_extract_array::<T>().map_err(e("reading new K/V"))?;
    let s = src.shape()[2];
    let mut dst: ArrayViewMutD<'_, T> = dst.try_extract_array_mut::<T>().map_err(e("writing the KV cache"))?;
    if dst.shape()[2] < at + s || dst.shape()[..2] != src.shape()[..2] || dst.shape()[3] != src.shape()[3] {
        return Err(Error::Bundle(format!("decoder.onnx returned new K/V of shape {:?}, which does not fit the cache {:?} at {at}", src.shape(), dst.shape())));
    }
    dst.slice_mut(s![.., .., at..at + s, ..]).assign(&src);
    Ok(s)
}

impl DecodeBinding {
    fn new(llm: &Llm<'_>, prefix: &KvCache, c: &StaticCache) -> Result<DecodeBinding> {
        let l = &llm.bundle.manifest.runtime.llm;
        let allocator = Allocator::default();
        let token = Tensor::from_array(Array2::<i64>::zeros((1, 1))).map_err(e("decode token"))?;
        let position = Tensor::from_array(Array2::<i64>::zeros((1, 1))).map_err(e("decode position"))?;
        let mut mask = vec![1i64; prefix.len];
        mask.extend(c.slot_mask());
        mask.push(1);
        let mask = Tensor::from_array(Array2::from_shape_vec((1, mask.len()), mask).expect("shape")).map_err(e("decode mask"))?;
        let mut embeds = Tensor::<f32>::new(&allocator, [1usize, 1, l.hidden_size]).map_err(e("decode embeddings"))?;
        let mut logits = Tensor::<f32>::new(&allocator, [1usize, 1, l.vocab_size]).map_err(e("decode logits"))?;
        let kv_shape = [1usize, l.num_kv_heads, 1, l.head_dim];
        let mut new_kv = (0..2 * l.num_layers)
            .map(|_| {
                if llm.f16() {
                    Tensor::<f16>::new(&allocator, kv_shape).map(|t| t.into_dyn())
                } else {
                    Tensor::<f32>::new(&allocator, kv_shape).map(|t| t.into_dyn())
                }
                .map_err(e("decode K/V"))
            })
            .collect::<Result<Vec<_>>>()?;

        let mut embed = llm.bundle.lock(Graph::Embed)?.create_binding().map_err(e("binding embed"))?;
        embed.bind_input(INPUT_IDS, &token).map_err(e("binding embed"))?;
        embed.bind_output(INPUTS_EMBEDS, &mut embeds).map_err(e("binding embed"))?;

        let mut decoder = llm.bundle.lock(Graph::Decoder)?.create_binding().map_err(e("binding decoder"))?;
        // The shared prefix is bound once (on a GPU: copied to the device once per sequence).
        for (i, v) in prefix.values.iter().enumerate() {
            decoder.bind_input(kv_name(decoder::PAST_KEY_VALUES, i), v).map_err(e("binding decoder"))?;
        }
        decoder.bind_output(LOGITS, &mut logits).map_err(e("binding decoder"))?;
        for (i, v) in new_kv.iter_mut().enumerate() {
            decoder.bind_output(kv_name(decoder::PRESENT_NEW, i), v).map_err(e("binding decoder"))?;
        }
        Ok(DecodeBinding { embed, decoder, token, embeds, position, mask, new_kv, logits })
    }

    /// Binds the decoder inputs that change between steps.
    fn bind_step_inputs(&mut self, cache: &[DynValue]) -> Result<()> {
        let d = &mut self.decoder;
        d.bind_input(INPUTS_EMBEDS, &self.embeds).map_err(e("binding decoder"))?;
        d.bind_input(POSITION_IDS, &self.position).map_err(e("binding decoder"))?;
        d.bind_input(ATTENTION_MASK, &self.mask).map_err(e("binding decoder"))?;
        for (i, v) in cache.iter().enumerate() {
            d.bind_input(kv_name(decoder::CACHE, i), v).map_err(e("binding decoder"))?;
        }
        Ok(())
    }

    /// Opens the mask for slots that were just written.
    fn mark_filled(&mut self, prefix_len: usize, slots: std::ops::Range<usize>) -> Result<()> {
        let mut mask = self.mask.extract_array_mut();
        for slot in slots {
            mask[[0, prefix_len + slot]] = 1;
        }
        Ok(())
    }
}
