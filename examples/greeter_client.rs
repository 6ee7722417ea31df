//! Calls the greeter server running in another process: by service name
//! through the registry the environment chooses, or at an address.
//!
//! ```sh
//! # by name: both processes find each other through the same registry backend
//! MICRO_REGISTRY=mdns cargo run --example greeter_server &
//! MICRO_REGISTRY=mdns cargo run --example greeter_client -- Ada
//!
//! # by address, without a registry
//! cargo run --example greeter_client -- 127.0.0.1:8080 Ada
//! ```
//!
//! A first argument containing `:` is an address; otherwise it is the name to
//! greet and the server is found by its service name, `greeter`.

use micro_examples::{HELLO, HelloRequest, init_logging};

#[tokio::main]
async fn main() -> micro::Result<()> {
    init_logging();

    let mut args = std::env::args().skip(1).peekable();
    let address = args.next_if(|first| first.contains(':'));
    let name = args.next().unwrap_or_else(|| "Ada".to_owned());
    let request = HelloRequest { name };

    let client = micro::Client::from_env()?;
    let reply = match address {
        Some(address) => client.call_address(&address, HELLO, &request).await?,
        None => client.call("greeter", HELLO, &request).await?,
    };
    println!("{}", reply.message);
    Ok(())
}
