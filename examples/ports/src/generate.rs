//! Writes test files of port records of any size, streaming them to disk.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use rand::{Rng, SeedableRng, rngs::StdRng};

/// The layout of a generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `{"ID": {record}, ...}`
    Object,
    /// `[{record}, ...]`, each record carrying its unlocs.
    Array,
}

/// What a generated file holds, to check a pipeline's results against.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Generated {
    /// Records written (every id distinct).
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The mean latitude of the records that have coordinates.
    pub mean_latitude: f64,
    /// How many records have coordinates.
    pub with_coordinates: u64,
}

const CITIES: [&str; 6] = ["Ajman", "Abu Dhabi", "Dubai", "Rotterdam", "Sines", "Busan"];
const COUNTRIES: [&str; 5] = [
    "United Arab Emirates",
    "Netherlands",
    "Portugal",
    "Korea",
    "Chile",
];

/// Writes records to `path` until the file holds at least `size` bytes.
/// Every 10th record has no coordinates. Deterministic for a given `seed`.
pub fn generate(path: &Path, size: u64, layout: Layout, seed: u64) -> std::io::Result<Generated> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut generated = Generated::default();
    let (open, close) = match layout {
        Layout::Object => ("{\n", "\n}\n"),
        Layout::Array => ("[\n", "\n]\n"),
    };
    out.write_all(open.as_bytes())?;
    let mut written = open.len() as u64;
    let mut line = String::with_capacity(1024);
    while written + (close.len() as u64) < size || generated.records == 0 {
        line.clear();
        let index = generated.records;
        let id = format!("P{index:09}");
        if index > 0 {
            line.push_str(",\n");
        }
        if layout == Layout::Object {
            line.push_str(&format!("  \"{id}\": "));
        }
        let city = CITIES[rng.random_range(0..CITIES.len())];
        let country = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
        let coordinates = if index % 10 == 9 {
            String::new()
        } else {
            let latitude: f64 = rng.random_range(-90.0..90.0);
            let longitude: f64 = rng.random_range(-180.0..180.0);
            generated.with_coordinates += 1;
            generated.mean_latitude +=
                (latitude - generated.mean_latitude) / generated.with_coordinates as f64;
            format!("\"coordinates\": [{longitude}, {latitude}], ")
        };
        line.push_str(&format!(
            "{{\"name\": \"{city} {index}\", \"city\": \"{city}\", \"country\": \"{country}\", \
             \"alias\": [], \"regions\": [], {coordinates}\"province\": \"{city}\", \
             \"timezone\": \"Asia/Dubai\", \"unlocs\": [\"{id}\"], \"code\": \"{}\"}}",
            52000 + index % 1000
        ));
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
        generated.records += 1;
    }
    out.write_all(close.as_bytes())?;
    written += close.len() as u64;
    out.flush()?;
    generated.bytes = written;
    Ok(generated)
}
