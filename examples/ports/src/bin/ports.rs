//! The pipeline's command line: generate test files, run each service, upload.
//!
//! ```text
//! ports generate FILE SIZE [--array] [--seed N]   SIZE like 1048576, 100MB, 1GiB
//! ports serve ports|average|ingest                 prints "listening ADDRESS", serves until SIGTERM
//! ports upload FILE [--ingest ADDRESS] [--quiet]   streams FILE to ingest with a progress bar
//! ports all FILE                                   every service and the upload in one process
//! ports direct FILE                                the same parse and upserts without micro (the bench's peer)
//! ports count | ports reset                        rows in the ports table | drop it
//! ```
//!
//! Services pick their transport and listen address from `MICRO_TRANSPORT`
//! and `MICRO_TRANSPORT_ADDRESS` (default: HTTP on a free loopback port).
//! Services in separate processes share no registry, so ingest is told
//! where the others listen with `PORTS_ADDRESS` and `AVERAGE_ADDRESS`; the
//! ports service stores into `DATABASE_URL` (default SQLite `ports.db`).

use std::{path::PathBuf, process::ExitCode};

use micro::{
    Error, Result, Service, registry::memory::MemoryRegistry, transport::memory::MemoryTransport,
};
use micro_ports::{
    generate::{Layout, generate},
    peak_rss_kib,
    services::{self, IngestConfig, Target},
    store::Store,
    upload::{Report, progress_bar, upload},
};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[String]) -> Result<ExitCode> {
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    let option = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1))
            .cloned()
    };
    match args.first().map(String::as_str) {
        Some("generate") => {
            let (Some(path), Some(size)) = (args.get(1), args.get(2)) else {
                return Err(usage());
            };
            let layout = if flag("--array") {
                Layout::Array
            } else {
                Layout::Object
            };
            let seed = option("--seed")
                .and_then(|seed| seed.parse().ok())
                .unwrap_or(1);
            let generated = generate(&PathBuf::from(path), parse_size(size)?, layout, seed)
                .map_err(|err| Error::from(err).context(format!("writing {path}")))?;
            println!(
                "wrote {} records, {} bytes; mean latitude {} over {} records",
                generated.records,
                generated.bytes,
                generated.mean_latitude,
                generated.with_coordinates
            );
            Ok(ExitCode::SUCCESS)
        }
        Some("serve") => serve(args.get(1).map(String::as_str)).await,
        Some("upload") => {
            let path = PathBuf::from(args.get(1).ok_or_else(usage)?);
            let target = match option("--ingest") {
                Some(address) => Target::Address(address),
                None => Target::Service("ingest".into()),
            };
            let client = micro::Client::from_env()?;
            let total = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let bar = (!flag("--quiet")).then(|| progress_bar(total));
            let report = upload(&client, &target, &path, bar.as_ref()).await?;
            if let Some(bar) = bar {
                bar.finish();
            }
            Ok(summarize(&report))
        }
        Some("count") => {
            println!("count {}", Store::from_env().await?.count().await?);
            Ok(ExitCode::SUCCESS)
        }
        Some("reset") => {
            Store::from_env().await?.drop_table().await?;
            Ok(ExitCode::SUCCESS)
        }
        Some("direct") => {
            let path = PathBuf::from(args.get(1).ok_or_else(usage)?);
            let report = micro_ports::direct::ingest_file(&path, &Store::from_env().await?).await?;
            Ok(summarize(&report))
        }
        Some("all") => {
            let path = PathBuf::from(args.get(1).ok_or_else(usage)?);
            all_in_one(&path).await
        }
        _ => Err(usage()),
    }
}

fn usage() -> Error {
    Error::invalid_argument(
        "usage: ports generate FILE SIZE [--array] [--seed N] | ports serve ports|average|ingest \
         | ports upload FILE [--ingest ADDRESS] [--quiet] | ports all FILE | ports direct FILE \
         | ports count | ports reset",
    )
}

/// `1048576`, `100MB`, `1GiB`, `512KiB` ...
fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| Error::invalid_argument(format!("bad size {text:?}")))?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(Error::invalid_argument(format!(
                "bad size unit in {text:?}"
            )));
        }
    };
    Ok(number * factor)
}

fn summarize(report: &Report) -> ExitCode {
    let latitude = report.latitude.clone().unwrap_or_default();
    println!(
        "bytes {} records {} committed {} errors {} mean_latitude {} over {} notifications {}",
        report.bytes,
        report.records,
        report.committed,
        report.errors,
        latitude.mean,
        latitude.count,
        report.notifications
    );
    if let Some(rss) = peak_rss_kib() {
        println!("peak_rss_kib {rss}");
    }
    match &report.failure {
        Some(err) => {
            eprintln!(
                "upload failed after {} committed records: {err}",
                report.committed
            );
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

async fn serve(which: Option<&str>) -> Result<ExitCode> {
    let builder = match which {
        Some("ports") => services::ports(Service::builder("ports"), Store::from_env().await?),
        Some("average") => services::average(Service::builder("average")),
        Some("ingest") => {
            let target = |variable: &str, name: &str| match std::env::var(variable) {
                Ok(address) => Target::Address(address),
                Err(_) => Target::Service(name.to_owned()),
            };
            let config = IngestConfig {
                ports: target("PORTS_ADDRESS", "ports"),
                average: target("AVERAGE_ADDRESS", "average"),
                ..IngestConfig::default()
            };
            services::ingest(Service::builder("ingest"), config)
        }
        _ => return Err(usage()),
    };
    let running = builder.build_from_env()?.start().await?;
    println!("listening {}", running.address());
    wait_for_signal().await;
    running.stop().await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn all_in_one(path: &std::path::Path) -> Result<ExitCode> {
    let registry = MemoryRegistry::new();
    let transport = MemoryTransport::isolated();
    let on = |name: &str| {
        Service::builder(name)
            .registry(registry.clone())
            .transport(transport.clone())
    };
    let store = Store::from_env().await?;
    let ports = services::ports(on("ports"), store).build()?.start().await?;
    let average = services::average(on("average")).build()?.start().await?;
    let ingest = services::ingest(on("ingest"), IngestConfig::default())
        .build()?
        .start()
        .await?;
    let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(total);
    let report = upload(
        &ingest.client(),
        &Target::Service("ingest".into()),
        path,
        Some(&bar),
    )
    .await?;
    bar.finish();
    let code = summarize(&report);
    ingest.stop().await?;
    average.stop().await?;
    ports.stop().await?;
    Ok(code)
}
