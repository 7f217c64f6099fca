//! `embed.onnx`: token embedding lookup, `input_ids [B,S]` -> `inputs_embeds [B,S,H]`
//! (no scaling). Ids must be in `[0, vocab)`: ONNX `Gather` wraps negative ids, so the
//! runtime removes the `<image>` placeholder (−200) before calling this graph.

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::graph::{Dim, GraphBuilder};
use crate::models::context::ModelGraph;
use crate::models::layers::{cast_to, weight};
use crate::models::ExportOptions;
use crate::tensor::DType;

pub use loc3r_bundle::io::embed::{INPUTS_EMBEDS as OUTPUT, INPUT_IDS as INPUT};

pub fn graph(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    let cfg = ckpt.config();
    let w = ckpt.weights("embed")?;
    let mut g = ModelGraph::new("embed", opts.precision);
    let dt = g.compute();
    g.set_doc("Qwen2 token embedding lookup");
    let ids = g.input(INPUT, DType::I64, [Dim::sym("batch"), Dim::sym("sequence")]);
    let table = weight(&mut g, &w.pp("model").pp("embed_tokens"), "weight", &[cfg.vocab_size, cfg.hidden_size], dt)?;
    let e = g.scope("model.embed_tokens").gather("Gather", &table, &ids, 0);
    let e = cast_to(&mut g, "model.embed_tokens", "to_f32", &e, DType::F32);
    g.output_with_shape(OUTPUT, &e, [Dim::sym("batch"), Dim::sym("sequence"), cfg.hidden_size.into()]);
    Ok(g.into_builder())
}
