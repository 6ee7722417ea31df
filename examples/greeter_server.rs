//! The greeter as a server in its own process. Prints `listening on ADDRESS`,
//! serves until SIGINT/SIGTERM, then deregisters, drains and exits 0.
//!
//! ```sh
//! cargo run --example greeter_server -- 127.0.0.1:8080
//! curl -H 'Content-Type: application/json' -d '{"name":"Ada"}' http://127.0.0.1:8080/Greeter.Hello
//! ```
//!
//! The address comes from the first argument, else `MICRO_TRANSPORT_ADDRESS`,
//! else a free loopback port.

use std::time::Duration;

use micro_examples::{HELLO, HelloReply, SLEEP, init_logging};

#[tokio::main]
async fn main() -> micro::Result<()> {
    init_logging();

    let mut builder = micro::Service::builder("greeter")
        .version("1.0.0")
        .handle(HELLO, |_ctx, request| async move {
            Ok(HelloReply {
                message: format!("Hello, {}", request.name),
            })
        })
        // Takes as long as asked, to show deadlines: a caller's timeout ends the call.
        .handle(SLEEP, |_ctx, request| async move {
            tokio::time::sleep(Duration::from_millis(request.millis)).await;
            Ok(())
        })
        // A deliberately broken endpoint: its panic becomes an `internal` error
        // for that one call and the server keeps serving.
        .handle("Greeter.Panic", |_ctx, _request: ()| async move {
            panic!("Greeter.Panic always panics");
            #[allow(unreachable_code)]
            Ok(())
        })
        .after_start(|running| {
            println!("listening on {}", running.address());
            async { Ok(()) }
        });
    if let Some(address) = std::env::args().nth(1) {
        builder = builder.address(address);
    }
    builder.build_from_env()?.run().await
}
