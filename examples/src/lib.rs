//! Message types shared by micro's examples, so the server and client examples
//! (separate processes) agree on them the way real services share a crate of
//! API types.

use micro::Endpoint;
use serde::{Deserialize, Serialize};

/// `Greeter.Hello`, typed: the greeter server and its clients share this
/// constant, so a request of the wrong type does not compile on either side.
pub const HELLO: Endpoint<HelloRequest, HelloReply> = Endpoint::new("Greeter.Hello");

/// `Greeter.Sleep`: takes as long as asked, then answers nothing.
pub const SLEEP: Endpoint<SleepRequest, ()> = Endpoint::new("Greeter.Sleep");

/// What `Greeter.Hello` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloRequest {
    /// Who to greet.
    pub name: String,
}

/// What `Greeter.Hello` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloReply {
    /// The greeting.
    pub message: String,
}

/// What `Greeter.Sleep` takes: how long to take before answering, to show deadlines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepRequest {
    /// Milliseconds to sleep.
    pub millis: u64,
}

/// The event the `users` service publishes when a password changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordChanged {
    /// Whose password changed.
    pub user_id: u64,
    /// Where to tell them.
    pub email: String,
}

/// The topic [`PasswordChanged`] events go to.
pub const PASSWORD_CHANGED: &str = "user.password_changed";

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`), so examples show
/// what the framework reports without drowning their own output.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
