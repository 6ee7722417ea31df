//! The file-streaming pipeline's benchmark: throughput (MB/s) and peak RSS
//! of the client and each service while a large file (1 GiB by default)
//! streams through them, each in its own process, against the same work
//! done directly in one process without micro (the peer).
//!
//! ```sh
//! cargo build --release -p micro-ports -p micro-bench
//! target/release/micro-bench 0 pipeline                  # 1 GiB, SQLite
//! target/release/micro-bench 0 pipeline 256MiB --database postgres://postgres@127.0.0.1:5432/test
//! target/release/micro-bench 0 pipeline 1GiB --transport grpc   # the services over gRPC
//! ```
//!
//! It drives the `ports` binary of the `micro-ports` example (next to this
//! one in the target directory): `generate` writes the file, `serve`
//! starts the `ports`, `average` and `ingest` services on loopback over
//! HTTP (or the transport `--transport` names), `upload` streams the file, `direct` is the peer. Peak RSS is
//! each process's `VmHWM` from `/proc/PID/status`: read by this program
//! for the services just before stopping them, and reported by the client
//! and the peer themselves as they finish. The database table is dropped
//! before each run, and its row count checked against the records written.
//! The run fails (non-zero exit) when a record is missing or duplicated, or
//! when a peak RSS is over its bound (client 64 MiB, each service 128 MiB).

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

use micro::{Error, Result};

/// What one run of the pipeline (or the peer) printed and measured.
#[derive(Debug, Default)]
struct Run {
    seconds: f64,
    records: u64,
    committed: u64,
    errors: u64,
    client_rss_kib: u64,
    services_rss_kib: Vec<(&'static str, u64)>,
    rows: u64,
}

/// `micro-bench SECONDS pipeline [SIZE] [--database URL]`: `args` are
/// those after `pipeline` (the seconds are not used: the file's size sets
/// the run's length).
pub(crate) fn run(args: &[String]) -> Result<()> {
    let size = args
        .iter()
        .find(|arg| !arg.starts_with("--") && !is_value_of_option(args, arg))
        .cloned()
        .unwrap_or_else(|| "1GiB".to_owned());
    let work = std::env::temp_dir().join(format!("micro-pipeline-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|err| Error::from(err).context("making a work dir"))?;
    let database = option(args, "--database")
        .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", work.join("ports.db").display()));
    let transport = option(args, "--transport").unwrap_or_else(|| "http".to_owned());
    if !matches!(transport.as_str(), "http" | "grpc") {
        return Err(Error::invalid_argument(format!(
            "--transport {transport}: the pipeline runs over http or grpc"
        )));
    }
    let ports = ports_binary()?;
    let file = work.join("ports.json");
    let outcome = bench(&ports, &file, &size, &database, &transport);
    let _ = std::fs::remove_dir_all(&work);
    outcome
}

fn bench(ports: &Path, file: &Path, size: &str, database: &str, transport: &str) -> Result<()> {
    let generated =
        command_output(Command::new(ports).args(["generate", &file.to_string_lossy(), size]))?;
    let records = number_after(&generated, "wrote ")?;
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let scheme = database.split(':').next().unwrap_or("?");
    println!(
        "pipeline: {bytes}-byte file ({:.0} MiB), {records} records; database {scheme}",
        bytes as f64 / (1 << 20) as f64
    );
    println!("{}", generated.trim());

    let pipeline = run_pipeline(ports, file, database, transport)?;
    let direct = run_direct(ports, file, database)?;
    println!();
    print_run(
        &format!("micro: client + ingest + ports + average, 4 processes, {transport} on loopback"),
        bytes,
        &pipeline,
    );
    print_run(
        "direct: one process, no micro (scan, convert, upsert, average)",
        bytes,
        &direct,
    );
    let throughput = |run: &Run| bytes as f64 / 1e6 / run.seconds;
    println!(
        "ratio  throughput micro/direct = {:.3}",
        throughput(&pipeline) / throughput(&direct)
    );
    let mut failed = Vec::new();
    for (run, what) in [(&pipeline, "micro"), (&direct, "direct")] {
        let exact = run.records == records && run.committed == records && run.rows == records;
        println!(
            "check  {what}: {} records parsed, {} committed, {} rows in the table, {} expected: {}",
            run.records,
            run.committed,
            run.rows,
            records,
            if exact {
                "every record exactly once"
            } else {
                "MISMATCH"
            }
        );
        if !exact {
            failed.push(format!("{what}: not every record landed exactly once"));
        }
    }
    let limits = std::iter::once(("client", pipeline.client_rss_kib, CLIENT_RSS_LIMIT_KIB)).chain(
        pipeline
            .services_rss_kib
            .iter()
            .map(|&(name, kib)| (name, kib, SERVICE_RSS_LIMIT_KIB)),
    );
    for (name, kib, limit) in limits {
        let within = kib > 0 && kib <= limit;
        println!(
            "check  peak RSS of {name}: {:.1} MiB, limit {} MiB: {}",
            kib as f64 / 1024.0,
            limit / 1024,
            if within { "within" } else { "OVER (or unread)" }
        );
        if !within {
            failed.push(format!(
                "{name}'s peak RSS {kib} KiB is over {limit} KiB or unread"
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "the pipeline benchmark's checks failed: {}",
            failed.join("; ")
        )))
    }
}

/// The issue's bounds for streaming a file of any size: the client stays
/// under 64 MiB of resident memory, every service under 128 MiB.
const CLIENT_RSS_LIMIT_KIB: u64 = 64 * 1024;
const SERVICE_RSS_LIMIT_KIB: u64 = 128 * 1024;

fn print_run(title: &str, bytes: u64, run: &Run) {
    println!("{title}");
    println!(
        "  {:.1} s, {:.1} MB/s, {} records, {} errors; peak RSS: client {:.1} MiB{}",
        run.seconds,
        bytes as f64 / 1e6 / run.seconds,
        run.records,
        run.errors,
        run.client_rss_kib as f64 / 1024.0,
        run.services_rss_kib
            .iter()
            .map(|(name, kib)| format!(", {name} {:.1} MiB", *kib as f64 / 1024.0))
            .collect::<String>()
    );
}

fn run_pipeline(ports: &Path, file: &Path, database: &str, transport: &str) -> Result<Run> {
    reset(ports, database)?;
    let mut services = Vec::new();
    let ports_service = Service::start(ports, "ports", database, transport, &[])?;
    let average = Service::start(ports, "average", database, transport, &[])?;
    let ingest = Service::start(
        ports,
        "ingest",
        database,
        transport,
        &[
            ("PORTS_ADDRESS", ports_service.address.clone()),
            ("AVERAGE_ADDRESS", average.address.clone()),
        ],
    )?;
    let started = Instant::now();
    let uploaded = command_output(
        Command::new(ports)
            .args([
                "upload",
                &file.to_string_lossy(),
                "--ingest",
                &ingest.address,
                "--quiet",
            ])
            .env("MICRO_TRANSPORT", transport),
    );
    let seconds = started.elapsed().as_secs_f64();
    services.push(("ingest", ingest.peak_rss_and_stop()));
    services.push(("ports", ports_service.peak_rss_and_stop()));
    services.push(("average", average.peak_rss_and_stop()));
    let uploaded = uploaded?;
    Ok(Run {
        seconds,
        records: number_after(&uploaded, "records ")?,
        committed: number_after(&uploaded, "committed ")?,
        errors: number_after(&uploaded, "errors ")?,
        client_rss_kib: number_after(&uploaded, "peak_rss_kib ")?,
        services_rss_kib: services,
        rows: count(ports, database)?,
    })
}

fn run_direct(ports: &Path, file: &Path, database: &str) -> Result<Run> {
    reset(ports, database)?;
    let started = Instant::now();
    let output = command_output(
        Command::new(ports)
            .args(["direct", &file.to_string_lossy()])
            .env("DATABASE_URL", database),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Run {
        seconds,
        records: number_after(&output, "records ")?,
        committed: number_after(&output, "committed ")?,
        errors: number_after(&output, "errors ")?,
        client_rss_kib: number_after(&output, "peak_rss_kib ")?,
        services_rss_kib: Vec::new(),
        rows: count(ports, database)?,
    })
}

/// One service process, started and listening.
struct Service {
    child: Child,
    address: String,
}

impl Service {
    fn start(
        ports: &Path,
        name: &str,
        database: &str,
        transport: &str,
        env: &[(&str, String)],
    ) -> Result<Service> {
        let mut command = Command::new(ports);
        command
            .args(["serve", name])
            .env("DATABASE_URL", database)
            .env("MICRO_TRANSPORT", transport)
            .env("MICRO_TRANSPORT_ADDRESS", "127.0.0.1:0")
            .stdout(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .map_err(|err| Error::from(err).context(format!("starting the {name} service")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::internal("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|err| {
            Error::from(err).context(format!("reading the {name} service's address"))
        })?;
        let Some(address) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            return Err(Error::unavailable(format!(
                "the {name} service did not start: {line:?}"
            )));
        };
        Ok(Service {
            address: address.to_owned(),
            child,
        })
    }

    /// The process's peak RSS in KiB, read while it still runs, then stops it.
    fn peak_rss_and_stop(mut self) -> u64 {
        let rss = peak_rss_of(self.child.id()).unwrap_or(0);
        let _ = self.child.kill();
        let _ = self.child.wait();
        rss
    }
}

fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

fn reset(ports: &Path, database: &str) -> Result<()> {
    command_output(
        Command::new(ports)
            .arg("reset")
            .env("DATABASE_URL", database),
    )
    .map(drop)
}

fn count(ports: &Path, database: &str) -> Result<u64> {
    let output = command_output(
        Command::new(ports)
            .arg("count")
            .env("DATABASE_URL", database),
    )?;
    number_after(&output, "count ")
}

/// Runs `command` to the end; its stdout, or an error with its stderr.
fn command_output(command: &mut Command) -> Result<String> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| Error::from(err).context("running the ports binary"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(Error::internal(format!(
            "{command:?} failed ({}): {stdout}",
            output.status
        )));
    }
    Ok(stdout)
}

/// The number following `label` in `text`.
fn number_after(text: &str, label: &str) -> Result<u64> {
    text.split(label)
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| Error::internal(format!("no number after {label:?} in {text:?}")))
}

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1))
        .cloned()
}

fn is_value_of_option(args: &[String], arg: &String) -> bool {
    args.windows(2)
        .any(|pair| pair[0].starts_with("--") && std::ptr::eq(&pair[1], arg))
}

/// The `ports` binary built beside this one.
fn ports_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().map_err(|err| Error::from(err).context("finding myself"))?;
    let ports = me.with_file_name("ports");
    if ports.exists() {
        return Ok(ports);
    }
    Err(Error::not_found(format!(
        "{} is missing: build it with `cargo build --release -p micro-ports -p micro-bench`",
        ports.display()
    )))
}
