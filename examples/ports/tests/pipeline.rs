//! The pipeline end to end in one process: generated files of both layouts
//! over HTTP, gRPC and the memory transport, malformed records, a malformed file
//! structure, and the database's contents and the average checked against
//! what the generator wrote. SQLite always; PostgreSQL when `DATABASE_URL`
//! (or `MICRO_TEST_POSTGRES_URL`) names one.

use std::{path::Path, sync::Arc, time::Duration};

use micro::{
    ErrorKind, RunningService, Service, ServiceBuilder,
    registry::memory::MemoryRegistry,
    transport::{DynTransport, grpc::GrpcTransport, http::HttpTransport, memory::MemoryTransport},
};
use micro_ports::{
    generate::{Generated, Layout, generate},
    services::{self, IngestConfig, Target},
    store::Store,
    upload::{Report, upload},
};

const WAIT: Duration = Duration::from_secs(120);

struct Pipeline {
    running: Vec<RunningService>,
    client: micro::Client,
    store: Store,
}

impl Pipeline {
    async fn start(transport: DynTransport, database_url: &str, table: &str) -> Pipeline {
        let registry = MemoryRegistry::new();
        let on = |name: &str| -> ServiceBuilder {
            Service::builder(name)
                .registry(registry.clone())
                .transport(transport.clone())
        };
        let store = Store::connect(database_url, table).await.unwrap();
        let mut running = Vec::new();
        for builder in [
            services::ports(on("ports"), store.clone()),
            services::average(on("average")),
            services::ingest(
                on("ingest"),
                IngestConfig {
                    progress_every: 64 * 1024,
                    ..IngestConfig::default()
                },
            ),
        ] {
            running.push(builder.build().unwrap().start().await.unwrap());
        }
        let client = running[2].client();
        Pipeline {
            running,
            client,
            store,
        }
    }

    async fn upload(&self, path: &Path) -> Report {
        let ingest = Target::Service("ingest".into());
        tokio::time::timeout(WAIT, upload(&self.client, &ingest, path, None))
            .await
            .expect("the upload took too long")
            .unwrap()
    }

    async fn stop(self) {
        for running in self.running.into_iter().rev() {
            running.stop().await.unwrap();
        }
    }
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("ports.db").display()
    )
}

async fn assert_all_landed(pipeline: &Pipeline, report: &Report, generated: &Generated) {
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.errors, 0);
    assert_eq!(report.records, generated.records);
    assert_eq!(report.committed, generated.records);
    assert_eq!(report.bytes, generated.bytes);
    assert!(
        report.notifications > 1,
        "progress streams while the file does"
    );
    assert_eq!(pipeline.store.count().await.unwrap(), generated.records);
    let latitude = report.latitude.clone().unwrap();
    assert_eq!(latitude.count, generated.with_coordinates);
    assert!((latitude.mean - generated.mean_latitude).abs() < 1e-9);
    let stored_mean = pipeline.store.mean_latitude().await.unwrap().unwrap();
    assert!((stored_mean - generated.mean_latitude).abs() < 1e-6);
    let last = format!("P{:09}", generated.records - 1);
    let port = pipeline.store.get(&last).await.unwrap().unwrap();
    assert_eq!(port.unlocs, vec![last.clone()]);
    assert!(port.name.ends_with(&format!(" {}", generated.records - 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_object_file_lands_in_sqlite_exactly_once_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ports.json");
    let generated = generate(&file, 3 << 20, Layout::Object, 7).unwrap();
    let transport: DynTransport = Arc::new(HttpTransport::new());
    let pipeline = Pipeline::start(transport, &sqlite_url(&dir), "ports").await;
    let report = pipeline.upload(&file).await;
    assert_all_landed(&pipeline, &report, &generated).await;
    // Uploading again upserts: still one row per record.
    let again = pipeline.upload(&file).await;
    assert_all_landed(&pipeline, &again, &generated).await;
    pipeline.stop().await;
}

/// Generates an array file of about `bytes` from `seed`, uploads it once
/// over `transport`, and checks every record landed exactly once.
async fn generated_array_lands_once(transport: DynTransport, bytes: u64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ports.json");
    let generated = generate(&file, bytes, Layout::Array, seed).unwrap();
    let pipeline = Pipeline::start(transport, &sqlite_url(&dir), "ports").await;
    let report = pipeline.upload(&file).await;
    assert_all_landed(&pipeline, &report, &generated).await;
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_array_file_lands_exactly_once_over_grpc() {
    generated_array_lands_once(Arc::new(GrpcTransport::new()), 3 << 20, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_array_file_lands_over_the_memory_transport() {
    generated_array_lands_once(Arc::new(MemoryTransport::isolated()), 1 << 20, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_reported_with_their_position_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ports.json");
    let text = concat!(
        "{\n",
        "  \"AAAAA\": {\"name\": \"Good A\", \"coordinates\": [1.0, 10.0], \"unlocs\": [\"AAAAA\"]},\n",
        "  \"BBBBB\": {\"name\": \"Bad B\", \"coordinates\": \"north\"},\n",
        "  \"CCCCC\": {\"city\": \"no name\"},\n",
        "  \"DDDDD\": {\"name\": },\n",
        "  \"EEEEE\": {\"name\": \"Good E\", \"coordinates\": [2.0, 20.0]},\n",
        "  \"FFFFF\": [1, 2]\n",
        "}\n"
    );
    std::fs::write(&file, text).unwrap();
    let transport: DynTransport = Arc::new(HttpTransport::new());
    let pipeline = Pipeline::start(transport, &sqlite_url(&dir), "ports").await;
    let report = pipeline.upload(&file).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.records, 2);
    assert_eq!(report.committed, 2);
    assert_eq!(report.errors, 4);
    let where_: Vec<(u64, u64, &str)> = report
        .record_errors
        .iter()
        .map(|e| (e.index, e.line, e.key.as_str()))
        .collect();
    assert_eq!(
        where_,
        [
            (2, 3, "BBBBB"),
            (3, 4, "CCCCC"),
            (4, 5, "DDDDD"),
            (6, 7, "FFFFF")
        ]
    );
    let second = &report.record_errors[0];
    assert_eq!(
        second.byte,
        text.find("{\"name\": \"Bad B\"").unwrap() as u64
    );
    assert!(report.record_errors.iter().all(|e| !e.message.is_empty()));
    assert_eq!(pipeline.store.count().await.unwrap(), 2);
    assert!(pipeline.store.get("EEEEE").await.unwrap().is_some());
    assert!(pipeline.store.get("BBBBB").await.unwrap().is_none());
    assert_eq!(report.latitude.unwrap().mean, 15.0);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_structure_ends_the_upload_keeping_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ports.json");
    let generated = generate(&file, 1 << 20, Layout::Object, 9).unwrap();
    // Cut the closing brace and go on without a colon after the next key.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.truncate(text.trim_end().len() - 1);
    text.push_str(",\n  \"ZZZZZ\" {\"name\": \"never\"}\n}\n");
    std::fs::write(&file, &text).unwrap();

    for transport in [
        Arc::new(HttpTransport::new()) as DynTransport,
        Arc::new(MemoryTransport::isolated()),
        Arc::new(GrpcTransport::new()),
    ] {
        let db = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::start(transport, &sqlite_url(&db), "ports").await;
        let report = pipeline.upload(&file).await;
        let failure = report.failure.as_ref().expect("the upload must fail");
        assert_eq!(failure.kind(), ErrorKind::InvalidArgument, "{failure}");
        assert!(failure.message().contains("byte"), "{failure}");
        assert_eq!(report.records, generated.records);
        assert_eq!(report.committed, generated.records);
        assert_eq!(pipeline.store.count().await.unwrap(), generated.records);
        assert!(pipeline.store.get("ZZZZZ").await.unwrap().is_none());
        pipeline.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_file_lands_in_postgres_when_one_is_configured() {
    let url = std::env::var("MICRO_TEST_POSTGRES_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|url| url.starts_with("postgres"));
    let Some(url) = url else {
        eprintln!(
            "SKIPPED a_generated_file_lands_in_postgres_when_one_is_configured: \
             set DATABASE_URL (or MICRO_TEST_POSTGRES_URL) to a postgres:// URL to run it"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ports.json");
    let generated = generate(&file, 2 << 20, Layout::Array, 10).unwrap();
    let table = format!("ports_test_{}", rand::random::<u32>());
    let transport: DynTransport = Arc::new(HttpTransport::new());
    let pipeline = Pipeline::start(transport, &url, &table).await;
    // The table is dropped first: a failed assertion would leave it behind.
    let report = pipeline.upload(&file).await;
    let again = pipeline.upload(&file).await;
    let count = pipeline.store.count().await.unwrap();
    let get = pipeline
        .store
        .get(&format!("P{:09}", generated.records - 1))
        .await
        .unwrap();
    let stored_mean = pipeline.store.mean_latitude().await.unwrap();
    pipeline.store.drop_table().await.unwrap();
    for report in [&report, &again] {
        assert!(report.failure.is_none(), "{:?}", report.failure);
        assert_eq!(report.records, generated.records);
        assert_eq!(report.committed, generated.records);
        let latitude = report.latitude.clone().unwrap();
        assert!((latitude.mean - generated.mean_latitude).abs() < 1e-9);
    }
    assert_eq!(count, generated.records);
    assert!(get.is_some());
    assert!((stored_mean.unwrap() - generated.mean_latitude).abs() < 1e-6);
    pipeline.stop().await;
}
