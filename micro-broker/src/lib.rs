//! micro's broker: publish messages to topics, subscribe to them as streams.
//!
//! TODO(guide): quick start doc test on the memory backend, backend list and
//! feature table (filled in by the broker implementation).

mod broker;
mod message;

pub use broker::{Broker, Capabilities, DynBroker, SubscribeOptions, Subscription};
pub use message::{Acker, Delivery, Message};
pub use micro_core::{BoxError, Error, ErrorKind, Metadata, Result};
