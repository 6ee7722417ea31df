//! The file-streaming pipeline, after the ports-ingestion design: a client
//! streams a JSON file of port records of any size to an `ingest` service,
//! which parses it incrementally and streams each record, as protobuf, on to
//! a `ports` service that upserts it into a database and to an `average`
//! service that keeps a running mean of latitudes. Progress (bytes, records,
//! errors) streams back to the client as it happens.
//!
//! ```text
//!  client ──Chunk stream──▶ ingest ──Port stream──▶ ports ──▶ SQLite / PostgreSQL
//!    ▲                        │    └─Port stream──▶ average
//!    └──── Progress stream ───┘
//! ```
//!
//! Memory stays bounded whatever the file's size: the client reads 64 KiB
//! chunks only as fast as ingest takes them; ingest's scanner holds one
//! record at a time ([`scan`]); the record streams are bounded channels; the
//! ports service commits every [`BATCH`](services::BATCH) records. A slow
//! database therefore slows the whole pipeline down to its pace, back to
//! the file reads.
//!
//! A malformed record (bad JSON inside it, a wrong type, no id) is reported
//! with its number, byte offset, line and key, and skipped. A malformed file
//! structure ends the upload with an `InvalidArgument` error saying where;
//! every record before it is still committed.
//!
//! The database is SQLite by default ([`store::DEFAULT_DATABASE_URL`]), or
//! whatever `DATABASE_URL` names (`postgres://...`). Run it with the `ports`
//! binary:
//!
//! ```text
//! cargo run -p micro-ports --release -- generate ports.json 100MB
//! cargo run -p micro-ports --release -- all ports.json       # every service and the client in one process
//! ```
//!
//! or each service in its own process (see `ports --help`).

pub mod direct;
pub mod generate;
pub mod proto;
pub mod record;
pub mod scan;
pub mod services;
pub mod store;
pub mod upload;

/// This process's peak resident set size in KiB (`VmHWM` from
/// `/proc/self/status`), where the platform has it.
pub fn peak_rss_kib() -> Option<u64> {
    peak_rss_of("self")
}

/// The peak resident set size in KiB of process `pid` (`"self"` for this one).
pub fn peak_rss_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}
