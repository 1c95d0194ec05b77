//! Generates the `hello.v1` client and server from `hello.proto`.

use std::path::PathBuf;

fn protoc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROTOC") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("protoc"))
        .find(|p| p.is_file())
}

fn main() {
    println!("cargo:rerun-if-changed=hello.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let Some(protoc) = protoc() else {
        panic!(
            "protoc (the Protocol Buffers compiler) is not on PATH and PROTOC is not set: \
             install it with `apt-get install protobuf-compiler` (or run `bash scripts/prereqs.sh`)"
        );
    };
    // prost-build runs $PROTOC, else `protoc` from PATH: what was found above.
    if let Err(e) = tonic_prost_build::configure().compile_protos(&["hello.proto"], &["."]) {
        panic!(
            "cannot generate code from hello.proto with {}: {e}",
            protoc.display()
        );
    }
}
