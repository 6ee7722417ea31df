//! Core NATS: subjects and queue groups, at most once, no server-side state.

use async_nats::{Client, PublishErrorKind, SubscribeErrorKind};
use bytes::Bytes;
use futures::StreamExt;

use super::headers;
use crate::{Delivery, Error, ErrorKind, Message, Result, Subscription};

pub(super) async fn publish(client: &Client, topic: &str, message: Message) -> Result<()> {
    let subject = topic.to_owned();
    let sent = match headers::to_nats(&message.headers)? {
        None => client.publish(subject, message.body).await,
        Some(headers) => {
            client
                .publish_with_headers(subject, headers, message.body)
                .await
        }
    };
    sent.map_err(|err| {
        let kind = match err.kind() {
            PublishErrorKind::MaxPayloadExceeded => ErrorKind::ResourceExhausted,
            PublishErrorKind::InvalidSubject => ErrorKind::InvalidArgument,
            PublishErrorKind::Send => ErrorKind::Unavailable,
        };
        Error::new(kind, format!("publish to `{topic}` failed")).with_source(err)
    })
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
