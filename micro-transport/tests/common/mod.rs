//! What the per-wire test files share: the wires, and a macro that runs one
//! `async fn case(wire: Wire)` on each.

/// The network transports a case runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wire {
    Http,
    Grpc,
}

/// Expands `async fn case(wire: Wire)` functions into one test per wire, in
/// modules `http_transport` and `grpc_transport`.
#[macro_export]
macro_rules! on_every_wire {
    ($($case:ident),* $(,)?) => {
        mod http_transport {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Wire::Http).await;
                }
            )*
        }
        mod grpc_transport {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Wire::Grpc).await;
                }
            )*
        }
    };
}
