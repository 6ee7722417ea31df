//! A codec added from outside micro, with nothing but its public API: `Csv`,
//! lists of integers as `text/csv`, served and called over every transport,
//! unary, streamed and published. Also: the built-in wrappers pin their
//! codec where a plain serde type negotiates.

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{Kind, WAIT, World};
use futures::TryStreamExt;
use micro::{
    Endpoint, Error, ErrorKind, Result, Server,
    codec::{ContentType, Decode, Encode, Json, MsgPack, Raw},
    registry::Registry,
};
use tokio::sync::mpsc;

/// A list of integers carried as one line of comma-separated values.
#[derive(Debug, Clone, PartialEq)]
struct Csv(Vec<i64>);

const CSV: &str = "text/csv";

impl Encode for Csv {
    const CONTENT_TYPES: &'static [&'static str] = &[CSV];

    fn encode(&self, _content_type: &str, buffer: &mut BytesMut) -> Result<()> {
        let line: Vec<String> = self.0.iter().map(i64::to_string).collect();
        buffer.put_slice(line.join(",").as_bytes());
        Ok(())
    }
}

impl Decode for Csv {
    const CONTENT_TYPES: &'static [&'static str] = &[CSV];

    fn decode(_content_type: &str, body: Bytes) -> Result<Csv> {
        let text = std::str::from_utf8(&body)
            .map_err(|err| Error::invalid_argument(format!("CSV is not UTF-8: {err}")))?;
        if text.is_empty() {
            return Ok(Csv(Vec::new()));
        }
        text.split(',')
            .map(|field| {
                field.trim().parse().map_err(|err| {
                    Error::invalid_argument(format!("CSV field {field:?} is not an integer: {err}"))
                })
            })
            .collect::<Result<_>>()
            .map(Csv)
    }
}

const SORT: Endpoint<Csv, Csv> = Endpoint::new("Numbers.Sort");
const RUNNING_SUM: Endpoint<Csv, Csv> = Endpoint::new("Numbers.RunningSum");

fn numbers(world: &World) -> micro::ServiceBuilder {
    world
        .service("numbers")
        .handle(SORT, |_ctx, Csv(mut numbers)| async move {
            numbers.sort_unstable();
            Ok(Csv(numbers))
        })
        .server(
            Server::new().handle_bidi_stream(RUNNING_SUM, |_ctx, rows| async move {
                let mut sum = 0;
                Ok(rows.map_ok(move |Csv(row)| {
                    sum += row.iter().sum::<i64>();
                    Csv(vec![sum])
                }))
            }),
        )
}

async fn a_codec_of_our_own_is_served_and_called(kind: Kind) {
    let world = World::new(kind);
    let running = numbers(&world).build().unwrap().start().await.unwrap();
    let client = world.client();

    let sorted = client
        .call("numbers", SORT, &Csv(vec![3, -1, 2]))
        .await
        .unwrap();
    assert_eq!(sorted, Csv(vec![-1, 2, 3]));

    // On the wire it is CSV text: read back as raw bytes, the reply is the line.
    let raw: Raw = client
        .request::<Csv, Raw>("numbers", "Numbers.Sort")
        .send(&Csv(vec![5, 4]))
        .await
        .unwrap();
    assert_eq!(&raw[..], b"4,5");

    // Streams carry it too.
    let (rows, requests) = micro::streaming::channel::<Csv>(1);
    let mut sums = client
        .request("numbers", RUNNING_SUM)
        .bidi_stream(requests)
        .await
        .unwrap();
    rows.send(Csv(vec![1, 2])).await.unwrap();
    assert_eq!(sums.message().await.unwrap(), Some(Csv(vec![3])));
    rows.send(Csv(vec![10])).await.unwrap();
    assert_eq!(sums.message().await.unwrap(), Some(Csv(vec![13])));
    drop(rows);
    assert_eq!(sums.message().await.unwrap(), None);

    // The registry says what the endpoint reads.
    let services = world.registry.get_service("numbers").await.unwrap();
    let sort = services[0]
        .endpoints
        .iter()
        .find(|endpoint| endpoint.name == "Numbers.Sort")
        .unwrap();
    assert_eq!(sort.metadata.get("content-types"), Some(CSV));
    running.stop().await.unwrap();
}

async fn a_request_the_codec_refuses_is_invalid_argument(kind: Kind) {
    let world = World::new(kind);
    let running = numbers(&world).build().unwrap().start().await.unwrap();
    let client = world.client();

    // A JSON request to a CSV endpoint: refused, naming what it reads.
    let err = client
        .call::<_, Csv>("numbers", "Numbers.Sort", &vec![3, 1])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains(CSV), "{err}");

    // Bytes labelled as something else: refused the same way.
    let err = client
        .request::<_, Csv>("numbers", "Numbers.Sort")
        .send(&Raw::from("3,1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains(CSV), "{err}");

    // Malformed CSV: the codec's own error, with its kind.
    let err = client
        .call::<_, Csv>("numbers", "Numbers.Sort", &BrokenCsv)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("not an integer"), "{err}");
    running.stop().await.unwrap();
}

/// Sends `text/csv` that is not integers.
struct BrokenCsv;

impl Encode for BrokenCsv {
    const CONTENT_TYPES: &'static [&'static str] = &[CSV];

    fn encode(&self, _content_type: &str, buffer: &mut BytesMut) -> Result<()> {
        buffer.put_slice(b"1,two");
        Ok(())
    }
}

async fn events_carry_a_codec_of_our_own(kind: Kind) {
    let world = World::new(kind);
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let running = world
        .service("audit")
        .server(
            Server::new().subscribe("numbers.added", move |ctx: micro::Context, row: Csv| {
                let seen_tx = seen_tx.clone();
                async move {
                    let content_type = ctx.metadata().get("content-type").map(str::to_owned);
                    seen_tx
                        .send((row, content_type))
                        .map_err(|_| Error::internal("test ended"))
                }
            }),
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    world
        .client()
        .publish("numbers.added", &Csv(vec![4, 2]))
        .await
        .unwrap();
    let (row, content_type) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("the event arrives")
        .expect("the subscriber is running");
    assert_eq!(row, Csv(vec![4, 2]));
    assert_eq!(content_type.as_deref(), Some(CSV));
    running.stop().await.unwrap();
}

async fn wrappers_pin_their_codec_where_serde_types_negotiate(kind: Kind) {
    let world = World::new(kind);
    let running = world
        .service("pinned")
        .handle("Pinned.Json", |_ctx, Json(n): Json<i64>| async move {
            Ok(Json(n + 1))
        })
        .handle("Pinned.Either", |_ctx, n: i64| async move { Ok(n + 1) })
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();

    // A plain serde handler answers MessagePack callers in MessagePack...
    let MsgPack(either): MsgPack<i64> = client
        .call("pinned", "Pinned.Either", &MsgPack(1i64))
        .await
        .unwrap();
    assert_eq!(either, 2);
    // ... and a serde call follows the content type it is asked for.
    let either: i64 = client
        .request("pinned", "Pinned.Either")
        .content_type(ContentType::MsgPack)
        .timeout(Duration::from_secs(5))
        .send(&1i64)
        .await
        .unwrap();
    assert_eq!(either, 2);
    // A Json<T> handler refuses MessagePack, naming JSON.
    let err = client
        .call::<_, i64>("pinned", "Pinned.Json", &MsgPack(1i64))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("application/json"), "{err}");
    let Json(pinned): Json<i64> = client
        .call("pinned", "Pinned.Json", &Json(1i64))
        .await
        .unwrap();
    assert_eq!(pinned, 2);
    // A Json<T> request cannot be sent as MessagePack: refused before sending.
    let err = client
        .request::<_, i64>("pinned", "Pinned.Json")
        .content_type(ContentType::MsgPack)
        .send(&Json(1i64))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    running.stop().await.unwrap();
}

on_every_transport!(
    a_codec_of_our_own_is_served_and_called,
    a_request_the_codec_refuses_is_invalid_argument,
    events_carry_a_codec_of_our_own,
    wrappers_pin_their_codec_where_serde_types_negotiate,
);
