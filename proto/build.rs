//! Compiles our .proto files with protox (pure Rust), so building needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/switchboard/v1/discovery.proto",
        "proto/switchboard/v1/admin.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // One snapshot payload is pushed to many data planes: share it, don't copy it.
        .bytes(".switchboard.v1.Snapshot.payload")
        .compile_fds(descriptors)?;
    Ok(())
}
