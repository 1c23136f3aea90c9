//! Pieces shared by the PCD and PLY readers and writers: binary scalars, header lines,
//! error wrapping and the vertex part of the writers.
//!
//! The parsers report problems as plain messages; `read_with` and `parse_with` turn them
//! into the library's error, naming the file (or the in-memory data) they came from.
use super::Cloud;
use crate::error::{read_file, Error, Result};
use std::path::Path;

/// A parser's own error: a message naming the problem, without the input it came from.
pub(super) type ParseResult<T> = std::result::Result<T, String>;

/// Reads the file at `path` and parses it; a malformed file gives `Error::Format` naming it.
pub(super) fn read_with<T>(path: &Path, parse: fn(&[u8]) -> ParseResult<T>) -> Result<T> {
    parse(&read_file(path)?).map_err(|m| Error::format(path, m))
}

/// Parses bytes held in memory; malformed data gives `Error::Parse` with `what` (such as
/// "PCD data") and the parser's message as its source.
pub(super) fn parse_with<T>(
    bytes: &[u8],
    what: &str,
    parse: fn(&[u8]) -> ParseResult<T>,
) -> Result<T> {
    parse(bytes).map_err(|m| Error::parse(what, m))
}

/// A fixed-size binary number, as both formats store them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl Scalar {
    pub(super) fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::I64 | Scalar::U64 | Scalar::F64 => 8,
        }
    }

    pub(super) fn is_float(self) -> bool {
        matches!(self, Scalar::F32 | Scalar::F64)
    }

    /// Decodes one value as f64; `b` starts at the value and holds at least `self.size()`
    /// bytes.
    pub(super) fn decode(self, b: &[u8], big_endian: bool) -> f64 {
        let n = self.size();
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(&b[..n]);
        if big_endian {
            a[..n].reverse();
        }
        let a4 = [a[0], a[1], a[2], a[3]];
        match self {
            Scalar::I8 => a[0] as i8 as f64,
            Scalar::U8 => a[0] as f64,
            Scalar::I16 => i16::from_le_bytes([a[0], a[1]]) as f64,
            Scalar::U16 => u16::from_le_bytes([a[0], a[1]]) as f64,
            Scalar::I32 => i32::from_le_bytes(a4) as f64,
            Scalar::U32 => u32::from_le_bytes(a4) as f64,
            Scalar::I64 => i64::from_le_bytes(a) as f64,
            Scalar::U64 => u64::from_le_bytes(a) as f64,
            Scalar::F32 => f32::from_le_bytes(a4) as f64,
            Scalar::F64 => f64::from_le_bytes(a),
        }
    }
}

/// The lines of a text header at the start of a file that may go on in binary: each line
/// is checked to be UTF-8 only when it is reached, and `rest` gives the bytes after the
/// last line taken.
pub(super) struct HeaderLines<'a> {
    bytes: &'a [u8],
    pos: usize,
    line_no: usize,
}

impl<'a> HeaderLines<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        HeaderLines {
            bytes,
            pos: 0,
            line_no: 0,
        }
    }

    /// How many lines have been taken so far.
    pub(super) fn line_no(&self) -> usize {
        self.line_no
    }

    /// The bytes after the last line taken.
    pub(super) fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }
}

impl<'a> Iterator for HeaderLines<'a> {
    /// The line's number (from 1) and its text without the `\n`.
    type Item = ParseResult<(usize, &'a str)>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.bytes;
        if self.pos >= bytes.len() {
            return None;
        }
        self.line_no += 1;
        let line_no = self.line_no;
        let start = self.pos;
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |e| start + e);
        self.pos = (end + 1).min(bytes.len());
        Some(
            std::str::from_utf8(&bytes[start..end])
                .map(|line| (line_no, line))
                .map_err(|_| format!("header line {line_no} is not valid UTF-8")),
        )
    }
}

/// The data after the header as text; `part` names it in the error ("data", "body").
pub(super) fn ascii_text<'a>(bytes: &'a [u8], part: &str) -> ParseResult<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "the ascii {part} is not valid UTF-8 (at byte {} of the {part})",
            e.valid_up_to()
        )
    })
}

/// The cloud's colours, checked to be one per point before anything is written;
/// `format` names the file format in the error.
pub(super) fn colors_to_write<'a>(cloud: &'a Cloud, format: &str) -> Result<Option<&'a [[u8; 3]]>> {
    let colors = cloud.colors.as_deref();
    if let Some(c) = colors {
        if c.len() != cloud.len() {
            return Err(Error::invalid(format!(
                "cannot write {format}: {} colours for {} points",
                c.len(),
                cloud.len()
            )));
        }
    }
    Ok(colors)
}

/// Appends one text line per point, "x y z" then what `color` writes for its colour (when
/// the cloud has colours, checked by `colors_to_write`).
pub(super) fn write_points_ascii(
    out: &mut String,
    cloud: &Cloud,
    color: impl Fn(&mut String, [u8; 3]),
) {
    use std::fmt::Write as _;
    for (i, p) in cloud.points.iter().enumerate() {
        // `{}` prints the shortest text that parses back to the same f32.
        let _ = write!(out, "{} {} {}", p[0], p[1], p[2]);
        if let Some(c) = &cloud.colors {
            color(out, c[i]);
        }
        out.push('\n');
    }
}

/// Appends each point as x y z little-endian f32, then what `color` writes for its colour.
pub(super) fn write_points_le(
    out: &mut Vec<u8>,
    cloud: &Cloud,
    color: impl Fn(&mut Vec<u8>, [u8; 3]),
) {
    for (i, p) in cloud.points.iter().enumerate() {
        for c in p {
            out.extend_from_slice(&c.to_le_bytes());
        }
        if let Some(c) = &cloud.colors {
            color(out, c[i]);
        }
    }
}
