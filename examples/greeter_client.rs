//! Calls a greeter server running in another process at the address given on
//! the command line (discovery by name across processes comes with the
//! registry backends).
//!
//! ```sh
//! cargo run --example greeter_client -- 127.0.0.1:8080 Ada
//! ```

use micro_examples::{HelloReply, HelloRequest, init_logging};

#[tokio::main]
async fn main() -> micro::Result<()> {
    init_logging();

    let mut args = std::env::args().skip(1);
    let Some(address) = args.next() else {
        eprintln!("usage: greeter_client ADDRESS [NAME]");
        std::process::exit(2);
    };
    let name = args.next().unwrap_or_else(|| "Ada".to_owned());

    let client = micro::Client::from_env()?;
    let reply: HelloReply = client
        .call_address(&address, "Greeter.Hello", &HelloRequest { name })
        .await?;
    println!("{}", reply.message);
    Ok(())
}
