//! Helpers shared by the integration tests: a small run written through the library.

#![allow(dead_code)]

use loc3r_synth::output::{write_room, write_run_files};
use loc3r_synth::{generate_room, Options};
use std::path::Path;

/// Small, fast options: 64×48 frames, 6 frames per room, no video.
pub fn small(seed: u64) -> Options {
    Options { seed, frames: 6, width: 64, height: 48, sample_frames: 4, video: false, ..Options::default() }
}

/// Writes rooms `0..rooms` of `opts` under `out` like the CLI does (without video).
pub fn write_run(out: &Path, opts: &Options, rooms: usize) {
    let written: Vec<_> = (0..rooms).map(|i| write_room(out, opts, &generate_room(opts, i).unwrap(), None).unwrap()).collect();
    write_run_files(out, &opts.split, &written).unwrap();
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
