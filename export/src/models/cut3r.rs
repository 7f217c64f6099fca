//! CUT3R graphs: `cut3r_encoder` and the recurrent `cut3r_step` (specs/cut3r.md). In progress.
