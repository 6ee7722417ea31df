//! Dev-only support for testing micro's gRPC transport against gRPC as the
//! rest of the world speaks it (`publish = false`).
//!
//! It holds the `echo` proto (`proto/echo.proto`, package `micro.echo`), its
//! tonic-generated client and server, and the same echo behaviour written
//! twice: against tonic alone and as a micro handler. The interop tests
//! (Python grpcio, raw HTTP/2, plain tonic) and micro-bench's gRPC
//! benchmark use it. It lives here, not in `micro-transport`, so that users
//! of the `grpc` feature compile no protox or tonic-prost-build.

pub mod echo;
