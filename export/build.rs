//! Compiles the vendored `proto/onnx.proto` into Rust types (`$OUT_DIR/onnx.rs`), which
//! `graph::proto` includes. `protox` parses the file in pure Rust, so no `protoc` binary is
//! needed on the build machine.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    const PROTO: &str = "proto/onnx.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed=build.rs");

    let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
