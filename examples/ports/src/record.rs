//! A port record as the JSON file has it, and its conversion to protobuf.

use serde::Deserialize;

use crate::{proto::Port, scan::RawRecord};

/// A port record in the file. Every field but `name` may be missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortRecord {
    name: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    alias: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    coordinates: Vec<f64>,
    #[serde(default)]
    province: String,
    #[serde(default)]
    timezone: String,
    #[serde(default)]
    unlocs: Vec<String>,
    #[serde(default)]
    code: String,
    /// An id inside the record, for arrays of records.
    #[serde(default)]
    id: Option<String>,
}

/// Parses one record found by the scanner into a [`Port`], or says what is
/// wrong with it.
pub fn to_port(record: &RawRecord) -> Result<Port, String> {
    let Some(json) = &record.json else {
        return Err(format!(
            "the record is larger than {} bytes",
            crate::scan::MAX_RECORD
        ));
    };
    let parsed: PortRecord = serde_json::from_slice(json).map_err(|err| err.to_string())?;
    if !(parsed.coordinates.is_empty() || parsed.coordinates.len() == 2) {
        return Err(format!(
            "coordinates must be [longitude, latitude], not {} numbers",
            parsed.coordinates.len()
        ));
    }
    let id = record
        .key
        .clone()
        .or(parsed.id)
        .or_else(|| parsed.unlocs.first().cloned())
        .filter(|id| !id.is_empty())
        .ok_or("the record has no id: no key, no \"id\" and no unlocs")?;
    Ok(Port {
        id,
        name: parsed.name,
        city: parsed.city,
        country: parsed.country,
        alias: parsed.alias,
        regions: parsed.regions,
        coordinates: parsed.coordinates,
        province: parsed.province,
        timezone: parsed.timezone,
        unlocs: parsed.unlocs,
        code: parsed.code,
    })
}
