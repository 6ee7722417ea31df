//! Core NATS: subjects and queue groups, at most once, no server-side state.

use std::{cell::RefCell, collections::VecDeque, time::Duration};

use async_nats::{
    Client, PublishErrorKind, Subject, SubscribeErrorKind, client::traits::Publisher,
    message::OutboundMessage,
};
use bytes::Bytes;
use futures::{StreamExt, TryFutureExt};

use super::headers;
use crate::{
    BoxError, Delivery, Error, ErrorKind, Message, Result, Subscription, topic::validate_topic,
};

/// How many topics each thread remembers the subject of.
const RECENT_SUBJECTS: usize = 8;

thread_local! {
    /// The subjects of the topics this thread published to last, newest
    /// first. Per thread, so that looking one up takes no lock and bumps no
    /// count another thread bumps too; a subject is the same for every
    /// broker, so one list serves them all.
    static RECENT: RefCell<VecDeque<(Box<str>, Subject)>> =
        RefCell::new(VecDeque::with_capacity(RECENT_SUBJECTS));
}

/// `topic` as a subject, checked; a topic micro refuses is
/// `InvalidArgument`. A topic this thread published to recently is neither
/// checked nor copied again (each copy was an allocation, freed on the
/// client's thread).
pub(super) fn subject(topic: &str) -> Result<Subject> {
    let recent = RECENT.with_borrow(|recent| {
        recent
            .iter()
            .find(|(known, _)| **known == *topic)
            .map(|(_, subject)| subject.clone())
    });
    if let Some(subject) = recent {
        return Ok(subject);
    }
    validate_topic(topic)?;
    let subject = Subject::from(topic);
    // The first clone makes the bytes shared, so that every later one only
    // counts (a clone of bytes not yet shared allocates).
    let handed = subject.clone();
    RECENT.with_borrow_mut(|recent| {
        if recent.len() == RECENT_SUBJECTS {
            recent.pop_back();
        }
        recent.push_front((topic.into(), subject));
    });
    Ok(handed)
}

/// Starts publishing `message` to `subject` (the checked `topic`): the
/// headers are checked and encoded now, and the future returned hands the
/// message to the client.
///
/// Not an `async fn`, so the caller's future (which async-trait allocates on
/// every publish) holds only the client's future. The subject is handed over
/// owned: the client's `publish(impl ToSubject)` would copy it once more.
pub(super) fn publish<'a>(
    client: &'a Client,
    topic: &'a str,
    subject: Subject,
    message: Message,
) -> Result<impl Future<Output = Result<()>> + 'a> {
    let Message { headers, body } = message;
    let outbound = OutboundMessage {
        subject,
        reply: None,
        payload: body,
        headers: headers::to_nats(&headers)?,
    };
    Ok(Publisher::publish_message(client, outbound).map_err(move |err| publish_error(topic, err)))
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
    confirm_within: Duration,
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
    confirm_subscriptions(client, confirm_within)
        .await
        .map_err(|err| err.context(format!("subscribe to `{topic}`")))?;
    // Dropping the async-nats subscriber (inside the stream) unsubscribes.
    let deliveries = subscriber.map(|message| Ok(delivery(message)));
    Ok(Subscription::new(topic, deliveries.boxed()))
}

/// Waits until the server has taken every SUB this client sent so far.
///
/// async-nats's `subscribe` only queues the SUB, and its `flush` only
/// writes it to the socket: a message another connection publishes right
/// after could still reach the server first and be missed. The server reads
/// one connection's commands in order, so once a probe published on this
/// connection comes back to it, every SUB sent before the probe is in force.
/// Bounded by `within`: a server that does not answer is `Unavailable`.
async fn confirm_subscriptions(client: &Client, within: Duration) -> Result<()> {
    let unconfirmed = |err: Option<BoxError>| {
        let error = Error::unavailable(format!(
            "the NATS server did not confirm the subscription within {within:?}"
        ));
        match err {
            Some(err) => error.with_source(err),
            None => error,
        }
    };
    let round_trip = async {
        let probe = client.new_inbox();
        let mut echo = client
            .subscribe(probe.clone())
            .await
            .map_err(|err| unconfirmed(Some(err.into())))?;
        client
            .publish(probe, Bytes::new())
            .await
            .map_err(|err| unconfirmed(Some(err.into())))?;
        echo.next().await.map(drop).ok_or_else(|| unconfirmed(None))
    };
    tokio::time::timeout(within, round_trip)
        .await
        .unwrap_or_else(|_| Err(unconfirmed(None)))
}

fn delivery(message: async_nats::Message) -> Delivery {
    let headers = headers::from_nats(message.headers.as_ref());
    let body: Bytes = message.payload;
    // The subject moves into the delivery as it is: no copy of the topic.
    Delivery::new(message.subject, Message { headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_checked_once_and_its_subject_reused() {
        let first = subject("orders.eu.created").unwrap();
        let again = subject("orders.eu.created").unwrap();
        assert_eq!(first.as_str(), "orders.eu.created");
        assert_eq!(first, again);
        for bad in ["", "a..b", "a.*", "a.>", "a b"] {
            for attempt in 0..2 {
                let err = subject(bad).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}, {attempt}");
            }
        }
    }

    #[test]
    fn each_thread_remembers_a_few_subjects() {
        for i in 0..RECENT_SUBJECTS + 10 {
            let topic = format!("t.{i}");
            assert_eq!(subject(&topic).unwrap().as_str(), topic);
        }
        let kept = RECENT.with_borrow(VecDeque::len);
        assert_eq!(kept, RECENT_SUBJECTS);
        let newest = RECENT.with_borrow(|recent| recent[0].0.clone());
        assert_eq!(&*newest, format!("t.{}", RECENT_SUBJECTS + 9));
    }
}
