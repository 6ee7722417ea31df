//! The pipeline's work without micro, in one task: read, scan, convert,
//! upsert, average. The benchmark's peer, to show what the services and
//! their streams cost on top of the work itself.

use std::path::Path;

use micro::{Error, Result};
use tokio::io::AsyncReadExt;

use crate::{
    proto::{Port, RecordError},
    record::to_port,
    scan::{RawRecord, Scanner},
    services::{BATCH, RunningMean},
    store::Store,
    upload::{CHUNK_SIZE, KEPT_ERRORS, Report},
};

/// Ingests the file at `path` into `store` directly.
pub async fn ingest_file(path: &Path, store: &Store) -> Result<Report> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|err| Error::from(err).context(format!("opening {}", path.display())))?;
    let mut scanner = Scanner::new();
    let mut report = Report::default();
    let mut mean = RunningMean::default();
    let mut raw: Vec<RawRecord> = Vec::new();
    let mut batch: Vec<Port> = Vec::with_capacity(BATCH);
    let mut buffer = vec![0u8; CHUNK_SIZE];
    let mut outcome = Ok(());
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|err| Error::from(err).context("reading the file"))?;
        let scanned = if read == 0 {
            scanner.finish(|record| raw.push(record))
        } else {
            scanner.feed(&buffer[..read], |record| raw.push(record))
        };
        for record in raw.drain(..) {
            match to_port(&record) {
                Ok(port) => {
                    if let Some(latitude) = port.latitude() {
                        mean.add(latitude);
                    }
                    report.records += 1;
                    batch.push(port);
                    if batch.len() == BATCH {
                        report.committed += store.upsert(&batch).await?;
                        batch.clear();
                    }
                }
                Err(message) => {
                    report.errors += 1;
                    if report.record_errors.len() < KEPT_ERRORS {
                        report.record_errors.push(RecordError {
                            index: record.position.index,
                            byte: record.position.byte,
                            line: record.position.line,
                            key: record.key.unwrap_or_default(),
                            message,
                        });
                    }
                }
            }
        }
        if let Err(err) = scanned {
            outcome = Err(Error::invalid_argument(err.to_string()));
            break;
        }
        if read == 0 {
            break;
        }
    }
    if !batch.is_empty() {
        report.committed += store.upsert(&batch).await?;
    }
    report.bytes = scanner.bytes();
    report.latitude = Some(mean.to_message());
    report.failure = outcome.err();
    Ok(report)
}
