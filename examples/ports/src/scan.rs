//! An incremental scanner that splits a JSON document of records into one
//! record at a time, fed chunk by chunk, holding at most one record.
//!
//! The document is a top-level object (`{"ID": {record}, ...}`) or array
//! (`[{record}, ...]`). The scanner tracks only what it needs to find where
//! each record begins and ends (strings, escapes, bracket depth); each
//! record's bytes are then parsed on their own, so a malformed record is
//! skipped and reported while a malformed document structure (a missing
//! colon, garbage between records, an early end) stops the scan.

use std::fmt;

/// The largest record held; a larger one is skipped (and reported) without
/// being buffered.
pub const MAX_RECORD: usize = 1024 * 1024;

/// Where a record starts in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The record's number, from 1.
    pub index: u64,
    /// Its first byte's offset.
    pub byte: u64,
    /// Its first line, from 1.
    pub line: u64,
}

/// One record found by the scanner.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    /// Its key, when the document is an object.
    pub key: Option<String>,
    /// Its JSON text, or `None` when it was over [`MAX_RECORD`] and skipped.
    pub json: Option<Vec<u8>>,
    /// Where it starts.
    pub position: Position,
}

/// The document is not an object or array of records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureError {
    /// The offset of the offending byte (the file's length for an early end).
    pub byte: u64,
    /// Its line, from 1.
    pub line: u64,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for StructureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed file structure at byte {} (line {}): {}",
            self.byte, self.line, self.message
        )
    }
}

impl std::error::Error for StructureError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Before the top-level `{` or `[`.
    Start,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// Inside a key string.
    InKey { escaped: bool },
    /// After a key: `:`.
    Colon,
    /// After `[`: a record or `]`.
    ValueOrClose,
    /// After `:` or `,` in an array: a record.
    Value,
    /// Inside a record.
    InValue,
    /// After a record: `,` or the closing bracket.
    CommaOrClose,
    /// After the closing bracket: only whitespace.
    Done,
}

/// The scanner; see the [module docs](self).
#[derive(Debug)]
pub struct Scanner {
    container: Option<Container>,
    step: Step,
    byte: u64,
    line: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    oversized: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// A record that is a bare scalar (not an object or array), which ends
    /// at the next delimiter rather than at a bracket.
    scalar: bool,
    records: u64,
    position: Position,
}

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner::new()
    }
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

impl Scanner {
    /// A scanner at the start of a document.
    pub fn new() -> Scanner {
        Scanner {
            container: None,
            step: Step::Start,
            byte: 0,
            line: 1,
            key: Vec::new(),
            value: Vec::new(),
            oversized: false,
            depth: 0,
            in_string: false,
            escaped: false,
            scalar: false,
            records: 0,
            position: Position {
                index: 0,
                byte: 0,
                line: 1,
            },
        }
    }

    /// Bytes scanned so far.
    pub fn bytes(&self) -> u64 {
        self.byte
    }

    /// Scans `chunk`, handing every record it completes to `emit`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut emit: impl FnMut(RawRecord),
    ) -> Result<(), StructureError> {
        let mut i = 0;
        while i < chunk.len() {
            if self.step == Step::InValue && !self.scalar {
                // The hot path: copy a record's bytes until it closes.
                i += self.scan_value(&chunk[i..], &mut emit);
                continue;
            }
            let byte = chunk[i];
            if self.step == Step::InValue {
                // A scalar record ends at a delimiter, which is then read again.
                if is_space(byte) || matches!(byte, b',' | b'}' | b']') {
                    self.finish_record(&mut emit);
                    continue;
                }
                self.push_value(byte);
            } else {
                self.structure(byte)?;
            }
            self.advance(byte);
            i += 1;
        }
        Ok(())
    }

    /// Ends the document: fails unless it was complete.
    pub fn finish(&mut self, mut emit: impl FnMut(RawRecord)) -> Result<(), StructureError> {
        if self.step == Step::InValue && self.scalar {
            self.finish_record(&mut emit);
        }
        match self.step {
            Step::Done => Ok(()),
            Step::Start => {
                Err(self.error("the file is empty: expected an object or array of records"))
            }
            _ => Err(self.error(format!(
                "the file ended inside the top-level {} after {} record(s)",
                match self.container {
                    Some(Container::Object) => "object",
                    _ => "array",
                },
                self.records
            ))),
        }
    }

    fn advance(&mut self, byte: u8) {
        self.byte += 1;
        if byte == b'\n' {
            self.line += 1;
        }
    }

    fn error(&self, message: impl Into<String>) -> StructureError {
        StructureError {
            byte: self.byte,
            line: self.line,
            message: message.into(),
        }
    }

    fn unexpected(&self, byte: u8, expected: &str) -> StructureError {
        self.error(format!("expected {expected}, found {:?}", char::from(byte)))
    }

    /// Handles one byte outside records.
    fn structure(&mut self, byte: u8) -> Result<(), StructureError> {
        if let Step::InKey { escaped } = self.step {
            self.key.push(byte);
            self.step = match (escaped, byte) {
                (false, b'"') => Step::Colon,
                (false, b'\\') => Step::InKey { escaped: true },
                _ => Step::InKey { escaped: false },
            };
            return Ok(());
        }
        if is_space(byte) || (self.step == Step::Start && self.byte < 3 && byte >= 0x80) {
            // Whitespace, or a UTF-8 byte-order mark at the very start.
            return Ok(());
        }
        match (self.step, byte) {
            (Step::Start, b'{') => {
                self.container = Some(Container::Object);
                self.step = Step::KeyOrClose;
            }
            (Step::Start, b'[') => {
                self.container = Some(Container::Array);
                self.step = Step::ValueOrClose;
            }
            (Step::Start, other) => {
                return Err(self.unexpected(other, "an object or array of records"));
            }
            (Step::KeyOrClose | Step::Key, b'"') => {
                self.key.clear();
                self.key.push(b'"');
                self.step = Step::InKey { escaped: false };
            }
            (Step::KeyOrClose, b'}') | (Step::ValueOrClose, b']') => self.step = Step::Done,
            (Step::KeyOrClose | Step::Key, other) => {
                return Err(self.unexpected(other, "a record's key (a string)"));
            }
            (Step::Colon, b':') => self.step = Step::Value,
            (Step::Colon, other) => return Err(self.unexpected(other, "':' after a key")),
            (Step::ValueOrClose | Step::Value, _) => self.start_value(byte),
            (Step::CommaOrClose, b',') => {
                self.step = match self.container {
                    Some(Container::Object) => Step::Key,
                    _ => Step::Value,
                };
            }
            (Step::CommaOrClose, b'}') if self.container == Some(Container::Object) => {
                self.step = Step::Done;
            }
            (Step::CommaOrClose, b']') if self.container == Some(Container::Array) => {
                self.step = Step::Done;
            }
            (Step::CommaOrClose, other) => {
                return Err(self.unexpected(other, "',' or the end of the top-level container"));
            }
            (Step::Done, other) => {
                return Err(self.unexpected(other, "nothing after the end of the document"));
            }
            (Step::InKey { .. } | Step::InValue, _) => unreachable!("handled above"),
        }
        Ok(())
    }

    fn start_value(&mut self, byte: u8) {
        self.records += 1;
        self.position = Position {
            index: self.records,
            byte: self.byte,
            line: self.line,
        };
        self.value.clear();
        self.oversized = false;
        self.in_string = byte == b'"';
        self.escaped = false;
        self.scalar = !matches!(byte, b'{' | b'[');
        self.depth = u32::from(!self.scalar);
        self.step = Step::InValue;
        self.push_value(byte);
    }

    fn push_value(&mut self, byte: u8) {
        if self.oversized {
            return;
        }
        if self.value.len() >= MAX_RECORD {
            self.oversized = true;
            self.value = Vec::new();
            return;
        }
        self.value.push(byte);
    }

    /// Scans bytes of a bracketed record; returns how many it consumed.
    fn scan_value(&mut self, bytes: &[u8], emit: &mut impl FnMut(RawRecord)) -> usize {
        for (i, &byte) in bytes.iter().enumerate() {
            self.advance(byte);
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
            } else {
                match byte {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => self.depth -= 1,
                    _ => {}
                }
            }
            self.push_value(byte);
            if self.depth == 0 {
                self.finish_record(emit);
                return i + 1;
            }
        }
        bytes.len()
    }

    fn finish_record(&mut self, emit: &mut impl FnMut(RawRecord)) {
        let key = (self.container == Some(Container::Object)).then(|| {
            serde_json::from_slice::<String>(&self.key)
                .unwrap_or_else(|_| String::from_utf8_lossy(&self.key).into_owned())
        });
        let json = (!self.oversized).then(|| std::mem::take(&mut self.value));
        emit(RawRecord {
            key,
            json,
            position: self.position,
        });
        self.step = Step::CommaOrClose;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(text: &str, piece: usize) -> (Vec<RawRecord>, Result<(), StructureError>) {
        let mut scanner = Scanner::new();
        let mut records = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            if let Err(err) = scanner.feed(chunk, |r| records.push(r)) {
                return (records, Err(err));
            }
        }
        let end = scanner.finish(|r| records.push(r));
        (records, end)
    }

    #[test]
    fn objects_and_arrays_split_into_records_whatever_the_chunking() {
        let object = "\u{feff}{ \"A\\\"1\" : {\"name\":\"x}\\\"{\",\"c\":[1,[2]]},\n\"B\":{} }\n";
        let array = "[{\"name\":\"a\"}, {\"name\":\"b\"} ,\n 7 ]";
        for piece in [1, 2, 3, 7, 1000] {
            let (records, end) = scan_in_pieces(object, piece);
            end.unwrap();
            assert_eq!(records.len(), 2, "{piece}");
            assert_eq!(records[0].key.as_deref(), Some("A\"1"));
            assert_eq!(
                records[0].json.as_deref(),
                Some(&b"{\"name\":\"x}\\\"{\",\"c\":[1,[2]]}"[..])
            );
            assert_eq!(records[1].key.as_deref(), Some("B"));
            assert_eq!(records[1].position.line, 2);

            let (records, end) = scan_in_pieces(array, piece);
            end.unwrap();
            let texts: Vec<&[u8]> = records.iter().map(|r| r.json.as_deref().unwrap()).collect();
            assert_eq!(texts, [&b"{\"name\":\"a\"}"[..], b"{\"name\":\"b\"}", b"7"]);
            assert_eq!(records[2].position.index, 3);
            assert_eq!(records[2].key, None);
        }
    }

    #[test]
    fn structure_errors_say_where() {
        for (text, byte) in [
            ("", 0),
            ("x", 0),
            ("{\"a\" {}}", 5),
            ("{\"a\":{}} x", 9),
            ("[{}, {} {}]", 8),
            ("{\"a\":{}, 5}", 9),
            ("{\"a\":{\"b\":1}", 12),
        ] {
            let (_, end) = scan_in_pieces(text, 3);
            assert_eq!(end.unwrap_err().byte, byte, "{text}");
        }
    }

    #[test]
    fn empty_containers_have_no_records() {
        for text in ["{}", "[ ]"] {
            let (records, end) = scan_in_pieces(text, 1);
            end.unwrap();
            assert!(records.is_empty());
        }
    }
}
