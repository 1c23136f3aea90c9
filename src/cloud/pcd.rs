//! PCD (Point Cloud Library) files: `DATA ascii`, `binary` and `binary_compressed`, x y z
//! and optional rgb, organised or not.
//!
//! Only x, y, z and a packed rgb/rgba field are kept; every other field is skipped, so
//! clouds saved with normals, intensities, descriptors (COUNT > 1) or padding fields (`_`)
//! load without conversion. x, y and z may have any TYPE/SIZE PCD allows (F 4/8, I and U
//! 1/2/4/8; converted to f32); rgb/rgba may be any 4-byte type (PCL's F4 holding the packed
//! bits, U4 or I4) and is read as 0x??RRGGBB, the alpha byte dropped.
//!
//! `binary_compressed` follows PCL's layout: after the `DATA` line a little-endian u32
//! compressed size and u32 uncompressed size, then one LZF block (liblzf's format).
//! Decompressed, the data is stored field by field rather than point by point: every
//! point's first field, then every point's second field, and so on (a field with COUNT > 1
//! keeps its values together, point by point); padding fields named `_` are not stored at
//! all. Bytes after the block are ignored, as PCL does (older PCL versions left some). Every
//! size read from the file is checked before anything is allocated: the uncompressed size
//! must be POINTS x the stored bytes per point, and no larger than LZF can expand the
//! compressed bytes to.
//!
//! Organised clouds (HEIGHT > 1, such as a depth camera's 640 x 480 grid) keep their shape
//! in [`Cloud::organised`] and their invalid pixels as non-finite points, in place; the
//! writer writes the shape back as WIDTH/HEIGHT (an unorganised cloud as WIDTH = points,
//! HEIGHT = 1).
//!
//! LZF comes from the `lzf-rust` crate: pure, `unsafe`-free Rust, no C library to build,
//! whose raw token format is liblzf's (the one PCL's `lzfCompress`/`lzfDecompress` use; it
//! decodes PCL-written scans, see the tests), and which compresses into a caller-sized
//! buffer with a guaranteed bound, so incompressible data still writes. The older `lzf`
//! crate is also pure Rust and liblzf-compatible, but its author marks it deprecated and its
//! `compress` fails outright on data that does not shrink.
use super::io_common::{
    ascii_text, colors_to_write, parse_with, read_with, write_points_ascii, write_points_le,
    HeaderLines, ParseResult, Scalar,
};
use super::{Cloud, Organised};
use crate::error::{write_file_atomic, Error, Result};
use std::path::Path;

/// How `write_pcd` encodes the data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PcdEncoding {
    Ascii,
    Binary,
    /// PCL's `binary_compressed`: the fields stored one after another, LZF-compressed.
    BinaryCompressed,
}

/// Reads a PCD file; a malformed one gives `Error::Format` naming the file.
pub fn read_pcd(path: &Path) -> Result<Cloud> {
    read_with(path, parse)
}

/// Parses a whole PCD file held in memory. Non-finite points (PCL's marker for invalid
/// pixels of an organised cloud) are kept, so indices still match the sensor grid (see
/// `Cloud::organised` and `Cloud::finite_points`). Malformed data gives `Error::Parse` with
/// `what` "PCD data" and the problem as its source.
pub fn parse_pcd(bytes: &[u8]) -> Result<Cloud> {
    parse_with(bytes, "PCD data", parse)
}

fn parse(bytes: &[u8]) -> ParseResult<Cloud> {
    let (header, data) = parse_header(bytes)?;
    let layout = Layout::new(&header)?;
    let mut cloud = match header.data.as_str() {
        "ascii" => parse_ascii(&header, &layout, data),
        "binary" => parse_binary(&header, &layout, data),
        "binary_compressed" => parse_compressed(&header, &layout, data),
        other => Err(format!(
            "unknown DATA kind '{other}' (expected ascii, binary or binary_compressed)"
        )),
    }?;
    cloud.organised = (header.height > 1).then_some(Organised {
        width: header.width,
        height: header.height,
    });
    Ok(cloud)
}

/// Writes `cloud` the way the KeypointNet dataset stores its clouds (x y z as F4, rgb as U4),
/// with WIDTH/HEIGHT from `cloud.organised` (which must hold exactly the points).
pub fn write_pcd(path: &Path, cloud: &Cloud, encoding: PcdEncoding) -> Result<()> {
    write_file_atomic(path, &encode_pcd(cloud, encoding)?)
}

fn pack_rgb(c: [u8; 3]) -> u32 {
    (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32
}

fn encode_pcd(cloud: &Cloud, encoding: PcdEncoding) -> Result<Vec<u8>> {
    use std::fmt::Write as _;
    let n = cloud.len();
    let colors = colors_to_write(cloud, "PCD")?;
    cloud.check_organised("cannot write PCD")?;
    let (width, height) = cloud.organised.map_or((n, 1), |o| (o.width, o.height));
    let (fields, size, ty, count) = if colors.is_some() {
        ("x y z rgb", "4 4 4 4", "F F F U", "1 1 1 1")
    } else {
        ("x y z", "4 4 4", "F F F", "1 1 1")
    };
    let bytes_per_point = if colors.is_some() { 16 } else { 12 };
    let data = match encoding {
        PcdEncoding::Ascii => "ascii",
        PcdEncoding::Binary => "binary",
        PcdEncoding::BinaryCompressed => "binary_compressed",
    };
    let mut text = format!(
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {fields}\n\
         SIZE {size}\nTYPE {ty}\nCOUNT {count}\nWIDTH {width}\nHEIGHT {height}\n\
         VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n"
    );
    match encoding {
        PcdEncoding::Ascii => {
            write_points_ascii(&mut text, cloud, |t, c| {
                let _ = write!(t, " {}", pack_rgb(c));
            });
            Ok(text.into_bytes())
        }
        PcdEncoding::Binary => {
            let mut out = text.into_bytes();
            out.reserve(n.saturating_mul(bytes_per_point));
            write_points_le(&mut out, cloud, |o, c| {
                o.extend_from_slice(&pack_rgb(c).to_le_bytes())
            });
            Ok(out)
        }
        PcdEncoding::BinaryCompressed => {
            let cannot = |why: String| Error::invalid(format!("cannot write PCD: {why}"));
            // The format stores both sizes as u32.
            let too_big = || {
                cannot(format!(
                    "{n} points of {bytes_per_point} bytes exceed binary_compressed's 4 GiB \
                     limit; use binary"
                ))
            };
            let raw_len = n.checked_mul(bytes_per_point).ok_or_else(too_big)?;
            let raw_size = u32::try_from(raw_len).map_err(|_| too_big())?;
            let planes = field_planes(cloud, colors, raw_len);
            let mut block = vec![0u8; lzf_rust::max_compressed_size(raw_len)];
            let packed_len = lzf_rust::compress(&planes, &mut block)
                .map_err(|e| cannot(format!("LZF compression failed ({e})")))?;
            let packed_size = u32::try_from(packed_len).map_err(|_| too_big())?;
            let mut out = text.into_bytes();
            out.reserve(8 + packed_len);
            out.extend_from_slice(&packed_size.to_le_bytes());
            out.extend_from_slice(&raw_size.to_le_bytes());
            out.extend_from_slice(&block[..packed_len]);
            Ok(out)
        }
    }
}

/// The cloud field by field, as binary_compressed stores it before compression: every x,
/// then every y, every z and (with colours) every packed rgb, little-endian.
fn field_planes(cloud: &Cloud, colors: Option<&[[u8; 3]]>, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for k in 0..3 {
        for p in &cloud.points {
            out.extend_from_slice(&p[k].to_le_bytes());
        }
    }
    for &c in colors.unwrap_or_default() {
        out.extend_from_slice(&pack_rgb(c).to_le_bytes());
    }
    out
}

#[derive(Debug)]
struct Field {
    name: String,
    /// TYPE and SIZE together.
    ty: Scalar,
    count: usize,
}

impl Field {
    /// PCL's padding: bytes a binary record holds that binary_compressed does not store.
    fn is_padding(&self) -> bool {
        self.name == "_"
    }
}

#[derive(Debug)]
struct Header {
    fields: Vec<Field>,
    /// Lines up to and including DATA, so ascii errors can name file line numbers.
    lines: usize,
    width: usize,
    height: usize,
    /// WIDTH * HEIGHT (checked to equal POINTS).
    points: usize,
    data: String,
}

/// Splits the file into its parsed header and the bytes after the `DATA` line.
fn parse_header(bytes: &[u8]) -> ParseResult<(Header, &[u8])> {
    let mut names: Option<Vec<String>> = None;
    let mut sizes: Option<Vec<String>> = None;
    let mut types: Option<Vec<String>> = None;
    let mut counts: Option<Vec<String>> = None;
    let mut width: Option<usize> = None;
    let mut height: Option<usize> = None;
    let mut points: Option<usize> = None;
    let mut lines = HeaderLines::new(bytes);
    while let Some(line) = lines.next() {
        let (line_no, line) = line?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default().to_ascii_uppercase();
        let values: Vec<String> = words.map(str::to_owned).collect();
        let one = |values: &[String]| -> ParseResult<usize> {
            match values {
                [v] => v
                    .parse()
                    .map_err(|_| format!("{key}: '{v}' is not a non-negative integer")),
                _ => Err(format!(
                    "{key} needs exactly one value, found {}",
                    values.len()
                )),
            }
        };
        match key.as_str() {
            "FIELDS" => names = Some(values),
            "SIZE" => sizes = Some(values),
            "TYPE" => types = Some(values),
            "COUNT" => counts = Some(values),
            "WIDTH" => width = Some(one(&values)?),
            "HEIGHT" => height = Some(one(&values)?),
            "POINTS" => points = Some(one(&values)?),
            "DATA" => {
                let data = values
                    .first()
                    .cloned()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let missing = |k: &str| format!("the header has no {k} line");
                let names = names.ok_or_else(|| missing("FIELDS"))?;
                let sizes = sizes.ok_or_else(|| missing("SIZE"))?;
                let types = types.ok_or_else(|| missing("TYPE"))?;
                let width = width.ok_or_else(|| missing("WIDTH"))?;
                // Files older than v0.7 may leave these out; PCL's defaults apply.
                let height = height.unwrap_or(1);
                let counts = counts.unwrap_or_else(|| vec!["1".into(); names.len()]);
                let total = width
                    .checked_mul(height)
                    .ok_or_else(|| format!("WIDTH {width} * HEIGHT {height} overflows"))?;
                let points = points.unwrap_or(total);
                if points != total {
                    return Err(format!(
                        "POINTS {points} does not equal WIDTH {width} * HEIGHT {height} = {total}"
                    ));
                }
                let fields = build_fields(names, sizes, types, counts)?;
                let header = Header {
                    fields,
                    lines: line_no,
                    width,
                    height,
                    points,
                    data,
                };
                return Ok((header, lines.rest()));
            }
            // VERSION, VIEWPOINT and unknown keys carry nothing we need.
            _ => {}
        }
    }
    Err("the header has no DATA line".into())
}

fn build_fields(
    names: Vec<String>,
    sizes: Vec<String>,
    types: Vec<String>,
    counts: Vec<String>,
) -> ParseResult<Vec<Field>> {
    let n = names.len();
    if n == 0 {
        return Err("FIELDS lists no fields".into());
    }
    for (key, len) in [
        ("SIZE", sizes.len()),
        ("TYPE", types.len()),
        ("COUNT", counts.len()),
    ] {
        if len != n {
            return Err(format!("FIELDS has {n} entries but {key} has {len}"));
        }
    }
    let mut fields = Vec::with_capacity(n);
    for (((name, size), ty), count) in names.into_iter().zip(sizes).zip(types).zip(counts) {
        let size: usize = size
            .parse()
            .map_err(|_| format!("field '{name}': SIZE '{size}' is not an integer"))?;
        let count: usize = count
            .parse()
            .map_err(|_| format!("field '{name}': COUNT '{count}' is not an integer"))?;
        let ty = match ty.to_ascii_uppercase().as_str() {
            "F" => 'F',
            "U" => 'U',
            "I" => 'I',
            _ => {
                return Err(format!(
                    "field '{name}': unknown TYPE '{ty}' (expected F, U or I)"
                ))
            }
        };
        let ty = match (ty, size) {
            ('F', 4) => Scalar::F32,
            ('F', 8) => Scalar::F64,
            ('U', 1) => Scalar::U8,
            ('U', 2) => Scalar::U16,
            ('U', 4) => Scalar::U32,
            ('U', 8) => Scalar::U64,
            ('I', 1) => Scalar::I8,
            ('I', 2) => Scalar::I16,
            ('I', 4) => Scalar::I32,
            ('I', 8) => Scalar::I64,
            _ => return Err(format!("field '{name}': TYPE {ty} cannot have SIZE {size}")),
        };
        fields.push(Field { name, ty, count });
    }
    Ok(fields)
}

/// Where one kept field (x, y, z or rgb) sits in each encoding.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Its index in `Header::fields`.
    field: usize,
    /// Index of its value on an ascii line.
    value: usize,
    /// Byte offset within a binary record (padding included).
    byte: usize,
    /// Bytes per point of the stored fields before it (padding excluded): its data starts
    /// at `packed * POINTS` in decompressed binary_compressed data.
    packed: usize,
}

/// Where the fields we keep sit within one point.
struct Layout {
    xyz: [Slot; 3],
    rgb: Option<Slot>,
    values_per_point: usize,
    /// One binary record, padding fields included.
    bytes_per_point: usize,
    /// What binary_compressed stores per point: every field but padding.
    packed_bytes_per_point: usize,
}

impl Layout {
    fn new(header: &Header) -> ParseResult<Layout> {
        let mut value = 0usize;
        let mut byte = 0usize;
        let mut packed = 0usize;
        let mut xyz = [None; 3];
        let mut rgb = None;
        let mut rgba = None;
        for (i, f) in header.fields.iter().enumerate() {
            let slot = match f.name.as_str() {
                "x" => Some(&mut xyz[0]),
                "y" => Some(&mut xyz[1]),
                "z" => Some(&mut xyz[2]),
                "rgb" => Some(&mut rgb),
                "rgba" => Some(&mut rgba),
                _ => None,
            };
            if let Some(slot) = slot.filter(|s| s.is_none()) {
                if f.count != 1 {
                    return Err(format!(
                        "field '{}' must have COUNT 1, not {}",
                        f.name, f.count
                    ));
                }
                if f.name.starts_with("rgb") && f.ty.size() != 4 {
                    return Err(format!(
                        "field '{}' must have SIZE 4, not {}",
                        f.name,
                        f.ty.size()
                    ));
                }
                *slot = Some(Slot {
                    field: i,
                    value,
                    byte,
                    packed,
                });
            }
            value = value.checked_add(f.count).ok_or("COUNT values overflow")?;
            let bytes =
                f.ty.size()
                    .checked_mul(f.count)
                    .ok_or("SIZE * COUNT values overflow")?;
            byte = byte
                .checked_add(bytes)
                .ok_or("SIZE * COUNT values overflow")?;
            if !f.is_padding() {
                // packed <= byte, so this cannot overflow once `byte` did not.
                packed += bytes;
            }
        }
        let [x, y, z] = xyz;
        let found =
            |s: Option<Slot>, axis: &str| s.ok_or_else(|| format!("FIELDS has no '{axis}' field"));
        Ok(Layout {
            xyz: [found(x, "x")?, found(y, "y")?, found(z, "z")?],
            rgb: rgb.or(rgba),
            values_per_point: value,
            bytes_per_point: byte,
            packed_bytes_per_point: packed,
        })
    }
}

fn unpack_rgb(packed: u32) -> [u8; 3] {
    [(packed >> 16) as u8, (packed >> 8) as u8, packed as u8]
}

fn parse_ascii(header: &Header, layout: &Layout, data: &[u8]) -> ParseResult<Cloud> {
    let text = ascii_text(data, "data")?;
    let rgb_field = layout.rgb.map(|s| &header.fields[s.field]);
    let xyz_fields = layout.xyz.map(|s| &header.fields[s.field]);
    let mut points = Vec::with_capacity(header.points.min(text.len() / 2));
    let mut colors = layout
        .rgb
        .map(|_| Vec::with_capacity(header.points.min(text.len() / 2)));
    let mut values: Vec<&str> = Vec::with_capacity(layout.values_per_point);
    for (i, line) in text.lines().enumerate() {
        let line_no = header.lines + i + 1;
        values.clear();
        values.extend(line.split_whitespace());
        if values.is_empty() {
            continue;
        }
        if points.len() == header.points {
            return Err(format!(
                "line {line_no}: more data lines than POINTS {}",
                header.points
            ));
        }
        if values.len() != layout.values_per_point {
            return Err(format!(
                "line {line_no}: expected {} values, found {}",
                layout.values_per_point,
                values.len()
            ));
        }
        let mut p = [0f32; 3];
        for (k, slot) in layout.xyz.iter().enumerate() {
            let tok = values[slot.value];
            // Parsing an F4 straight to f32 avoids double rounding, so round trips are exact.
            let parsed = if xyz_fields[k].ty == Scalar::F32 {
                tok.parse::<f32>().ok()
            } else {
                tok.parse::<f64>().ok().map(|v| v as f32)
            };
            p[k] = parsed
                .ok_or_else(|| format!("line {line_no}: cannot parse '{tok}' as a number"))?;
        }
        points.push(p);
        if let (Some(colors), Some(slot), Some(f)) = (&mut colors, layout.rgb, rgb_field) {
            let tok = values[slot.value];
            let packed = parse_ascii_rgb(tok, f.ty)
                .ok_or_else(|| format!("line {line_no}: cannot parse '{tok}' as rgb"))?;
            colors.push(unpack_rgb(packed));
        }
    }
    if points.len() != header.points {
        return Err(format!(
            "expected {} points of ascii data, found {}",
            header.points,
            points.len()
        ));
    }
    Ok(Cloud {
        points,
        colors,
        organised: None,
    })
}

/// PCL (since 1.8) writes an F rgb as its integer bits, because opaque colours are NaN
/// as floats; older writers print the float. A bare digit string is therefore the integer.
fn parse_ascii_rgb(tok: &str, ty: Scalar) -> Option<u32> {
    if !ty.is_float() || tok.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = tok.parse::<u32>() {
            return Some(v);
        }
        // A negative I value: keep its two's-complement bits.
        return tok.parse::<i32>().ok().map(|v| v as u32);
    }
    tok.parse::<f32>().ok().map(f32::to_bits)
}

fn parse_binary(header: &Header, layout: &Layout, data: &[u8]) -> ParseResult<Cloud> {
    let stride = layout.bytes_per_point;
    let needed = header
        .points
        .checked_mul(stride)
        .ok_or_else(|| format!("POINTS {} * {stride} bytes overflows", header.points))?;
    if data.len() < needed {
        return Err(format!(
            "expected {needed} bytes of binary data, found {}",
            data.len()
        ));
    }
    // Point i's value of a field is at its offset in record i.
    let column = |s: Slot| Column {
        start: s.byte,
        stride,
        ty: header.fields[s.field].ty,
    };
    decode_columns(
        header.points,
        layout.xyz.map(column),
        layout.rgb.map(column),
        &data[..needed],
    )
}

/// The most bytes one byte of an LZF stream can decode to: a long back-reference is 3
/// bytes and copies at most 264.
const LZF_MAX_EXPANSION: usize = 88;

fn parse_compressed(header: &Header, layout: &Layout, data: &[u8]) -> ParseResult<Cloud> {
    let Some((sizes, rest)) = data.split_first_chunk::<8>() else {
        return Err(format!(
            "binary_compressed data is {} bytes, too short for its compressed and \
             uncompressed sizes (8 bytes)",
            data.len()
        ));
    };
    let [c0, c1, c2, c3, u0, u1, u2, u3] = *sizes;
    let compressed = u32::from_le_bytes([c0, c1, c2, c3]) as usize;
    let uncompressed = u32::from_le_bytes([u0, u1, u2, u3]) as usize;
    let per_point = layout.packed_bytes_per_point;
    let expected = header
        .points
        .checked_mul(per_point)
        .ok_or_else(|| format!("POINTS {} * {per_point} bytes overflows", header.points))?;
    if uncompressed != expected {
        return Err(format!(
            "binary_compressed: the uncompressed size is {uncompressed} bytes, but POINTS {} \
             x {per_point} bytes per point (padding '_' fields are not stored) = {expected}",
            header.points
        ));
    }
    if compressed > rest.len() {
        return Err(format!(
            "binary_compressed: the compressed size is {compressed} bytes, but only {} \
             follow the sizes (truncated file?)",
            rest.len()
        ));
    }
    // Refuse before allocating: a few bytes claiming gigabytes are not a cloud.
    if compressed.saturating_mul(LZF_MAX_EXPANSION) < expected {
        return Err(format!(
            "binary_compressed: {compressed} compressed bytes cannot hold {expected} bytes \
             (LZF expands at most {LZF_MAX_EXPANSION} times)"
        ));
    }
    let mut planes = vec![0u8; expected];
    match lzf_rust::decompress(&rest[..compressed], &mut planes) {
        Ok(n) if n == expected => {}
        Ok(n) => {
            return Err(format!(
                "binary_compressed: the LZF data decompresses to {n} bytes, not the \
                 {expected} its uncompressed size says"
            ))
        }
        Err(lzf_rust::Error::OutputTooSmall) => {
            return Err(format!(
                "binary_compressed: the LZF data decompresses to more than the {expected} \
                 bytes its uncompressed size says"
            ))
        }
        Err(e) => return Err(format!("binary_compressed: the LZF data is corrupt ({e})")),
    }
    // Field by field: a field's values for every point follow one another.
    let column = |s: Slot| {
        let f = &header.fields[s.field];
        Column {
            start: s.packed.saturating_mul(header.points),
            stride: f.ty.size(),
            ty: f.ty,
        }
    };
    decode_columns(
        header.points,
        layout.xyz.map(column),
        layout.rgb.map(column),
        &planes,
    )
}

/// Where one kept field's values sit in the data: point i's at `start + i * stride`.
#[derive(Debug, Clone, Copy)]
struct Column {
    start: usize,
    stride: usize,
    ty: Scalar,
}

impl Column {
    /// Whether `points` values fit in `len` bytes.
    fn fits(&self, points: usize, len: usize) -> bool {
        if points == 0 {
            return true;
        }
        (points - 1)
            .checked_mul(self.stride)
            .and_then(|o| o.checked_add(self.start))
            .and_then(|o| o.checked_add(self.ty.size()))
            .is_some_and(|end| end <= len)
    }
}

/// The cloud held in `data` (binary records or decompressed planes alike).
fn decode_columns(
    points: usize,
    xyz: [Column; 3],
    rgb: Option<Column>,
    data: &[u8],
) -> ParseResult<Cloud> {
    // The callers sized `data` from the same layout; checked anyway, so a slip is an error
    // rather than a panic.
    if !xyz.iter().chain(&rgb).all(|c| c.fits(points, data.len())) {
        return Err(format!(
            "internal error: the field layout does not fit {} bytes of data",
            data.len()
        ));
    }
    let points_out = (0..points)
        .map(|i| xyz.map(|c| c.ty.decode(&data[c.start + i * c.stride..], false) as f32))
        .collect();
    let colors = rgb.map(|c| {
        (0..points)
            .map(|i| {
                let o = c.start + i * c.stride;
                unpack_rgb(u32::from_le_bytes([
                    data[o],
                    data[o + 1],
                    data[o + 2],
                    data[o + 3],
                ]))
            })
            .collect()
    });
    Ok(Cloud {
        points: points_out,
        colors,
        organised: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    const ENCODINGS: [PcdEncoding; 3] = [
        PcdEncoding::Ascii,
        PcdEncoding::Binary,
        PcdEncoding::BinaryCompressed,
    ];

    /// The message of the error `parse_pcd` gives for `bytes`, checking it names the data.
    fn parse_err(bytes: &[u8]) -> String {
        match parse_pcd(bytes).unwrap_err() {
            Error::Parse { what, source } => {
                assert_eq!(what, "PCD data");
                source.to_string()
            }
            other => panic!("expected Error::Parse, got {other:?}"),
        }
    }

    fn sample_cloud(with_rgb: bool) -> Cloud {
        let points = vec![
            [0.1, -0.2, 0.3],
            [1.0 / 3.0, 1e-30, -3.402_823_5e38],
            [0.0, -0.0, 123_456.79],
        ];
        let colors = with_rgb.then(|| vec![[255, 0, 128], [1, 2, 3], [0, 0, 0]]);
        Cloud {
            points,
            colors,
            organised: None,
        }
    }

    fn round_trip(with_rgb: bool, encoding: PcdEncoding) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cloud.pcd");
        let cloud = sample_cloud(with_rgb);
        write_pcd(&path, &cloud, encoding).unwrap();
        let back = read_pcd(&path).unwrap();
        assert_eq!(back, cloud);
        // Bit-exact, including the sign of zero.
        for (a, b) in back.points.iter().zip(&cloud.points) {
            for k in 0..3 {
                assert_eq!(a[k].to_bits(), b[k].to_bits());
            }
        }
    }

    // One test per encoding and colour case, so a failure names the case.
    #[test]
    fn round_trip_ascii_xyz() {
        round_trip(false, PcdEncoding::Ascii);
    }

    #[test]
    fn round_trip_ascii_rgb() {
        round_trip(true, PcdEncoding::Ascii);
    }

    #[test]
    fn round_trip_binary_xyz() {
        round_trip(false, PcdEncoding::Binary);
    }

    #[test]
    fn round_trip_binary_rgb() {
        round_trip(true, PcdEncoding::Binary);
    }

    #[test]
    fn round_trip_compressed_xyz() {
        round_trip(false, PcdEncoding::BinaryCompressed);
    }

    #[test]
    fn round_trip_compressed_rgb() {
        round_trip(true, PcdEncoding::BinaryCompressed);
    }

    #[test]
    fn writer_uses_keypointnet_header() {
        let bytes = encode_pcd(&sample_cloud(true), PcdEncoding::Ascii).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("FIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\n"));
        assert!(text.contains("\n0.1 -0.2 0.3 16711808\n"));
        let bytes = encode_pcd(&sample_cloud(false), PcdEncoding::Binary).unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("FIELDS x y z\n"));
    }

    #[test]
    fn write_rejects_colour_count_mismatch() {
        let mut cloud = sample_cloud(true);
        cloud.colors.as_mut().unwrap().pop();
        let err = encode_pcd(&cloud, PcdEncoding::Binary).unwrap_err();
        assert!(err.to_string().contains("2 colours for 3 points"), "{err}");
    }

    #[test]
    fn ascii_pcl_header_extra_fields_any_order_float_rgb() {
        // Old writers print an F rgb as the float with the packed bits; PCL >= 1.8 as an integer.
        let float_rgb = f32::from_bits(0x00ff_8040);
        let text = format!(
            "# .PCD v0.7 - Point Cloud Data file format\n\
             VERSION 0.7\n\
             FIELDS normal_x x y z rgb intensity\n\
             SIZE 4 4 4 4 4 4\n\
             TYPE F F F F F F\n\
             COUNT 1 1 1 1 1 1\n\
             WIDTH 2\n\
             HEIGHT 1\n\
             VIEWPOINT 0 0 0 1 0 0 0\n\
             POINTS 2\n\
             DATA ascii\n\
             0.5 1 2 3 {float_rgb:e} 7\n\
             \n\
             -0.5 4.5 5 6 4278255360 8\n"
        );
        let cloud = parse_pcd(text.as_bytes()).unwrap();
        assert_eq!(cloud.points, vec![[1.0, 2.0, 3.0], [4.5, 5.0, 6.0]]);
        assert_eq!(cloud.colors, Some(vec![[255, 128, 64], [0, 255, 0]]));
    }

    #[test]
    fn binary_pcl_header_extra_fields_any_order() {
        let header = "VERSION 0.7\n\
             FIELDS normal_x x y z _ rgb intensity\n\
             SIZE 4 8 4 4 1 4 2\n\
             TYPE F F F F U F U\n\
             COUNT 1 1 1 1 3 1 1\n\
             WIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA binary\n";
        let mut bytes = header.as_bytes().to_vec();
        for (i, (p, rgb)) in [
            ([1.5f64, 2.0, 3.0], 0xff10_2030u32),
            ([-4.0, 5.0, 6.0], 0x00ff_ffff),
        ]
        .iter()
        .enumerate()
        {
            bytes.extend_from_slice(&9.0f32.to_le_bytes());
            bytes.extend_from_slice(&p[0].to_le_bytes());
            bytes.extend_from_slice(&(p[1] as f32).to_le_bytes());
            bytes.extend_from_slice(&(p[2] as f32).to_le_bytes());
            bytes.extend_from_slice(&[7, 7, 7]);
            // PCL stores rgb as the float with these bits; the bytes are the same.
            bytes.extend_from_slice(&f32::from_bits(*rgb).to_le_bytes());
            bytes.extend_from_slice(&(i as u16).to_le_bytes());
        }
        let cloud = parse_pcd(&bytes).unwrap();
        assert_eq!(cloud.points, vec![[1.5, 2.0, 3.0], [-4.0, 5.0, 6.0]]);
        assert_eq!(
            cloud.colors,
            Some(vec![[0x10, 0x20, 0x30], [255, 255, 255]])
        );
    }

    #[test]
    fn rgba_field_is_read_as_colour() {
        let text = "FIELDS x y z rgba\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\n\
                    WIDTH 1\nHEIGHT 1\nPOINTS 1\nDATA ascii\n1 2 3 4278190335\n";
        let cloud = parse_pcd(text.as_bytes()).unwrap();
        assert_eq!(cloud.colors, Some(vec![[0, 0, 255]]));
    }

    #[test]
    fn truncated_binary_is_an_error() {
        let mut bytes = encode_pcd(&sample_cloud(true), PcdEncoding::Binary).unwrap();
        bytes.truncate(bytes.len() - 5);
        let err = parse_err(&bytes);
        assert_eq!(err, "expected 48 bytes of binary data, found 43");
    }

    #[test]
    fn field_count_mismatch_is_an_error() {
        let text = "FIELDS x y z\nSIZE 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 0\nHEIGHT 1\n\
                    POINTS 0\nDATA ascii\n";
        let err = parse_err(text.as_bytes());
        assert!(err.contains("FIELDS has 3 entries but SIZE has 2"), "{err}");
    }

    #[test]
    fn nan_points_are_kept_and_can_be_dropped() {
        let text = "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n\
                    WIDTH 2\nHEIGHT 2\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA ascii\n\
                    1 2 3\nnan nan nan\n4 5 6\n7 8 9\n";
        let cloud = parse_pcd(text.as_bytes()).unwrap();
        assert_eq!(cloud.len(), 4);
        assert_eq!(
            cloud.organised,
            Some(Organised {
                width: 2,
                height: 2
            })
        );
        assert!(cloud.points[1].iter().all(|c| c.is_nan()));
        let err = cloud.validate("organised").unwrap_err();
        assert!(err.to_string().contains("point 1"), "{err}");
        let (finite, kept) = cloud.finite_points();
        assert_eq!(kept, vec![0, 2, 3]);
        assert_eq!(finite.organised, None);
        assert_eq!(
            finite.points,
            vec![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
        );
    }

    #[test]
    fn ascii_line_with_too_few_values_names_the_line() {
        let text = "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\n\
                    POINTS 2\nDATA ascii\n1 2 3\n4 5\n";
        let err = parse_err(text.as_bytes());
        assert_eq!(err, "line 10: expected 3 values, found 2");
    }

    #[test]
    fn ascii_too_few_or_too_many_lines() {
        let head = "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\n\
                    POINTS 2\nDATA ascii\n";
        let err = parse_err(format!("{head}1 2 3\n").as_bytes());
        assert!(
            err.contains("expected 2 points of ascii data, found 1"),
            "{err}"
        );
        let err = parse_err(format!("{head}1 2 3\n1 2 3\n1 2 3\n").as_bytes());
        assert!(
            err.contains("line 11: more data lines than POINTS 2"),
            "{err}"
        );
    }

    #[test]
    fn empty_cloud_is_valid() {
        for encoding in ENCODINGS {
            for rgb in [false, true] {
                let cloud = Cloud {
                    points: vec![],
                    colors: rgb.then(Vec::new),
                    organised: None,
                };
                let bytes = encode_pcd(&cloud, encoding).unwrap();
                assert_eq!(parse_pcd(&bytes).unwrap(), cloud);
            }
        }
    }

    #[test]
    fn header_errors_name_the_problem() {
        let ok = "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 1\nHEIGHT 1\n\
                  POINTS 1\nDATA ascii\n1 2 3\n";
        assert!(parse_pcd(ok.as_bytes()).is_ok());
        let cases = [
            (
                ok.replace("DATA ascii", "DATA binary_compressed"),
                "binary_compressed data is 6 bytes, too short",
            ),
            (
                ok.replace("DATA ascii", "DATA zip"),
                "unknown DATA kind 'zip'",
            ),
            (
                ok.replace("POINTS 1", "POINTS 2"),
                "POINTS 2 does not equal WIDTH 1 * HEIGHT 1",
            ),
            (ok.replace("FIELDS x y z", "FIELDS x y w"), "no 'z' field"),
            (
                ok.replace("1 2 3", "1 2 oops"),
                "line 9: cannot parse 'oops'",
            ),
            (ok.replace("WIDTH 1\n", ""), "no WIDTH line"),
            (ok.replace("SIZE 4 4 4\n", ""), "no SIZE line"),
            (ok.replace("DATA ascii\n1 2 3\n", ""), "no DATA line"),
            (ok.replace("TYPE F F F", "TYPE F F Q"), "unknown TYPE 'Q'"),
            (
                ok.replace("SIZE 4 4 4", "SIZE 4 4 3"),
                "TYPE F cannot have SIZE 3",
            ),
            (ok.replace("WIDTH 1", "WIDTH -1"), "WIDTH: '-1'"),
            (
                ok.replace("COUNT 1 1 1", "COUNT 1 2 1"),
                "'y' must have COUNT 1",
            ),
        ];
        for (text, want) in cases {
            let err = parse_err(text.as_bytes());
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let mut bytes = b"# caf\xe9\n".to_vec();
        bytes.extend_from_slice(ok.as_bytes());
        let err = parse_err(&bytes);
        assert!(err.contains("header line 1 is not valid UTF-8"), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        let good = encode_pcd(&sample_cloud(true), PcdEncoding::Binary).unwrap();
        for cut in 0..good.len() {
            let _ = parse_pcd(&good[..cut]);
        }
        let huge = "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 18446744073709551615\n\
                    HEIGHT 1\nDATA binary\n";
        let err = parse_err(huge.as_bytes());
        assert!(err.contains("overflows"), "{err}");
    }

    #[test]
    fn public_parse_error_keeps_the_message() {
        let mut bytes = encode_pcd(&sample_cloud(false), PcdEncoding::Binary).unwrap();
        bytes.truncate(bytes.len() - 1);
        let err = parse_pcd(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PCD data: expected 36 bytes of binary data, found 35"
        );
        let source = std::error::Error::source(&err).expect("the parser's message is kept");
        assert_eq!(
            source.to_string(),
            "expected 36 bytes of binary data, found 35"
        );
    }

    #[test]
    fn read_reports_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pcd");
        std::fs::write(&path, "FIELDS x\n").unwrap();
        let err = read_pcd(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.pcd") && err.contains("no DATA line"),
            "{err}"
        );
    }

    // ---- Hand-built files: every field type, every encoding, organised or not ----

    /// One field of a hand-built file: FIELDS name, TYPE, SIZE, COUNT.
    #[derive(Debug, Clone, Copy)]
    struct HandField {
        name: &'static str,
        ty: char,
        size: usize,
        count: usize,
    }

    fn hf(name: &'static str, ty: char, size: usize, count: usize) -> HandField {
        HandField {
            name,
            ty,
            size,
            count,
        }
    }

    /// One stored value: a number, written in its field's type, or 32 raw bits (a packed
    /// colour, which PCL keeps in an F4 too and prints as an integer).
    #[derive(Debug, Clone, Copy)]
    enum V {
        N(f64),
        Bits(u32),
    }

    fn value_bytes(f: HandField, v: V) -> Vec<u8> {
        match (v, f.ty, f.size) {
            (V::Bits(b), _, 4) => b.to_le_bytes().to_vec(),
            (V::N(x), 'F', 4) => (x as f32).to_le_bytes().to_vec(),
            (V::N(x), 'F', 8) => x.to_le_bytes().to_vec(),
            (V::N(x), 'I', 1) => (x as i8).to_le_bytes().to_vec(),
            (V::N(x), 'I', 2) => (x as i16).to_le_bytes().to_vec(),
            (V::N(x), 'I', 4) => (x as i32).to_le_bytes().to_vec(),
            (V::N(x), 'I', 8) => (x as i64).to_le_bytes().to_vec(),
            (V::N(x), 'U', 1) => (x as u8).to_le_bytes().to_vec(),
            (V::N(x), 'U', 2) => (x as u16).to_le_bytes().to_vec(),
            (V::N(x), 'U', 4) => (x as u32).to_le_bytes().to_vec(),
            (V::N(x), 'U', 8) => (x as u64).to_le_bytes().to_vec(),
            _ => panic!("no bytes for {v:?} in {f:?}"),
        }
    }

    fn value_text(f: HandField, v: V) -> String {
        match (v, f.ty) {
            (V::Bits(b), _) => b.to_string(),
            (V::N(x), 'F') if f.size == 4 => (x as f32).to_string(),
            (V::N(x), 'F') => x.to_string(),
            (V::N(x), _) => (x as i64).to_string(),
        }
    }

    /// `row` (one point's values, field after field) split into each field's values.
    fn split_row<'a>(fields: &[HandField], row: &'a [V]) -> Vec<&'a [V]> {
        let mut at = 0;
        fields
            .iter()
            .map(|f| {
                let values = &row[at..at + f.count];
                at += f.count;
                values
            })
            .collect()
    }

    /// PCL's binary_compressed data section for `planes`: the compressed and uncompressed
    /// sizes, then the LZF block.
    fn compressed_section(planes: &[u8]) -> Vec<u8> {
        let mut block = vec![0; lzf_rust::max_compressed_size(planes.len())];
        let n = lzf_rust::compress(planes, &mut block).unwrap();
        let mut out = (n as u32).to_le_bytes().to_vec();
        out.extend((planes.len() as u32).to_le_bytes());
        out.extend(&block[..n]);
        out
    }

    /// A PCD file written by hand, independently of `encode_pcd`: `rows[i]` holds point i's
    /// values, field after field (COUNT values each).
    fn hand_built(
        fields: &[HandField],
        rows: &[Vec<V>],
        (width, height): (usize, usize),
        data: &str,
    ) -> Vec<u8> {
        let list =
            |f: &dyn Fn(&HandField) -> String| fields.iter().map(f).collect::<Vec<_>>().join(" ");
        let mut out = format!(
            "# .PCD v0.7 - hand-built\nVERSION 0.7\nFIELDS {}\nSIZE {}\nTYPE {}\nCOUNT {}\n\
             WIDTH {width}\nHEIGHT {height}\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {}\nDATA {data}\n",
            list(&|f| f.name.to_string()),
            list(&|f| f.size.to_string()),
            list(&|f| f.ty.to_string()),
            list(&|f| f.count.to_string()),
            rows.len()
        )
        .into_bytes();
        match data {
            "ascii" => {
                for row in rows {
                    let words: Vec<String> = fields
                        .iter()
                        .zip(split_row(fields, row))
                        .flat_map(|(&f, vs)| vs.iter().map(move |&v| value_text(f, v)))
                        .collect();
                    out.extend(words.join(" ").bytes());
                    out.push(b'\n');
                }
            }
            "binary" => {
                for row in rows {
                    for (&f, vs) in fields.iter().zip(split_row(fields, row)) {
                        for &v in vs {
                            out.extend(value_bytes(f, v));
                        }
                    }
                }
            }
            "binary_compressed" => {
                // Field by field, padding left out, as PCL stores it.
                let mut planes = Vec::new();
                for (k, &f) in fields.iter().enumerate() {
                    if f.name == "_" {
                        continue;
                    }
                    for row in rows {
                        for &v in split_row(fields, row)[k] {
                            planes.extend(value_bytes(f, v));
                        }
                    }
                }
                out.extend(compressed_section(&planes));
            }
            other => panic!("unknown DATA {other}"),
        }
        out
    }

    /// `a` and `b` hold the same points bit for bit (a NaN matching any NaN), colours and
    /// shape.
    fn assert_same(a: &Cloud, b: &Cloud, case: &str) {
        assert_eq!(a.len(), b.len(), "{case}: point count");
        for (i, (p, q)) in a.points.iter().zip(&b.points).enumerate() {
            for k in 0..3 {
                let same = p[k].to_bits() == q[k].to_bits() || (p[k].is_nan() && q[k].is_nan());
                assert!(same, "{case}: point {i}: {p:?} vs {q:?}");
            }
        }
        assert_eq!(a.colors, b.colors, "{case}: colours");
        assert_eq!(a.organised, b.organised, "{case}: shape");
    }

    /// Every TYPE and SIZE the reader takes for x, y and z.
    const XYZ_TYPES: [(char, usize); 10] = [
        ('F', 4),
        ('F', 8),
        ('I', 1),
        ('I', 2),
        ('I', 4),
        ('I', 8),
        ('U', 1),
        ('U', 2),
        ('U', 4),
        ('U', 8),
    ];

    /// Every colour field the reader takes: none, rgb as F4 (PCL's), U4 or I4, rgba as U4.
    const COLOUR_FIELDS: [Option<(&str, char)>; 5] = [
        None,
        Some(("rgb", 'F')),
        Some(("rgb", 'U')),
        Some(("rgb", 'I')),
        Some(("rgba", 'U')),
    ];

    /// Six coordinates the type can hold exactly (after the reader's cast to f32).
    fn coordinates(ty: char, size: usize) -> [f64; 6] {
        match (ty, size) {
            ('F', 4) => [0.1, -2.5, 1e-30, 3.402_823_5e38, 123_456.79, -0.0],
            ('F', _) => [0.1, -2.5, 1e-300, 1e30, 1.0 / 3.0, -0.0],
            ('I', 1) => [-128.0, -1.0, 0.0, 1.0, 7.0, 127.0],
            ('I', _) => [-30_000.0, -1.0, 0.0, 1.0, 7.0, 32_000.0],
            ('U', 1) => [0.0, 1.0, 2.0, 7.0, 100.0, 255.0],
            _ => [0.0, 1.0, 2.0, 7.0, 100.0, 65_535.0],
        }
    }

    /// Packed colours, including set alpha bits (a NaN as an F4, negative as an I4).
    const COLOUR_BITS: [u32; 6] = [
        0x00ff_0080,
        0xff10_2030,
        0x0000_0000,
        0x7f7f_7f7f,
        0x00ff_ffff,
        0x8001_0203,
    ];

    #[test]
    fn every_field_type_reads_and_round_trips_in_every_encoding() {
        let mut cases = 0;
        for (ty, size) in XYZ_TYPES {
            for colour in COLOUR_FIELDS {
                for organised in [false, true] {
                    // Colour first and an extra field last, so no kept field is at offset 0
                    // of a record by luck.
                    let mut fields = Vec::new();
                    if let Some((name, cty)) = colour {
                        fields.push(hf(name, cty, 4, 1));
                    }
                    fields.extend([hf("x", ty, size, 1), hf("y", ty, size, 1)]);
                    fields.extend([hf("z", ty, size, 1), hf("intensity", 'U', 2, 1)]);
                    let c = coordinates(ty, size);
                    // Organised float clouds get NaN holes, as depth cameras write them.
                    let hole = |i: usize| organised && ty == 'F' && (i == 1 || i == 4);
                    let xyz: Vec<[f64; 3]> = (0..6)
                        .map(|i| {
                            if hole(i) {
                                [f64::NAN; 3]
                            } else {
                                [c[i], c[(i + 1) % 6], c[(i + 2) % 6]]
                            }
                        })
                        .collect();
                    let rows: Vec<Vec<V>> = (0..6)
                        .map(|i| {
                            let mut row = Vec::new();
                            if colour.is_some() {
                                row.push(V::Bits(COLOUR_BITS[i]));
                            }
                            row.extend(xyz[i].map(V::N));
                            row.push(V::N(i as f64 * 1000.0));
                            row
                        })
                        .collect();
                    let shape = if organised { (3, 2) } else { (6, 1) };
                    let expected = Cloud {
                        points: xyz.iter().map(|p| p.map(|v| v as f32)).collect(),
                        colors: colour.map(|_| COLOUR_BITS.map(unpack_rgb).to_vec()),
                        organised: organised.then_some(Organised {
                            width: 3,
                            height: 2,
                        }),
                    };
                    for data in ["ascii", "binary", "binary_compressed"] {
                        let case = format!(
                            "xyz {ty}{size}, colour {colour:?}, {data}, organised {organised}"
                        );
                        let bytes = hand_built(&fields, &rows, shape, data);
                        let cloud = parse_pcd(&bytes).unwrap_or_else(|e| panic!("{case}: {e:?}"));
                        assert_same(&cloud, &expected, &case);
                        for encoding in ENCODINGS {
                            let case = format!("{case}, written as {encoding:?}");
                            let written = encode_pcd(&cloud, encoding).unwrap();
                            let back =
                                parse_pcd(&written).unwrap_or_else(|e| panic!("{case}: {e:?}"));
                            assert_same(&back, &expected, &case);
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 10 * 5 * 2 * 3 * 3);
    }

    #[test]
    fn binary_compressed_with_extra_fields_and_padding() {
        // PCL leaves the padding '_' out of binary_compressed data; COUNT > 1 fields keep
        // their values together, point by point. Built by hand, field by field.
        let head = "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n\
                    FIELDS normal_x x _ y z rgb fpfh intensity\n\
                    SIZE 4 8 1 4 2 4 4 1\nTYPE F F U F I F F U\nCOUNT 1 1 3 1 1 1 3 1\n\
                    WIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\n\
                    DATA binary_compressed\n";
        let mut planes = Vec::new();
        for v in [9.0f32, -9.0] {
            planes.extend(v.to_le_bytes());
        }
        for v in [1.5f64, -4.0] {
            planes.extend(v.to_le_bytes());
        }
        for v in [-2.25f32, 5.5] {
            planes.extend(v.to_le_bytes());
        }
        for v in [-3i16, 300] {
            planes.extend(v.to_le_bytes());
        }
        for bits in [0xff10_2030u32, 0x00ff_ffff] {
            // PCL stores rgb as the float with these bits; the bytes are the same.
            planes.extend(f32::from_bits(bits).to_le_bytes());
        }
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0] {
            planes.extend(v.to_le_bytes());
        }
        planes.extend([200u8, 7]);
        assert_eq!(planes.len(), 2 * 35);
        let bytes = [head.as_bytes(), &compressed_section(&planes)].concat();
        let cloud = parse_pcd(&bytes).unwrap();
        assert_eq!(cloud.points, vec![[1.5, -2.25, -3.0], [-4.0, 5.5, 300.0]]);
        assert_eq!(
            cloud.colors,
            Some(vec![[0x10, 0x20, 0x30], [255, 255, 255]])
        );
        assert_eq!(cloud.organised, None);

        // The same points through the generic hand-built writer agree.
        let fields = [
            hf("normal_x", 'F', 4, 1),
            hf("x", 'F', 8, 1),
            hf("_", 'U', 1, 3),
            hf("y", 'F', 4, 1),
            hf("z", 'I', 2, 1),
            hf("rgb", 'F', 4, 1),
            hf("fpfh", 'F', 4, 3),
            hf("intensity", 'U', 1, 1),
        ];
        let row = |n: f64, p: [f64; 3], rgb: u32, f: [f64; 3], i: f64| {
            let mut r = vec![V::N(n), V::N(p[0]), V::N(7.0), V::N(7.0), V::N(7.0)];
            r.extend([V::N(p[1]), V::N(p[2]), V::Bits(rgb)]);
            r.extend(f.map(V::N));
            r.push(V::N(i));
            r
        };
        let rows = [
            row(9.0, [1.5, -2.25, -3.0], 0xff10_2030, [1.0, 2.0, 3.0], 200.0),
            row(-9.0, [-4.0, 5.5, 300.0], 0x00ff_ffff, [4.0, 5.0, 6.0], 7.0),
        ];
        for data in ["ascii", "binary", "binary_compressed"] {
            let built = hand_built(&fields, &rows, (2, 1), data);
            assert_eq!(parse_pcd(&built).unwrap(), cloud, "{data}");
        }
        // And its data section is byte for byte the one built above.
        let generic = hand_built(&fields, &rows, (2, 1), "binary_compressed");
        assert!(generic.ends_with(&bytes[head.len()..]));

        // A writer that stored the padding too makes the sizes disagree.
        let mut padded = planes.clone();
        padded.extend([0u8; 6]);
        let bytes = [head.as_bytes(), &compressed_section(&padded)].concat();
        let err = parse_err(&bytes);
        assert!(
            err.contains("the uncompressed size is 76 bytes, but POINTS 2 x 35 bytes per point")
                && err.contains("= 70"),
            "{err}"
        );
    }

    /// A raw LZF stream of literal runs only (the format's simplest valid stream), to make
    /// streams of chosen lengths.
    fn lzf_literals(bytes: &[u8]) -> Vec<u8> {
        bytes
            .chunks(32)
            .flat_map(|run| std::iter::once(run.len() as u8 - 1).chain(run.iter().copied()))
            .collect()
    }

    #[test]
    fn malformed_compressed_files_name_the_problem() {
        let head = |points: usize| {
            format!(
                "FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {points}\nHEIGHT 1\n\
                 POINTS {points}\nDATA binary_compressed\n"
            )
        };
        let file = |points: usize, data: &[u8]| [head(points).as_bytes(), data].concat();
        let sizes = |c: usize, u: usize, lzf: &[u8]| {
            [
                &(c as u32).to_le_bytes()[..],
                &(u as u32).to_le_bytes(),
                lzf,
            ]
            .concat()
        };
        let planes: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let good = compressed_section(&planes);
        let cloud = parse_pcd(&file(4, &good)).unwrap();
        assert_eq!(cloud.points[1], [1.0, 5.0, 9.0]);
        let lzf = &good[8..];
        let c = lzf.len();
        let short = lzf_literals(&planes[..40]);
        // All 48 bytes, then a back-reference copying 3 more.
        let long = [lzf_literals(&planes), vec![0x20, 0x00]].concat();
        // All 48 bytes, then a literal run of 4 more (which the decoder calls corrupt).
        let long_run = lzf_literals(&[planes.as_slice(), &[1, 2, 3, 4]].concat());
        assert_eq!(
            parse_pcd(&file(4, &sizes(c, 48, &[lzf, &[0; 9]].concat()))).unwrap(),
            cloud,
            "bytes after the block are ignored, as PCL does"
        );
        let cases: Vec<(Vec<u8>, String)> = vec![
            (
                file(4, &good[..5]),
                "binary_compressed data is 5 bytes, too short for its compressed and \
                 uncompressed sizes"
                    .into(),
            ),
            (
                file(4, &sizes(c, 47, lzf)),
                "the uncompressed size is 47 bytes, but POINTS 4 x 12 bytes per point \
                 (padding '_' fields are not stored) = 48"
                    .into(),
            ),
            (
                file(5, &good),
                "the uncompressed size is 48 bytes, but POINTS 5 x 12".into(),
            ),
            (
                file(4, &good[..good.len() - 3]),
                format!(
                    "the compressed size is {c} bytes, but only {} follow the sizes \
                     (truncated file?)",
                    c - 3
                ),
            ),
            (
                file(4, &sizes(short.len(), 48, &short)),
                "the LZF data decompresses to 40 bytes, not the 48 its uncompressed size says"
                    .into(),
            ),
            (
                file(4, &sizes(long.len(), 48, &long)),
                "the LZF data decompresses to more than the 48 bytes".into(),
            ),
            (
                file(4, &sizes(long_run.len(), 48, &long_run)),
                "the LZF data is corrupt".into(),
            ),
            (
                // A back-reference before any output.
                file(4, &sizes(20, 48, &[0x20, 0x00].repeat(10))),
                "the LZF data is corrupt (invalid compressed data)".into(),
            ),
            (
                // A literal run longer than the data left.
                file(4, &sizes(3, 48, &[31, 1, 2])),
                "the LZF data is corrupt".into(),
            ),
            (
                // Gigabytes claimed by a few bytes: refused before allocating.
                file(100_000_000, &sizes(10, 1_200_000_000, &[0; 10])),
                "10 compressed bytes cannot hold 1200000000 bytes (LZF expands at most 88 \
                 times)"
                    .into(),
            ),
            (
                // More data than a u32 size can describe.
                file(1_000_000_000, &sizes(10, 0, &[0; 10])),
                "the uncompressed size is 0 bytes, but POINTS 1000000000 x 12 bytes per \
                 point (padding '_' fields are not stored) = 12000000000"
                    .into(),
            ),
        ];
        for (bytes, want) in cases {
            let err = parse_err(&bytes);
            assert!(err.contains(&want), "{err:?} should contain {want:?}");
        }
        // A file's error names the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.pcd");
        std::fs::write(&path, file(4, &good[..good.len() - 1])).unwrap();
        let err = read_pcd(&path).unwrap_err().to_string();
        assert!(
            err.contains("cut.pcd") && err.contains("(truncated file?)"),
            "{err}"
        );
    }

    #[test]
    fn compressed_garbage_never_panics() {
        let mut cloud = sample_cloud(true);
        cloud.points.extend([[f32::NAN; 3], [1.0, 1.0, 1.0]]);
        cloud
            .colors
            .as_mut()
            .unwrap()
            .extend([[0, 0, 0], [9, 9, 9]]);
        let good = encode_pcd(&cloud, PcdEncoding::BinaryCompressed).unwrap();
        let data_at = good.len() - good.iter().rev().position(|&b| b == b'\n').unwrap();
        for cut in 0..good.len() {
            let _ = parse_pcd(&good[..cut]);
        }
        for at in data_at..good.len() {
            for flip in [0x01, 0x20, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                let _ = parse_pcd(&bad);
            }
        }
    }

    #[test]
    fn compressed_writer_uses_pcl_layout() {
        let cloud = sample_cloud(true);
        let bytes = encode_pcd(&cloud, PcdEncoding::BinaryCompressed).unwrap();
        let marker = b"DATA binary_compressed\n";
        let at = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .unwrap()
            + marker.len();
        let text = std::str::from_utf8(&bytes[..at]).unwrap();
        assert!(text.contains("FIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F U\n"));
        assert!(text.contains("WIDTH 3\nHEIGHT 1\n"));
        let word = |i: usize| u32::from_le_bytes(bytes[at + i..at + i + 4].try_into().unwrap());
        let (compressed, uncompressed) = (word(0) as usize, word(4) as usize);
        assert_eq!(uncompressed, 3 * 16);
        assert_eq!(bytes.len(), at + 8 + compressed);
        let mut planes = vec![0; uncompressed];
        let n = lzf_rust::decompress(&bytes[at + 8..], &mut planes).unwrap();
        assert_eq!(n, uncompressed);
        let mut want = Vec::new();
        for k in 0..3 {
            for p in &cloud.points {
                want.extend(p[k].to_le_bytes());
            }
        }
        for &c in cloud.colors.as_ref().unwrap() {
            want.extend(pack_rgb(c).to_le_bytes());
        }
        assert_eq!(planes, want);
    }

    #[test]
    fn incompressible_data_still_writes() {
        // Pseudo-random coordinates leave LZF nothing to reuse.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let points: Vec<[f32; 3]> = (0..2000)
            .map(|_| {
                [0; 3].map(|_: i32| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    f32::from_bits((state as u32 & 0x007f_ffff) | 0x3f80_0000)
                })
            })
            .collect();
        let cloud = Cloud::new(points);
        let bytes = encode_pcd(&cloud, PcdEncoding::BinaryCompressed).unwrap();
        assert_same(&parse_pcd(&bytes).unwrap(), &cloud, "incompressible");
    }

    #[test]
    fn organised_shape_is_written_back_and_checked() {
        let organised = Cloud {
            points: vec![
                [1.0, 2.0, 3.0],
                [f32::NAN; 3],
                [4.0, 5.0, 6.0],
                [7.0, 8.0, 9.0],
            ],
            colors: Some(vec![[1, 2, 3], [0, 0, 0], [4, 5, 6], [7, 8, 9]]),
            organised: Some(Organised {
                width: 2,
                height: 2,
            }),
        };
        for encoding in ENCODINGS {
            let bytes = encode_pcd(&organised, encoding).unwrap();
            assert!(
                String::from_utf8_lossy(&bytes).contains("\nWIDTH 2\nHEIGHT 2\n"),
                "{encoding:?}"
            );
            assert_same(
                &parse_pcd(&bytes).unwrap(),
                &organised,
                &format!("{encoding:?}"),
            );
            // WIDTH x 1 is not organised.
            let flat = Cloud {
                organised: None,
                ..organised.clone()
            };
            let bytes = encode_pcd(&flat, encoding).unwrap();
            assert!(String::from_utf8_lossy(&bytes).contains("\nWIDTH 4\nHEIGHT 1\n"));
            assert_same(&parse_pcd(&bytes).unwrap(), &flat, &format!("{encoding:?}"));
        }
        // A subset of a grid is not a grid.
        assert_eq!(organised.select(&[0, 1, 2, 3]).organised, None);
        // A shape that does not hold the points is refused by the writer and by validate.
        let bad = Cloud {
            points: vec![[0.0; 3]; 4],
            colors: None,
            organised: Some(Organised {
                width: 3,
                height: 2,
            }),
        };
        let err = encode_pcd(&bad, PcdEncoding::Binary)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("organised as 3 x 2 pixels but the cloud has 4 points"),
            "{err}"
        );
        let err = bad.validate("grid").unwrap_err().to_string();
        assert!(
            err.contains("grid: organised as 3 x 2 pixels but the cloud has 4 points"),
            "{err}"
        );
        let overflow = Cloud {
            organised: Some(Organised {
                width: usize::MAX,
                height: 2,
            }),
            ..bad.clone()
        };
        assert!(overflow.validate("grid").is_err());
        let good = Cloud {
            organised: Some(Organised {
                width: 2,
                height: 2,
            }),
            ..bad
        };
        good.validate("grid").unwrap();
    }

    // ---- Real sensor scans (PCL's own test data), when ../shared is present ----

    #[test]
    fn real_scans_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real");
        if !dir.is_dir() {
            eprintln!("skipping real_scans_load: {} is absent", dir.display());
            return;
        }
        // (file, colour field line, TYPE line, finite points where known)
        let scans = [
            (
                "kinect_table_frame.pcd",
                "FIELDS x y z rgba\n",
                "TYPE F F F U\n",
                Some(271_328),
            ),
            ("office1.pcd", "FIELDS x y z rgb\n", "TYPE F F F F\n", None),
        ];
        for (name, fields, types, finite_want) in scans {
            let path = dir.join(name);
            let raw = std::fs::read(&path).unwrap();
            let head = String::from_utf8_lossy(&raw[..300.min(raw.len())]).into_owned();
            assert!(
                head.contains(fields) && head.contains(types),
                "{name}: {head}"
            );
            assert!(head.contains("DATA binary_compressed\n"), "{name}");

            let start = std::time::Instant::now();
            let cloud = read_pcd(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let took = start.elapsed();

            assert_eq!(cloud.len(), 307_200, "{name}");
            assert_eq!(
                cloud.organised,
                Some(Organised {
                    width: 640,
                    height: 480
                }),
                "{name}"
            );
            let finite: Vec<&[f32; 3]> = cloud
                .points
                .iter()
                .filter(|p| p.iter().all(|c| c.is_finite()))
                .collect();
            if let Some(want) = finite_want {
                assert_eq!(finite.len(), want, "{name}: finite points");
            }
            assert!(
                finite.len() > 100_000 && finite.len() < cloud.len(),
                "{name}: {} finite points",
                finite.len()
            );
            // Invalid pixels are NaN in all three coordinates, never half-valid.
            assert!(cloud
                .points
                .iter()
                .all(|p| p.iter().all(|c| c.is_finite()) || p.iter().all(|c| c.is_nan())));
            // Optical frame: depth (z) forward, within a depth camera's range.
            assert!(
                finite.iter().all(|p| p[2] > 0.0 && p[2] < 20.0),
                "{name}: depth out of range"
            );
            let colors = cloud.colors.as_ref().expect("a colour field");
            assert_eq!(colors.len(), cloud.len());
            let distinct: std::collections::HashSet<&[u8; 3]> = colors.iter().collect();
            assert!(distinct.len() > 1000, "{name}: {} colours", distinct.len());
            eprintln!(
                "{name}: {} points, {} finite, {} colours, {} x {}, read in {:.1} ms",
                cloud.len(),
                finite.len(),
                distinct.len(),
                640,
                480,
                took.as_secs_f64() * 1e3
            );

            // Written back compressed, it reads the same.
            let again = encode_pcd(&cloud, PcdEncoding::BinaryCompressed).unwrap();
            assert_same(&parse_pcd(&again).unwrap(), &cloud, name);
            let (dense, kept) = cloud.finite_points();
            assert_eq!(dense.len(), finite.len());
            assert_eq!(kept.len(), finite.len());
            dense.validate(name).unwrap();
        }
    }
}
