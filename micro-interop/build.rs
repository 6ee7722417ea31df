//! Generates the tonic code of the `echo` proto. protox parses the protos in
//! Rust, so building needs no `protoc`.

use std::{env, path::PathBuf};

fn main() {
    let protos = ["proto/echo.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = match protox::compile(protos, ["proto"]) {
        Ok(descriptors) => descriptors,
        Err(err) => panic!("micro-interop's protos do not parse: {err}"),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let descriptor_path = out.join("micro_echo_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )
    .expect("writing the descriptor set to OUT_DIR");
    if let Err(err) = tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(descriptors)
    {
        panic!("generating the tonic code of micro-interop's protos failed: {err}");
    }
}
