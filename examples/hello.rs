//! One process, embedded defaults: register a `greeter` service, call
//! `Greeter.Hello` through the client by service name, print the reply, exit.
//!
//! ```sh
//! cargo run --example hello
//! ```

use micro_examples::{HELLO, HelloReply, HelloRequest, init_logging};

#[tokio::main]
async fn main() -> micro::Result<()> {
    init_logging();

    let service = micro::Service::builder("greeter")
        .version("1.0.0")
        .handle(HELLO, |_ctx, request| async move {
            Ok(HelloReply {
                message: format!("Hello, {}", request.name),
            })
        })
        // Nothing set in the environment: in-process registry and broker, HTTP on a free port.
        .build_from_env()?;
    let running = service.start().await?;

    let request = HelloRequest {
        name: "Ada".to_owned(),
    };
    let reply = running.client().call("greeter", HELLO, &request).await?;
    println!("{}", reply.message);

    running.stop().await
}
