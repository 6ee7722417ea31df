//! Streaming calls end to end through micro's typed API, over the memory, the
//! HTTP and (with `transport-grpc`) the gRPC transport: the three shapes with
//! serde and protobuf messages, errors inside streams, cancellation both
//! ways, back-pressure and deadlines.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::{Kind, WAIT, World};
use futures::{StreamExt, TryStreamExt};
use micro::{
    Context, Endpoint, Error, ErrorKind,
    codec::{ContentType, Proto},
    registry::Registry,
    streaming::{self, Streaming},
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    count: u64,
    mean: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Chunk {
    #[prost(uint64, tag = "1")]
    index: u64,
    #[prost(bytes = "vec", tag = "2")]
    data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Total {
    #[prost(uint64, tag = "1")]
    chunks: u64,
    #[prost(uint64, tag = "2")]
    bytes: u64,
}

/// The protobuf endpoints, typed: client and server share them.
const UPLOAD: Endpoint<Proto<Chunk>, Proto<Total>> = Endpoint::new("Files.Upload");
const DOWNLOAD: Endpoint<Proto<Total>, Proto<Chunk>> = Endpoint::new("Files.Download");
const ECHO: Endpoint<Proto<Chunk>, Proto<Chunk>> = Endpoint::new("Files.Echo");

async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("a step of the test took longer than WAIT")
}

fn sensors(world: &World) -> micro::ServiceBuilder {
    world.service("sensors").server(
        micro::Server::new()
            .handle_client_stream(
                "Sensors.Summarize",
                |_ctx, mut readings: Streaming<Reading>| async move {
                    let (mut count, mut sum) = (0u64, 0.0);
                    while let Some(reading) = readings.message().await? {
                        count += 1;
                        sum += reading.value;
                    }
                    Ok(Summary {
                        count,
                        mean: sum / count.max(1) as f64,
                    })
                },
            )
            .handle_server_stream("Sensors.Replay", |_ctx, count: u64| async move {
                Ok(futures::stream::iter((0..count).map(|i| {
                    Ok(Reading {
                        sensor: format!("s{i}"),
                        value: i as f64,
                    })
                })))
            })
            .handle_bidi_stream(
                "Sensors.Scale",
                |ctx: Context, readings: Streaming<Reading>| async move {
                    let factor: f64 = ctx
                        .metadata()
                        .get("factor")
                        .and_then(|factor| factor.parse().ok())
                        .unwrap_or(1.0);
                    Ok(readings.map_ok(move |reading| Reading {
                        value: reading.value * factor,
                        ..reading
                    }))
                },
            )
            .handle_client_stream(UPLOAD, |_ctx, chunks| async move {
                let mut expected = 0;
                let mut total = Total::default();
                let mut chunks = std::pin::pin!(chunks);
                while let Some(chunk) = chunks.try_next().await? {
                    if chunk.index != expected {
                        return Err(Error::invalid_argument("chunks out of order"));
                    }
                    expected += 1;
                    total.chunks += 1;
                    total.bytes += chunk.data.len() as u64;
                }
                Ok(Proto(total))
            })
            .handle_server_stream(DOWNLOAD, |_ctx, Proto(total)| async move {
                Ok(futures::stream::iter((0..total.chunks).map(move |index| {
                    Ok(Proto(Chunk {
                        index,
                        data: vec![index as u8; total.bytes as usize],
                    }))
                })))
            })
            .handle_bidi_stream(ECHO, |_ctx, chunks| async move { Ok(chunks) }),
    )
}

async fn the_three_shapes_carry_serde_messages(kind: Kind) {
    let world = World::new(kind);
    let running = sensors(&world).build().unwrap().start().await.unwrap();
    let client = world.client();

    let readings = (1..=4).map(|i| {
        Ok(Reading {
            sensor: "a".into(),
            value: i as f64,
        })
    });
    let summary: Summary = within(
        client
            .request("sensors", "Sensors.Summarize")
            .client_stream(futures::stream::iter(readings)),
    )
    .await
    .unwrap();
    assert_eq!(
        summary,
        Summary {
            count: 4,
            mean: 2.5
        }
    );

    for content_type in [ContentType::Json, ContentType::MsgPack] {
        let replayed: Vec<Reading> = within(async {
            client
                .request("sensors", "Sensors.Replay")
                .content_type(content_type)
                .server_stream(&3u64)
                .await?
                .try_collect()
                .await
        })
        .await
        .unwrap();
        let values: Vec<f64> = replayed.iter().map(|r| r.value).collect();
        assert_eq!(values, [0.0, 1.0, 2.0], "{content_type}");
    }

    // Lock-step: each reply arrives before the next request is sent.
    let (sender, requests) = streaming::channel(1);
    let mut replies = within(
        client
            .request::<Reading, Reading>("sensors", "Sensors.Scale")
            .metadata("factor", "10")
            .bidi_stream(requests),
    )
    .await
    .unwrap();
    for i in 0..5 {
        let reading = Reading {
            sensor: format!("b{i}"),
            value: i as f64,
        };
        within(sender.send(reading)).await.unwrap();
        let reply = within(replies.message()).await.unwrap().unwrap();
        assert_eq!(reply.sensor, format!("b{i}"));
        assert_eq!(reply.value, i as f64 * 10.0);
    }
    drop(sender);
    assert!(within(replies.message()).await.unwrap().is_none());
    running.stop().await.unwrap();
}

async fn the_three_shapes_carry_protobuf_messages(kind: Kind) {
    let world = World::new(kind);
    let running = sensors(&world).build().unwrap().start().await.unwrap();
    let client = world.client();

    let chunks = (0..50).map(|index| {
        Ok(Proto(Chunk {
            index,
            data: vec![7; 1000],
        }))
    });
    let Proto(total) = within(
        client
            .request("sensors", UPLOAD)
            .client_stream(futures::stream::iter(chunks)),
    )
    .await
    .unwrap();
    assert_eq!(
        total,
        Total {
            chunks: 50,
            bytes: 50_000
        }
    );

    let downloaded: Vec<Proto<Chunk>> = within(async {
        client
            .request("sensors", DOWNLOAD)
            .server_stream(&Proto(Total {
                chunks: 3,
                bytes: 2,
            }))
            .await?
            .try_collect()
            .await
    })
    .await
    .unwrap();
    let data: Vec<Vec<u8>> = downloaded.into_iter().map(|c| c.0.data).collect();
    assert_eq!(data, [vec![0, 0], vec![1, 1], vec![2, 2]]);

    let sent: Vec<Chunk> = (0..10)
        .map(|index| Chunk {
            index,
            data: index.to_be_bytes().to_vec(),
        })
        .collect();
    let echoed: Vec<Proto<Chunk>> = within(async {
        client
            .request("sensors", ECHO)
            .bidi_stream(futures::stream::iter(
                sent.clone().into_iter().map(|chunk| Ok(Proto(chunk))),
            ))
            .await?
            .try_collect()
            .await
    })
    .await
    .unwrap();
    assert_eq!(
        echoed
            .into_iter()
            .map(Proto::into_inner)
            .collect::<Vec<_>>(),
        sent
    );

    // The registry tells streaming endpoints apart.
    let services = world.registry.get_service("sensors").await.unwrap();
    let endpoints = &services[0].endpoints;
    let shape = |name: &str| {
        endpoints
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.metadata.get(streaming::STREAM_KEY).map(str::to_owned))
    };
    assert_eq!(shape("Sensors.Summarize").as_deref(), Some("client"));
    assert_eq!(shape("Sensors.Replay").as_deref(), Some("server"));
    assert_eq!(shape("Files.Echo").as_deref(), Some("bidi"));
    running.stop().await.unwrap();
}

async fn errors_inside_streams_keep_their_kind(kind: Kind) {
    let world = World::new(kind);
    let running = world
        .service("faulty")
        .server(
            micro::Server::new()
                .handle_server_stream("Faulty.Replies", |_ctx, (): ()| async move {
                    let replies = [
                        Ok(1u32),
                        Ok(2),
                        Err(Error::new(ErrorKind::DataLoss, "lost the rest")),
                        Ok(3),
                    ];
                    Ok(futures::stream::iter(replies))
                })
                .handle_client_stream(
                    "Faulty.Count",
                    |_ctx, mut numbers: Streaming<u32>| async move {
                        let mut count = 0u32;
                        while numbers.message().await?.is_some() {
                            count += 1;
                        }
                        Ok(count)
                    },
                ),
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();

    let mut replies = within(
        client
            .request::<_, u32>("faulty", "Faulty.Replies")
            .server_stream(&()),
    )
    .await
    .unwrap();
    assert_eq!(within(replies.message()).await.unwrap(), Some(1));
    assert_eq!(within(replies.message()).await.unwrap(), Some(2));
    let err = within(replies.message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DataLoss, "{err}");
    assert!(
        within(replies.next()).await.is_none(),
        "an error ends the stream"
    );

    let numbers = futures::stream::iter([
        Ok(1u32),
        Err(Error::new(
            ErrorKind::PermissionDenied,
            "the source refused",
        )),
    ]);
    let err = within(
        client
            .request::<_, u32>("faulty", "Faulty.Count")
            .client_stream(numbers),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");

    // A malformed message is the sender's fault: InvalidArgument.
    let strings = futures::stream::iter([Ok("not a number".to_owned())]);
    let err = within(
        client
            .request::<_, u32>("faulty", "Faulty.Count")
            .client_stream(strings),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    running.stop().await.unwrap();
}

async fn dropping_the_replies_cancels_the_handler(kind: Kind) {
    let world = World::new(kind);
    let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
    let running = world
        .service("ticker")
        .server(
            micro::Server::new().handle_server_stream("Ticker.Ticks", move |_ctx, (): ()| {
                let stopped = stopped_tx.clone();
                async move {
                    let (sender, ticks) = streaming::channel(1);
                    tokio::spawn(async move {
                        let mut tick = 0u64;
                        let outcome = loop {
                            if let Err(err) = sender.send(tick).await {
                                break err;
                            }
                            tick += 1;
                        };
                        let _ = stopped.send((tick, outcome.kind()));
                    });
                    Ok(ticks)
                }
            }),
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut ticks = within(
        world
            .client()
            .request::<_, u64>("ticker", "Ticker.Ticks")
            .server_stream(&()),
    )
    .await
    .unwrap();
    for expected in 0..3 {
        assert_eq!(within(ticks.message()).await.unwrap(), Some(expected));
    }
    drop(ticks);
    let (produced, kind_seen) = within(stopped.recv()).await.unwrap();
    assert_eq!(kind_seen, ErrorKind::Cancelled);
    assert!(produced >= 3);
    running.stop().await.unwrap();
}

async fn a_handler_that_stops_reading_cancels_the_caller(kind: Kind) {
    let world = World::new(kind);
    let running = world
        .service("sampler")
        .server(micro::Server::new().handle_client_stream(
            "Sampler.FirstTwo",
            |_ctx, mut numbers: Streaming<u64>| async move {
                let first = numbers.message().await?.unwrap_or_default();
                let second = numbers.message().await?.unwrap_or_default();
                Ok(first + second)
            },
        ))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (sender, numbers) = streaming::channel(1);
    let producer = tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            if let Err(err) = sender.send(next).await {
                return (next, err.kind());
            }
            next += 1;
        }
    });
    let sum: u64 = within(
        world
            .client()
            .request("sampler", "Sampler.FirstTwo")
            .client_stream(numbers),
    )
    .await
    .unwrap();
    assert_eq!(sum, 1);
    let (sent, kind_seen) = within(producer).await.unwrap();
    assert_eq!(kind_seen, ErrorKind::Cancelled);
    assert!(sent >= 2);
    running.stop().await.unwrap();
}

async fn a_caller_that_gives_up_cancels_the_handler(kind: Kind) {
    let world = World::new(kind);
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
    let entered = Arc::new(Notify::new());
    let running = world
        .service("sink")
        .server(micro::Server::new().handle_client_stream("Sink.Drain", {
            let entered = entered.clone();
            move |_ctx, mut numbers: Streaming<u64>| {
                let guard = DropSignal(dropped_tx.clone());
                let entered = entered.clone();
                async move {
                    let _guard = guard;
                    let mut count = 0u64;
                    while numbers.message().await?.is_some() {
                        count += 1;
                        entered.notify_one();
                    }
                    Ok(count)
                }
            }
        }))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let (sender, numbers) = streaming::channel(1);
    let client = world.client();
    let call = tokio::spawn(async move {
        client
            .request::<_, u64>("sink", "Sink.Drain")
            .client_stream(numbers)
            .await
    });
    within(sender.send(1)).await.unwrap();
    within(entered.notified()).await;
    call.abort();
    // The handler ends: its future is dropped, or its stream fails.
    within(dropped.recv()).await.unwrap();
    drop(sender);
    running.stop().await.unwrap();
}

struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

async fn a_slow_reader_holds_the_producer_back(kind: Kind) {
    // 64 KiB messages; whatever the transport buffers (socket buffers over
    // HTTP) stays far below this many messages in flight.
    const IN_FLIGHT_BOUND: u64 = 512;
    let world = World::new(kind);
    let produced = Arc::new(AtomicU64::new(0));
    let running = world
        .service("firehose")
        .server(
            micro::Server::new().handle_server_stream("Firehose.Blobs", {
                let produced = produced.clone();
                move |_ctx, (): ()| {
                    let produced = produced.clone();
                    async move {
                        let blob = "x".repeat(64 * 1024);
                        Ok(futures::stream::repeat_with(move || {
                            produced.fetch_add(1, Ordering::SeqCst);
                            Ok(blob.clone())
                        }))
                    }
                }
            }),
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let mut blobs = within(
        world
            .client()
            .request::<_, String>("firehose", "Firehose.Blobs")
            .server_stream(&()),
    )
    .await
    .unwrap();
    let mut read = 0u64;
    for _ in 0..3 {
        within(blobs.message()).await.unwrap().unwrap();
        read += 1;
    }
    // The reader pauses. Wait until production stops (it must: nothing
    // buffers without bound), then check how far it got.
    let settled = within(settle(&produced)).await;
    assert!(
        settled - read <= IN_FLIGHT_BOUND,
        "{settled} produced while {read} were read"
    );
    // Reading again resumes production: more than was buffered arrives.
    for _ in read..settled + 10 {
        within(blobs.message()).await.unwrap().unwrap();
    }
    drop(blobs);
    running.stop().await.unwrap();
}

/// The counter's value once it has stopped moving for a while.
async fn settle(counter: &AtomicU64) -> u64 {
    let mut last = counter.load(Ordering::SeqCst);
    let mut still = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counter.load(Ordering::SeqCst);
        if now == last {
            still += 1;
            if still == 6 {
                return now;
            }
        } else {
            (last, still) = (now, 0);
        }
    }
}

async fn a_stream_past_its_deadline_is_timeout(kind: Kind) {
    let world = World::new(kind);
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
    let running = world
        .service("slow")
        .server(
            micro::Server::new()
                .handle_server_stream("Slow.Trickle", |_ctx, (): ()| async move {
                    let first = futures::stream::once(async { Ok(1u32) });
                    Ok(first.chain(futures::stream::pending()))
                })
                .handle_client_stream("Slow.Wait", move |_ctx, mut numbers: Streaming<u32>| {
                    let guard = DropSignal(dropped_tx.clone());
                    async move {
                        let _guard = guard;
                        while numbers.message().await?.is_some() {}
                        Ok(0u32)
                    }
                }),
        )
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = world.client();

    let mut trickle = within(
        client
            .request::<_, u32>("slow", "Slow.Trickle")
            .timeout(Duration::from_millis(300))
            .server_stream(&()),
    )
    .await
    .unwrap();
    assert_eq!(within(trickle.message()).await.unwrap(), Some(1));
    let err = within(trickle.message()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");

    // A client stream that never ends: the caller gets Timeout, the handler is cancelled.
    let (sender, numbers) = streaming::channel(1);
    within(sender.send(1)).await.unwrap();
    let err = within(
        client
            .request::<_, u32>("slow", "Slow.Wait")
            .timeout(Duration::from_millis(300))
            .client_stream(numbers),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    within(dropped.recv()).await.unwrap();
    drop(sender);
    running.stop().await.unwrap();
}

async fn the_client_timeout_bounds_opening_not_the_stream(kind: Kind) {
    let world = World::new(kind);
    let release = Arc::new(Notify::new());
    let running = world
        .service("patient")
        .server(micro::Server::new().handle_server_stream("Patient.Two", {
            let release = release.clone();
            move |_ctx, (): ()| {
                let release = release.clone();
                async move {
                    let first = futures::stream::once(async { Ok(1u32) });
                    let second = futures::stream::once(async move {
                        release.notified().await;
                        Ok(2u32)
                    });
                    Ok(first.chain(second))
                }
            }
        }))
        .build()
        .unwrap()
        .start()
        .await
        .unwrap();
    let client = micro::Client::builder()
        .registry(world.registry.clone())
        .transport(world.transport.clone())
        .broker(world.broker.clone())
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut two = within(
        client
            .request::<_, u32>("patient", "Patient.Two")
            .server_stream(&()),
    )
    .await
    .unwrap();
    assert_eq!(within(two.message()).await.unwrap(), Some(1));
    // Outlast the client's timeout: the open stream is not bound by it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.notify_one();
    assert_eq!(within(two.message()).await.unwrap(), Some(2));
    assert_eq!(within(two.message()).await.unwrap(), None);

    // Opening is: an unknown service fails within the timeout, not never.
    let err = within(
        client
            .request::<_, u32>("nobody", "Nobody.Home")
            .server_stream(&()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::NotFound | ErrorKind::Unavailable | ErrorKind::Timeout
        ),
        "{err}"
    );
    running.stop().await.unwrap();
}

on_every_transport!(
    the_three_shapes_carry_serde_messages,
    the_three_shapes_carry_protobuf_messages,
    errors_inside_streams_keep_their_kind,
    dropping_the_replies_cancels_the_handler,
    a_handler_that_stops_reading_cancels_the_caller,
    a_caller_that_gives_up_cancels_the_handler,
    a_slow_reader_holds_the_producer_back,
    a_stream_past_its_deadline_is_timeout,
    the_client_timeout_bounds_opening_not_the_stream,
);
