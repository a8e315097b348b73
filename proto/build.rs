//! Generates the prost code for TinyKV-rs's protobuf messages.
//!
//! protoc comes from `protoc-bin-vendored` and is handed to prost-build directly, so a fresh
//! machine needs no system protoc and nothing leaks into the environment of other build
//! scripts (raft-proto's build refuses a protoc it does not expect).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/eraftpb.proto",
        "proto/metapb.proto",
        "proto/errorpb.proto",
        "proto/raft_serverpb.proto",
        "proto/raft_cmdpb.proto",
        "proto/kvrpcpb.proto",
    ];
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.compile_protos(&protos, &["proto/"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
