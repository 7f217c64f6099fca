//! `heads.onnx`: Loc3R-VLM's localisation heads on LLM hidden states (paper §3.3;
//! docs/heads.md): position MLP at `<Pos>`, orientation MLP at `<Ori>`, BEV linear
//! head at vision tokens. Outputs `(x, y, log σx², log σy²)` and K orientation logits.

use loc3r_bundle::io::heads::{BEV, ORIENTATION_LOGITS, ORI_HIDDEN, POSITION, POS_HIDDEN, VISION_HIDDEN};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::graph::{Dim, GraphBuilder};
use crate::models::context::ModelGraph;
use crate::models::layers::{cast_to, linear, mlp_erf};
use crate::models::ExportOptions;
use crate::tensor::DType;

pub fn graph(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    let cfg = ckpt.config();
    let h = cfg.hidden_size;
    let l = &cfg.loc3r;
    let w = ckpt.weights("heads")?;
    let mut g = ModelGraph::new("heads", opts.precision);
    let dt = g.compute();
    g.set_doc("Loc3R heads: position (x, y, log σx², log σy²), orientation logits over K bins, BEV per vision token");
    let pos = g.input(POS_HIDDEN, DType::F32, [Dim::sym("batch"), h.into()]);
    let ori = g.input(ORI_HIDDEN, DType::F32, [Dim::sym("batch"), h.into()]);
    let vis = g.input(VISION_HIDDEN, DType::F32, [Dim::sym("batch"), Dim::sym("vision_tokens"), h.into()]);

    let x = cast_to(&mut g, "model.loc3r.pos_head", "to_io", &pos, dt);
    let p = mlp_erf(&mut g, &w.pp("pos_head"), ("0", "2"), &x, h, l.pos_head_hidden, 4)?;
    let p = cast_to(&mut g, "model.loc3r.pos_head", "to_f32", &p, DType::F32);
    g.output_with_shape(POSITION, &p, [Dim::sym("batch"), 4.into()]);

    let x = cast_to(&mut g, "model.loc3r.ori_head", "to_io", &ori, dt);
    let o = mlp_erf(&mut g, &w.pp("ori_head"), ("0", "2"), &x, h, l.ori_head_hidden, l.orientation_bins)?;
    let o = cast_to(&mut g, "model.loc3r.ori_head", "to_f32", &o, DType::F32);
    g.output_with_shape(ORIENTATION_LOGITS, &o, [Dim::sym("batch"), l.orientation_bins.into()]);

    let x = cast_to(&mut g, "model.loc3r.bev_head", "to_io", &vis, dt);
    let b = linear(&mut g, &w.pp("bev_head"), &x, h, 4, true)?;
    let b = cast_to(&mut g, "model.loc3r.bev_head", "to_f32", &b, DType::F32);
    g.output_with_shape(BEV, &b, [Dim::sym("batch"), Dim::sym("vision_tokens"), 4.into()]);
    Ok(g.into_builder())
}
