//! The gRPC transport held to the whole transport conformance suite.
#![cfg(feature = "grpc")]

use micro_transport::grpc::GrpcTransport;

mod conformance {
    use super::*;

    micro_transport::transport_conformance_tests!(GrpcTransport::new(), "127.0.0.1:0");
}

mod small_limit {
    use super::*;

    // The limit cases again with a small limit, so the over-limit probes are cheap.
    micro_transport::transport_conformance_tests!(@cases (
        GrpcTransport::builder().max_message_size(64 * 1024).build().unwrap(),
        "127.0.0.1:0"
    )
        large_payload_near_the_limit,
        over_limit_rejected,
    );
}
