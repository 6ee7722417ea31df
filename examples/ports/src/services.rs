//! The three services: `ingest` (parses uploads), `ports` (stores records)
//! and `average` (keeps a running mean of latitudes).

use std::sync::{Arc, Mutex, PoisonError};

use micro::{
    Context, Endpoint, Error, ErrorKind, Result, Server, ServiceBuilder,
    codec::Proto,
    streaming::{self, Sender, Streaming},
};

use crate::{
    proto::{Chunk, Mean, Port, Progress, RecordError, UpsertSummary},
    record::to_port,
    scan::Scanner,
    store::Store,
};

/// The ingest endpoint: a bidirectional stream of [`Chunk`]s in and
/// [`Progress`] out.
pub const UPLOAD: Endpoint<Proto<Chunk>, Proto<Progress>> = Endpoint::new("Ingest.Upload");
/// The ports endpoint: a client stream of [`Port`]s, answered with an [`UpsertSummary`].
pub const UPSERT: Endpoint<Proto<Port>, Proto<UpsertSummary>> = Endpoint::new("Ports.Upsert");
/// The average endpoint: a client stream of [`Port`]s, answered with the
/// [`Mean`] latitude of those with coordinates.
pub const AVERAGE: Endpoint<Proto<Port>, Proto<Mean>> = Endpoint::new("Average.Latitude");
/// The average service's mean over every stream it has seen.
pub const AVERAGE_TOTAL: Endpoint<Proto<Mean>, Proto<Mean>> = Endpoint::new("Average.Total");

/// How many records the ports service commits per transaction.
pub const BATCH: usize = 1000;

/// How a service reaches another: by name through the registry, or at a
/// fixed address (services in separate processes without a shared registry).
#[derive(Debug, Clone)]
pub enum Target {
    /// A service name, looked up in the registry.
    Service(String),
    /// A transport address.
    Address(String),
}

impl Target {
    /// A call of `endpoint` on this target.
    pub fn call<Req, Resp>(
        &self,
        client: &micro::Client,
        endpoint: Endpoint<Req, Resp>,
    ) -> micro::client::CallBuilder<Req, Resp> {
        match self {
            Target::Service(name) => client.request(name.clone(), endpoint),
            Target::Address(address) => client.request("", endpoint).address(address.clone()),
        }
    }
}

/// Adds the ports endpoint, storing into `store`, to `service`.
pub fn ports(service: ServiceBuilder, store: Store) -> ServiceBuilder {
    service.server(
        Server::new().handle_client_stream(UPSERT, move |_ctx, ports| {
            let store = store.clone();
            upsert_all(store, ports)
        }),
    )
}

/// Commits the stream in batches. When the stream fails part-way, what
/// arrived before the failure is still committed, then the error returned.
async fn upsert_all(
    store: Store,
    mut ports: Streaming<Proto<Port>>,
) -> Result<Proto<UpsertSummary>> {
    let mut summary = UpsertSummary::default();
    let mut batch = Vec::with_capacity(BATCH);
    let failure = loop {
        match ports.message().await {
            Ok(Some(Proto(port))) => {
                batch.push(port);
                if batch.len() == BATCH {
                    summary.upserted += store.upsert(&batch).await?;
                    summary.batches += 1;
                    batch.clear();
                }
            }
            Ok(None) => break None,
            Err(err) => break Some(err),
        }
    };
    if !batch.is_empty() {
        summary.upserted += store.upsert(&batch).await?;
        summary.batches += 1;
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(Proto(summary)),
    }
}

/// A running mean, updated one value at a time (no values are kept).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunningMean {
    count: u64,
    mean: f64,
}

impl RunningMean {
    /// Adds one value.
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        self.mean += (value - self.mean) / self.count as f64;
    }

    /// The mean so far, as a message.
    pub fn to_message(self) -> Mean {
        Mean {
            count: self.count,
            mean: self.mean,
        }
    }
}

/// Adds the average endpoints to `service`.
pub fn average(service: ServiceBuilder) -> ServiceBuilder {
    let total = Arc::new(Mutex::new(RunningMean::default()));
    let all = total.clone();
    let server = Server::new()
        .handle_client_stream(AVERAGE, move |_ctx, mut ports: Streaming<Proto<Port>>| {
            let total = total.clone();
            async move {
                let mut mean = RunningMean::default();
                while let Some(Proto(port)) = ports.message().await? {
                    if let Some(latitude) = port.latitude() {
                        mean.add(latitude);
                        total
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .add(latitude);
                    }
                }
                Ok(Proto(mean.to_message()))
            }
        })
        .handle(AVERAGE_TOTAL, move |_ctx, _| {
            let all = all.clone();
            async move {
                Ok(Proto(
                    all.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .to_message(),
                ))
            }
        });
    service.server(server)
}

/// Where ingest sends records.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The ports service.
    pub ports: Target,
    /// The average service.
    pub average: Target,
    /// Send a progress notification at least every this many bytes.
    pub progress_every: u64,
}

impl Default for IngestConfig {
    fn default() -> IngestConfig {
        IngestConfig {
            ports: Target::Service("ports".into()),
            average: Target::Service("average".into()),
            progress_every: 1024 * 1024,
        }
    }
}

/// Adds the ingest endpoint to `service`.
pub fn ingest(service: ServiceBuilder, config: IngestConfig) -> ServiceBuilder {
    let config = Arc::new(config);
    service.server(
        Server::new().handle_bidi_stream(UPLOAD, move |ctx: Context, chunks| {
            let config = config.clone();
            async move {
                let (progress, replies) = streaming::channel(16);
                tokio::spawn(run_ingest(ctx, config, chunks, progress));
                Ok(replies)
            }
        }),
    )
}

async fn run_ingest(
    ctx: Context,
    config: Arc<IngestConfig>,
    chunks: Streaming<Proto<Chunk>>,
    progress: Sender<Proto<Progress>>,
) {
    let client = ctx.client();
    let (to_ports, ports_in) = streaming::channel::<Proto<Port>>(256);
    let (to_average, average_in) = streaming::channel::<Proto<Port>>(256);
    let stored = tokio::spawn(config.ports.call(&client, UPSERT).client_stream(ports_in));
    let averaged = tokio::spawn(
        config
            .average
            .call(&client, AVERAGE)
            .client_stream(average_in),
    );
    let mut state = Parse {
        progress: &progress,
        to_ports,
        to_average,
        counts: Progress::default(),
        every: config.progress_every,
        next_report: config.progress_every,
    };
    let parsed = state.run(chunks).await;
    let mut last = std::mem::take(&mut state.counts);
    // Ending the record streams cleanly commits everything sent so far,
    // whatever happened to the upload.
    drop(state);
    let stored = joined(stored.await);
    let averaged = joined(averaged.await);
    last.done = true;
    if let Ok(summary) = &stored {
        last.committed = summary.upserted;
    }
    last.latitude = averaged.as_ref().ok().map(|mean| mean.0.clone());
    // A downstream failure explains a parse stopped by it, so it comes first.
    let outcome = stored.map(drop).and(averaged.map(drop)).and(parsed);
    if progress.send(Proto(last)).await.is_err() {
        return;
    }
    if let Err(err) = outcome {
        let _ = progress.abort(err).await;
    }
}

fn joined<T>(outcome: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    outcome.unwrap_or_else(|err| Err(Error::internal(format!("a downstream call failed: {err}"))))
}

struct Parse<'a> {
    progress: &'a Sender<Proto<Progress>>,
    to_ports: Sender<Proto<Port>>,
    to_average: Sender<Proto<Port>>,
    counts: Progress,
    every: u64,
    next_report: u64,
}

impl Parse<'_> {
    /// Parses the upload, sending each record on as soon as it is complete.
    async fn run(&mut self, mut chunks: Streaming<Proto<Chunk>>) -> Result<()> {
        let mut scanner = Scanner::new();
        let mut records = Vec::new();
        while let Some(Proto(chunk)) = chunks.message().await? {
            let scanned = scanner.feed(&chunk.data, |record| records.push(record));
            self.counts.bytes = scanner.bytes();
            self.forward(&mut records).await?;
            scanned.map_err(|err| Error::invalid_argument(err.to_string()))?;
            if self.counts.bytes >= self.next_report {
                self.next_report = self.counts.bytes + self.every;
                self.report(None).await?;
            }
        }
        let finished = scanner.finish(|record| records.push(record));
        self.forward(&mut records).await?;
        finished.map_err(|err| Error::invalid_argument(err.to_string()))
    }

    async fn forward(&mut self, records: &mut Vec<crate::scan::RawRecord>) -> Result<()> {
        for record in records.drain(..) {
            match to_port(&record) {
                Ok(port) => {
                    let slim = Port {
                        id: port.id.clone(),
                        coordinates: port.coordinates.clone(),
                        ..Port::default()
                    };
                    self.to_ports
                        .send(Proto(port))
                        .await
                        .map_err(downstream_gone)?;
                    self.to_average
                        .send(Proto(slim))
                        .await
                        .map_err(downstream_gone)?;
                    self.counts.records += 1;
                }
                Err(message) => {
                    self.counts.errors += 1;
                    let error = RecordError {
                        index: record.position.index,
                        byte: record.position.byte,
                        line: record.position.line,
                        key: record.key.unwrap_or_default(),
                        message,
                    };
                    self.report(Some(error)).await?;
                }
            }
        }
        Ok(())
    }

    async fn report(&self, error: Option<RecordError>) -> Result<()> {
        let mut progress = self.counts.clone();
        progress.error = error;
        self.progress.send(Proto(progress)).await
    }
}

/// A record stream refused: the downstream call ended early; its own
/// error, reported once it is joined, says why.
fn downstream_gone(err: Error) -> Error {
    if err.kind() == ErrorKind::Cancelled {
        Error::unavailable("a downstream service stopped taking records")
    } else {
        err
    }
}
