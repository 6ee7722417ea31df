//! Core NATS: subjects and queue groups, at most once, no server-side state.

use async_nats::{Client, PublishErrorKind, SubscribeErrorKind};
use bytes::Bytes;
use futures::{StreamExt, TryFutureExt, future::Either};

use super::headers;
use crate::{Delivery, Error, ErrorKind, Message, Result, Subscription};

/// Starts publishing `message`: the headers are checked and encoded now, and
/// the future returned hands the message to the client.
///
/// Not an `async fn`: one of the client's two publish futures is picked here
/// and awaited by the caller, so the caller's future (which async-trait
/// allocates on every publish) holds just that one, not both and their
/// arguments beside them.
pub(super) fn publish<'a>(
    client: &'a Client,
    topic: &'a str,
    message: Message,
) -> Result<impl Future<Output = Result<()>> + 'a> {
    let Message { headers, body } = message;
    let subject = topic.to_owned();
    let sending = match headers::to_nats(&headers)? {
        None => Either::Left(client.publish(subject, body)),
        Some(headers) => Either::Right(client.publish_with_headers(subject, headers, body)),
    };
    Ok(sending.map_err(move |err| publish_error(topic, err)))
}

fn publish_error(topic: &str, err: async_nats::PublishError) -> Error {
    let kind = match err.kind() {
        PublishErrorKind::MaxPayloadExceeded => ErrorKind::ResourceExhausted,
        PublishErrorKind::InvalidSubject => ErrorKind::InvalidArgument,
        PublishErrorKind::Send => ErrorKind::Unavailable,
    };
    Error::new(kind, format!("publish to `{topic}` failed")).with_source(err)
}

pub(super) async fn subscribe(
    client: &Client,
    topic: &str,
    queue: Option<&str>,
) -> Result<Subscription> {
    let subscribed = match queue {
        None => client.subscribe(topic.to_owned()).await,
        Some(group) => {
            client
                .queue_subscribe(topic.to_owned(), group.to_owned())
                .await
        }
    };
    let subscriber = subscribed.map_err(|err| {
        let kind = match err.kind() {
            SubscribeErrorKind::InvalidSubject | SubscribeErrorKind::InvalidQueueName => {
                ErrorKind::InvalidArgument
            }
            _ => ErrorKind::Unavailable,
        };
        Error::new(kind, format!("subscribe to `{topic}` failed")).with_source(err)
    })?;
    // Dropping the async-nats subscriber (inside the stream) unsubscribes.
    let deliveries = subscriber.map(|message| Ok(delivery(message)));
    Ok(Subscription::new(topic, deliveries.boxed()))
}

fn delivery(message: async_nats::Message) -> Delivery {
    let headers = headers::from_nats(message.headers.as_ref());
    let body: Bytes = message.payload;
    Delivery::new(message.subject.as_str(), Message { headers, body })
}
