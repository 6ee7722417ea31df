//! The pipeline's protobuf messages, declared with prost's derive (no
//! codegen step): what the services send each other.

use bytes::Bytes;

/// A piece of the uploaded file, as the client read it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// The bytes, in file order.
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
}

/// One port record, as ingest sends it to the ports and average services.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Port {
    /// The record's id: its key in a top-level object, else its first unloc.
    #[prost(string, tag = "1")]
    pub id: String,
    /// The port's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The city.
    #[prost(string, tag = "3")]
    pub city: String,
    /// The country.
    #[prost(string, tag = "4")]
    pub country: String,
    /// Other names.
    #[prost(string, repeated, tag = "5")]
    pub alias: Vec<String>,
    /// Regions.
    #[prost(string, repeated, tag = "6")]
    pub regions: Vec<String>,
    /// `[longitude, latitude]`, or empty when the record has none.
    #[prost(double, repeated, tag = "7")]
    pub coordinates: Vec<f64>,
    /// The province.
    #[prost(string, tag = "8")]
    pub province: String,
    /// The time zone.
    #[prost(string, tag = "9")]
    pub timezone: String,
    /// UN/LOCODEs.
    #[prost(string, repeated, tag = "10")]
    pub unlocs: Vec<String>,
    /// The port code.
    #[prost(string, tag = "11")]
    pub code: String,
}

impl Port {
    /// The latitude, when the record has coordinates.
    pub fn latitude(&self) -> Option<f64> {
        match self.coordinates.as_slice() {
            [_longitude, latitude] => Some(*latitude),
            _ => None,
        }
    }
}

/// What the ports service committed for one upsert stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpsertSummary {
    /// Records upserted (committed).
    #[prost(uint64, tag = "1")]
    pub upserted: u64,
    /// Transactions committed.
    #[prost(uint64, tag = "2")]
    pub batches: u64,
}

/// A running mean.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mean {
    /// Values seen.
    #[prost(uint64, tag = "1")]
    pub count: u64,
    /// Their mean (0 when there are none).
    #[prost(double, tag = "2")]
    pub mean: f64,
}

/// A record that could not be ingested, and where it was.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecordError {
    /// The record's number in the file, from 1.
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// The byte offset where the record starts.
    #[prost(uint64, tag = "2")]
    pub byte: u64,
    /// The line where the record starts, from 1.
    #[prost(uint64, tag = "3")]
    pub line: u64,
    /// The record's key, when the file is an object.
    #[prost(string, tag = "4")]
    pub key: String,
    /// What is wrong with it.
    #[prost(string, tag = "5")]
    pub message: String,
}

/// Ingest's progress, streamed back to the uploading client.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Progress {
    /// Bytes of the file parsed so far.
    #[prost(uint64, tag = "1")]
    pub bytes: u64,
    /// Records parsed and sent on so far.
    #[prost(uint64, tag = "2")]
    pub records: u64,
    /// Malformed records skipped so far.
    #[prost(uint64, tag = "3")]
    pub errors: u64,
    /// The malformed record this notification reports, if any.
    #[prost(message, optional, tag = "4")]
    pub error: Option<RecordError>,
    /// Set on the last notification: the upload is complete.
    #[prost(bool, tag = "5")]
    pub done: bool,
    /// Records committed to the database (on the last notification).
    #[prost(uint64, tag = "6")]
    pub committed: u64,
    /// The mean latitude of the records (on the last notification).
    #[prost(message, optional, tag = "7")]
    pub latitude: Option<Mean>,
}
