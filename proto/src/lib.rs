//! Generated code for `proto/hello.proto` (`hello.v1.Greeter`), shared by
//! narun's gRPC example and tests.

#![allow(clippy::all, missing_docs)]

/// `package hello.v1;`
pub mod hello {
    /// `hello.v1`
    pub mod v1 {
        tonic::include_proto!("hello.v1");
    }
}

pub use hello::v1;

/// The protobuf runtime the generated code uses (for tests that encode by hand).
pub use prost;
/// The codec tonic clients need for hand-built calls (`tonic::client::Grpc`).
pub use tonic_prost::ProstCodec;
