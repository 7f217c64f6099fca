//! Input and output names of every bundle graph, with their shape and dtype contracts.
//!
//! Shapes use these letters: `F` frames, `B` batch, `S` new sequence positions, `P` shared
//! prefix positions, `C` per-sequence cache slots, `T` key positions seen by the mask, `H` LLM
//! hidden size, `V` vocabulary rows, `KVH` KV heads, `D` head dim, `L` decoder layers. "Export
//! precision" is the manifest's `precision` (f32 or f16); everything the host produces or
//! consumes is f32 unless it says otherwise, with the casts inside the graphs.

/// `siglip.onnx`.
pub mod siglip {
    /// Input `[F,3,S,S]` f32: RGB resized to `vision.image_size` (S), rescaled and normalised
    /// with `vision.mean`/`vision.std`.
    pub const PIXEL_VALUES: &str = "pixel_values";
    /// Output `[F,g²,Cv]` f32: the hidden states of the last stored encoder layer (g = `vision.grid`).
    pub const IMAGE_FEATURES: &str = "image_features";
}

/// `projector.onnx`: vision and camera projectors.
pub mod projector {
    /// Input `[F,g²,Cv]` f32: SigLIP's output, fed as is.
    pub const IMAGE_FEATURES: &str = super::siglip::IMAGE_FEATURES;
    /// Input `[F,Dc]` f32: CUT3R's camera token of each frame (`cut3r_step`'s `camera_token`).
    pub const CAMERA_TOKENS: &str = "camera_tokens";
    /// Output `[F,T,H]` f32: pooled grid tokens with one newline per row, T = `vision.tokens_per_frame`.
    pub const VISION_EMBEDS: &str = "vision_embeds";
    /// Output `[F,H]` f32: the camera token of each frame in the LLM's embedding space.
    pub const CAMERA_EMBEDS: &str = "camera_embeds";
}

/// `embed.onnx`: token embedding lookup.
pub mod embed {
    /// Input `[B,S]` i64: token ids in `[0, llm.vocab_size)` (ONNX `Gather` wraps negative ids,
    /// so the `<image>` placeholder must be removed first).
    pub const INPUT_IDS: &str = "input_ids";
    /// Output `[B,S,H]` f32.
    pub const INPUTS_EMBEDS: &str = "inputs_embeds";
}

/// `decoder.onnx`: one Qwen2 step with a KV cache; the cache tensors depend on
/// `llm.kv_cache` ([`KvCacheLayout`](crate::KvCacheLayout)).
pub mod decoder {
    /// Input `[B,S,H]` f32: `embed`'s output, with vision and camera embeddings spliced in.
    pub const INPUTS_EMBEDS: &str = super::embed::INPUTS_EMBEDS;
    /// Input `[B,T]` i64, 1 = visible: T = P+S (concat) or P+C+S (static); a key is also
    /// hidden from queries before it (bottom-right aligned causal mask).
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// Input `[B,S]` i64: RoPE positions of the new tokens.
    pub const POSITION_IDS: &str = "position_ids";
    /// Output `[B,1,V]` f32: logits of the last new position only.
    pub const LOGITS: &str = "logits";
    /// Output `[B,S,H]` f32: final-norm hidden states of every new position (for the heads).
    pub const HIDDEN_STATES: &str = "hidden_states";

    /// One family of per-layer key/value tensors, `<prefix>.<layer>.key` and `.value`, each
    /// `[B,KVH,·,D]` in the export precision.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct KvFamily {
        prefix: &'static str,
    }

    impl KvFamily {
        pub const fn prefix(self) -> &'static str {
            self.prefix
        }
        pub fn key(self, layer: usize) -> String {
            format!("{}.{layer}.key", self.prefix)
        }
        pub fn value(self, layer: usize) -> String {
            format!("{}.{layer}.value", self.prefix)
        }
    }

    /// Inputs `past_key_values.{i}.key/.value [B,KVH,P,D]`, export precision: the read-only
    /// prefix (both layouts).
    pub const PAST_KEY_VALUES: KvFamily = KvFamily { prefix: "past_key_values" };
    /// Outputs `present.{i}.key/.value [B,KVH,P+S,D]`, export precision: concat layout only.
    pub const PRESENT: KvFamily = KvFamily { prefix: "present" };
    /// Inputs `cache.{i}.key/.value [B,KVH,C,D]`, export precision: the sequence's preallocated
    /// buffer, static layout only.
    pub const CACHE: KvFamily = KvFamily { prefix: "cache" };
    /// Outputs `present_new.{i}.key/.value [B,KVH,S,D]`, export precision: the new positions,
    /// which the caller writes into `cache`; static layout only.
    pub const PRESENT_NEW: KvFamily = KvFamily { prefix: "present_new" };

    /// Input `past_key_values.{i}.key [B,KVH,P,D]`, export precision.
    pub fn past_key(layer: usize) -> String {
        PAST_KEY_VALUES.key(layer)
    }
    /// Input `past_key_values.{i}.value [B,KVH,P,D]`, export precision.
    pub fn past_value(layer: usize) -> String {
        PAST_KEY_VALUES.value(layer)
    }
    /// Output `present.{i}.key [B,KVH,P+S,D]`, export precision (concat layout).
    pub fn present_key(layer: usize) -> String {
        PRESENT.key(layer)
    }
    /// Output `present.{i}.value [B,KVH,P+S,D]`, export precision (concat layout).
    pub fn present_value(layer: usize) -> String {
        PRESENT.value(layer)
    }
    /// Input `cache.{i}.key [B,KVH,C,D]`, export precision (static layout).
    pub fn cache_key(layer: usize) -> String {
        CACHE.key(layer)
    }
    /// Input `cache.{i}.value [B,KVH,C,D]`, export precision (static layout).
    pub fn cache_value(layer: usize) -> String {
        CACHE.value(layer)
    }
    /// Output `present_new.{i}.key [B,KVH,S,D]`, export precision (static layout).
    pub fn present_new_key(layer: usize) -> String {
        PRESENT_NEW.key(layer)
    }
    /// Output `present_new.{i}.value [B,KVH,S,D]`, export precision (static layout).
    pub fn present_new_value(layer: usize) -> String {
        PRESENT_NEW.value(layer)
    }
}

/// `heads.onnx`: Loc3R's localisation heads on decoder hidden states.
pub mod heads {
    /// Input `[B,H]` f32: the hidden state at the `<Pos>` token.
    pub const POS_HIDDEN: &str = "pos_hidden";
    /// Input `[B,H]` f32: the hidden state at the `<Ori>` token.
    pub const ORI_HIDDEN: &str = "ori_hidden";
    /// Input `[B,N,H]` f32: the hidden states of the N vision grid tokens.
    pub const VISION_HIDDEN: &str = "vision_hidden";
    /// Output `[B,4]` f32: `(x, y, log σx², log σy²)`.
    pub const POSITION: &str = "position";
    /// Output `[B,K]` f32: logits over the K = `orientation.bins` yaw bins.
    pub const ORIENTATION_LOGITS: &str = "orientation_logits";
    /// Output `[B,N,4]` f32: the BEV head per vision token.
    pub const BEV: &str = "bev";
}

/// The CUT3R graphs (`cut3r_encoder`, `cut3r_step`, `cut3r_points`). N image tokens, Ce encoder
/// width, Dc decoder width (`cut3r.dim`), S state tokens (`cut3r.state_tokens`), M memory tokens
/// (`cut3r.memory_tokens`), H×W the graph input size (`cut3r.height`, `cut3r.width`).
pub mod cut3r {
    /// `cut3r_encoder` input `[F,3,H,W]` f32: RGB in [-1,1].
    pub const IMAGE: &str = "image";
    /// `cut3r_encoder` output and `cut3r_step`/`cut3r_points` input, `[F,N,Ce]` (`[1,N,Ce]` for
    /// the step), export precision.
    pub const FEATURES: &str = "features";
    /// `cut3r_step` input `[1,S,Dc]` f32: the recurrent state (`cut3r_init`'s `state_init` at the start).
    pub const STATE: &str = "state";
    /// `cut3r_step` input `[1,M,2Dc]` f32: the pose memory (`cut3r_init`'s `mem_init` at the start).
    pub const MEMORY: &str = "memory";
    /// `cut3r_step` input `[1]` f32, 0 or 1: this is the first frame of the sequence.
    pub const IS_FIRST: &str = "is_first";
    /// `cut3r_step` input `[1]` f32, 0 or 1: keep the new state (1) or the old one (0).
    pub const UPDATE: &str = "update";
    /// `cut3r_step` input `[1]` f32, 0 or 1: restart from the initial state after this frame.
    pub const RESET: &str = "reset";
    /// `cut3r_step` output `[1,Dc]` f32 (and `cut3r_points` input): the frame's camera token.
    pub const CAMERA_TOKEN: &str = "camera_token";
    /// `cut3r_step` output `[1,S,Dc]` f32: the next state.
    pub const STATE_OUT: &str = "state_out";
    /// `cut3r_step` output `[1,M,2Dc]` f32: the next memory.
    pub const MEMORY_OUT: &str = "memory_out";
    /// `cut3r_step` output `[1,7]` f32: translation and unit quaternion of the camera.
    pub const CAMERA_POSE: &str = "camera_pose";
    /// `cut3r_step` output of a `--cut3r-points` export and `cut3r_points` input, `[1,N,Dc]`,
    /// export precision: image tokens (camera token dropped) of decoder layer ⌊2L/4⌋.
    pub const DECODER_HALF: &str = "decoder_half";
    /// Like [`DECODER_HALF`], of decoder layer ⌊3L/4⌋.
    pub const DECODER_THREE_QUARTERS: &str = "decoder_three_quarters";
    /// Like [`DECODER_HALF`], after the decoder's final norm.
    pub const DECODER_FINAL: &str = "decoder_final";
    /// `cut3r_points` output `[1,H,W,3]` f32: points in the current camera's frame.
    pub const PTS3D_SELF: &str = "pts3d_in_self_view";
    /// `cut3r_points` output `[1,H,W]` f32: confidence of [`PTS3D_SELF`].
    pub const CONF_SELF: &str = "conf_self";
    /// `cut3r_points` output `[1,H,W,3]` f32: points in the world (first camera's) frame.
    pub const PTS3D_OTHER: &str = "pts3d_in_other_view";
    /// `cut3r_points` output `[1,H,W]` f32: confidence of [`PTS3D_OTHER`].
    pub const CONF_OTHER: &str = "conf";
}

/// `cut3r_init.safetensors`: CUT3R's initial recurrent state, written with the CUT3R graphs.
pub mod cut3r_init {
    /// The file name in the bundle.
    pub const FILE: &str = "cut3r_init.safetensors";
    /// `[1,S,Dc]` f32: the state a sequence starts from.
    pub const STATE_INIT: &str = "state_init";
    /// `[1,M,2Dc]` f32: the memory a sequence starts from.
    pub const MEM_INIT: &str = "mem_init";
}

#[cfg(test)]
mod tests {
    use super::decoder::*;

    #[test]
    fn kv_names_follow_the_optimum_convention() {
        assert_eq!(past_key(3), "past_key_values.3.key");
        assert_eq!(past_value(0), "past_key_values.0.value");
        assert_eq!(present_key(1), "present.1.key");
        assert_eq!(present_value(1), "present.1.value");
        assert_eq!(cache_key(2), "cache.2.key");
        assert_eq!(cache_value(2), "cache.2.value");
        assert_eq!(present_new_key(5), "present_new.5.key");
        assert_eq!(present_new_value(5), "present_new.5.value");
        assert_eq!(CACHE.prefix(), "cache");
    }
}
