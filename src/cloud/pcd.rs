//! PCD (Point Cloud Library) files: ASCII and binary, x y z and optional rgb.
//!
//! Only x, y, z and a packed rgb/rgba field are kept; every other field is skipped, so
//! clouds saved with normals, intensities or padding fields load without conversion.
use super::io_common::{
    ascii_text, colors_to_write, parse_with, read_with, write_points_ascii, write_points_le,
    HeaderLines, ParseResult, Scalar,
};
use super::Cloud;
use crate::error::{write_file_atomic, Result};
use std::path::Path;

/// How `write_pcd` encodes the data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcdEncoding {
    Ascii,
    Binary,
}

/// Reads a PCD file; a malformed one gives `Error::Format` naming the file.
pub fn read_pcd(path: &Path) -> Result<Cloud> {
    read_with(path, parse)
}

/// Parses a whole PCD file held in memory. Non-finite points (PCL's marker for invalid
/// pixels of an organised cloud) are kept, so indices still match the sensor grid; see
/// `drop_non_finite`. Malformed data gives `Error::Parse` with `what` "PCD data" and the
/// problem as its source.
pub fn parse_pcd(bytes: &[u8]) -> Result<Cloud> {
    parse_with(bytes, "PCD data", parse)
}

fn parse(bytes: &[u8]) -> ParseResult<Cloud> {
    let (header, data) = parse_header(bytes)?;
    let layout = Layout::new(&header)?;
    match header.data.as_str() {
        "ascii" => parse_ascii(&header, &layout, data),
        "binary" => parse_binary(&header, &layout, data),
        "binary_compressed" => Err(
            "DATA binary_compressed is not supported; re-save the file as ascii or binary \
             (e.g. with pcl_convert_pcd_ascii_binary)"
                .into(),
        ),
        other => Err(format!(
            "unknown DATA kind '{other}' (expected ascii, binary or binary_compressed)"
        )),
    }
}

/// Writes `cloud` the way the KeypointNet dataset stores its clouds (x y z as F4, rgb as U4).
pub fn write_pcd(path: &Path, cloud: &Cloud, encoding: PcdEncoding) -> Result<()> {
    write_file_atomic(path, &encode_pcd(cloud, encoding)?)
}

/// The cloud without its non-finite points, and for each kept point its original index
/// (so per-point data such as labels can follow).
pub fn drop_non_finite(cloud: &Cloud) -> (Cloud, Vec<usize>) {
    let kept: Vec<usize> = (0..cloud.len())
        .filter(|&i| cloud.points[i].iter().all(|c| c.is_finite()))
        .collect();
    (cloud.select(&kept), kept)
}

fn encode_pcd(cloud: &Cloud, encoding: PcdEncoding) -> Result<Vec<u8>> {
    use std::fmt::Write as _;
    let n = cloud.len();
    let colors = colors_to_write(cloud, "PCD")?;
    let (fields, size, ty, count) = if colors.is_some() {
        ("x y z rgb", "4 4 4 4", "F F F U", "1 1 1 1")
    } else {
        ("x y z", "4 4 4", "F F F", "1 1 1")
    };
    let data = match encoding {
        PcdEncoding::Ascii => "ascii",
        PcdEncoding::Binary => "binary",
    };
    let mut text = format!(
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {fields}\n\
         SIZE {size}\nTYPE {ty}\nCOUNT {count}\nWIDTH {n}\nHEIGHT 1\n\
         VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n"
    );
    let pack = |c: [u8; 3]| (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
    match encoding {
        PcdEncoding::Ascii => {
            write_points_ascii(&mut text, cloud, |t, c| {
                let _ = write!(t, " {}", pack(c));
            });
            Ok(text.into_bytes())
        }
        PcdEncoding::Binary => {
            let mut out = text.into_bytes();
            out.reserve(n * if colors.is_some() { 16 } else { 12 });
            write_points_le(&mut out, cloud, |o, c| {
                o.extend_from_slice(&pack(c).to_le_bytes())
            });
            Ok(out)
        }
    }
}

#[derive(Debug)]
struct Field {
    name: String,
    /// TYPE and SIZE together.
    ty: Scalar,
    count: usize,
}

#[derive(Debug)]
struct Header {
    fields: Vec<Field>,
    /// Lines up to and including DATA, so ascii errors can name file line numbers.
    lines: usize,
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

/// Where the fields we keep sit within one point, in values (ascii) and bytes (binary).
struct Layout {
    /// (value index, byte offset) of x, y, z.
    xyz: [(usize, usize); 3],
    rgb: Option<(usize, usize)>,
    values_per_point: usize,
    bytes_per_point: usize,
}

impl Layout {
    fn new(header: &Header) -> ParseResult<Layout> {
        let mut value = 0usize;
        let mut byte = 0usize;
        let mut xyz = [None; 3];
        let mut rgb = None;
        let mut rgba = None;
        for f in &header.fields {
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
                *slot = Some((value, byte));
            }
            value = value.checked_add(f.count).ok_or("COUNT values overflow")?;
            byte =
                f.ty.size()
                    .checked_mul(f.count)
                    .and_then(|b| byte.checked_add(b))
                    .ok_or("SIZE * COUNT values overflow")?;
        }
        let mut found = [(0, 0); 3];
        for (k, axis) in ["x", "y", "z"].iter().enumerate() {
            found[k] = xyz[k].ok_or_else(|| format!("FIELDS has no '{axis}' field"))?;
        }
        Ok(Layout {
            xyz: found,
            rgb: rgb.or(rgba),
            values_per_point: value,
            bytes_per_point: byte,
        })
    }
}

/// The field that starts at value index `value` (only called for x, y, z, rgb).
fn field_at(header: &Header, value: usize) -> &Field {
    let mut v = 0;
    for f in &header.fields {
        if v == value {
            return f;
        }
        v += f.count;
    }
    unreachable!("layout indices come from the same fields")
}

fn unpack_rgb(packed: u32) -> [u8; 3] {
    [(packed >> 16) as u8, (packed >> 8) as u8, packed as u8]
}

fn parse_ascii(header: &Header, layout: &Layout, data: &[u8]) -> ParseResult<Cloud> {
    let text = ascii_text(data, "data")?;
    let rgb_field = layout.rgb.map(|(v, _)| field_at(header, v));
    let xyz_fields: Vec<&Field> = layout
        .xyz
        .iter()
        .map(|&(v, _)| field_at(header, v))
        .collect();
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
        for (k, &(v, _)) in layout.xyz.iter().enumerate() {
            let tok = values[v];
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
        if let (Some(colors), Some((v, _)), Some(f)) = (&mut colors, layout.rgb, rgb_field) {
            let tok = values[v];
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
    Ok(Cloud { points, colors })
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
    let xyz_fields: Vec<&Field> = layout
        .xyz
        .iter()
        .map(|&(v, _)| field_at(header, v))
        .collect();
    let mut points = Vec::with_capacity(header.points);
    let mut colors = layout.rgb.map(|_| Vec::with_capacity(header.points));
    for rec in data[..needed]
        .chunks_exact(stride.max(1))
        .take(header.points)
    {
        let mut p = [0f32; 3];
        for k in 0..3 {
            let off = layout.xyz[k].1;
            p[k] = xyz_fields[k].ty.decode(&rec[off..], false) as f32;
        }
        points.push(p);
        if let (Some(colors), Some((_, off))) = (&mut colors, layout.rgb) {
            let b = &rec[off..off + 4];
            colors.push(unpack_rgb(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
    }
    Ok(Cloud { points, colors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

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
        Cloud { points, colors }
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
        assert!(cloud.points[1].iter().all(|c| c.is_nan()));
        let err = cloud.validate("organised").unwrap_err();
        assert!(err.to_string().contains("point 1"), "{err}");
        let (finite, kept) = drop_non_finite(&cloud);
        assert_eq!(kept, vec![0, 2, 3]);
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
        for encoding in [PcdEncoding::Ascii, PcdEncoding::Binary] {
            for rgb in [false, true] {
                let cloud = Cloud {
                    points: vec![],
                    colors: rgb.then(Vec::new),
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
                "not supported",
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
}
