//! Property and fuzz tests on stable Rust (proptest): the BHTTP codec and
//! the gRPC framing of [`narun::wire`], the ServiceSpec parser, the gateway
//! configuration parser and the gateway's route matcher.
//!
//! `cargo test --test props` runs each property for a few dozen to a few
//! hundred generated cases (seconds in all, debug build); a failure prints
//! the minimized input and the seed to replay it. `scripts/fuzz-long.sh`
//! runs them for minutes each. Knobs (see `harness` and docs/testing.md):
//! `PROPTEST_CASES`, `NARUN_PROPS_SECS`, `NARUN_PROPS_SEED`.

mod gateway_config;
mod harness;
mod routes;
mod spec;
mod wire_bhttp;
mod wire_grpc;
mod yamlish;
