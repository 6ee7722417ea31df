//! The uploading client: streams a file to ingest without loading it, and
//! follows its progress.

use std::path::Path;

use bytes::BytesMut;
use futures::{Stream, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use micro::{Client, Error, Result, codec::Proto};
use tokio::io::AsyncReadExt;

use crate::{
    proto::{Chunk, Mean, RecordError},
    services::{Target, UPLOAD},
};

/// How much of the file one chunk carries.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// At most this many record errors are kept in a [`Report`] (all are counted).
pub const KEPT_ERRORS: usize = 100;

/// What an upload achieved.
#[derive(Debug, Default)]
pub struct Report {
    /// Bytes parsed.
    pub bytes: u64,
    /// Records parsed and sent on.
    pub records: u64,
    /// Records committed to the database.
    pub committed: u64,
    /// Malformed records skipped.
    pub errors: u64,
    /// The first [`KEPT_ERRORS`] of them.
    pub record_errors: Vec<RecordError>,
    /// The mean latitude of the records.
    pub latitude: Option<Mean>,
    /// How many progress notifications arrived.
    pub notifications: u64,
    /// Why the upload failed, if it did (after `committed` records were kept).
    pub failure: Option<Error>,
}

/// Streams the file at `path` to the ingest service and follows its
/// progress, on `bar` when given. Fails only when the upload could not
/// start or the progress stream broke; a malformed file ends in a report
/// whose `failure` says why.
pub async fn upload(
    client: &Client,
    ingest: &Target,
    path: &Path,
    bar: Option<&ProgressBar>,
) -> Result<Report> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|err| Error::from(err).context(format!("opening {}", path.display())))?;
    let mut progress = ingest
        .call(client, UPLOAD)
        .bidi_stream(chunks(file).map_ok(Proto))
        .await?;
    let mut report = Report::default();
    loop {
        match progress.message().await {
            Ok(Some(Proto(update))) => {
                report.notifications += 1;
                report.bytes = update.bytes;
                report.records = update.records;
                report.errors = update.errors;
                if let Some(error) = update.error {
                    if let Some(bar) = bar {
                        bar.println(format!(
                            "skipped record {} (key {:?}) at byte {}, line {}: {}",
                            error.index, error.key, error.byte, error.line, error.message
                        ));
                    }
                    if report.record_errors.len() < KEPT_ERRORS {
                        report.record_errors.push(error);
                    }
                }
                if update.done {
                    report.committed = update.committed;
                    report.latitude = update.latitude;
                }
                if let Some(bar) = bar {
                    bar.set_position(report.bytes);
                    bar.set_message(format!(
                        "{} records, {} errors",
                        report.records, report.errors
                    ));
                }
            }
            Ok(None) => break,
            Err(err) => {
                report.failure = Some(err);
                break;
            }
        }
    }
    Ok(report)
}

/// A progress bar over `total` bytes.
pub fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The file as a stream of chunks, read only as fast as they are sent.
fn chunks(file: tokio::fs::File) -> impl Stream<Item = Result<Chunk>> + Send + 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        let mut buffer = BytesMut::with_capacity(CHUNK_SIZE);
        while buffer.len() < CHUNK_SIZE {
            let read = file
                .read_buf(&mut buffer)
                .await
                .map_err(|err| Error::from(err).context("reading the file"))?;
            if read == 0 {
                break;
            }
        }
        if buffer.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            Chunk {
                data: buffer.freeze(),
            },
            file,
        )))
    })
}
