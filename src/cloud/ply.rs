//! PLY files: ascii and binary (little and big endian), vertex x y z (+ rgb), faces when
//! present.
//!
//! Any other element or property is skipped, so files from scanners and mesh tools (with
//! normals, texture coordinates, edges...) load as they are.
use super::io_common::{
    ascii_text, colors_to_write, parse_with, read_with, write_points_ascii, write_points_le,
    HeaderLines, ParseResult, Scalar,
};
use super::Cloud;
use crate::error::{write_file_atomic, Result};
use std::path::Path;

/// A triangle mesh, for surface sampling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriMesh {
    pub vertices: Vec<[f32; 3]>,
    pub faces: Vec<[u32; 3]>,
}

/// What a PLY file holds: its vertices as a cloud, and faces when it is a mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct PlyData {
    pub cloud: Cloud,
    /// `Some` when the file has a `face` element; polygons are split into triangle fans.
    pub faces: Option<Vec<[u32; 3]>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlyEncoding {
    Ascii,
    BinaryLittleEndian,
}

/// Reads a PLY file; a malformed one gives `Error::Format` naming the file.
pub fn read_ply(path: &Path) -> Result<PlyData> {
    read_with(path, parse)
}

/// Parses a whole PLY file held in memory (ascii, binary_little_endian or
/// binary_big_endian). Malformed data gives `Error::Parse` with `what` "PLY data" and the
/// problem as its source.
pub fn parse_ply(bytes: &[u8]) -> Result<PlyData> {
    parse_with(bytes, "PLY data", parse)
}

fn parse(bytes: &[u8]) -> ParseResult<PlyData> {
    let (header, body) = parse_header(bytes)?;
    let plan = Plan::new(&header)?;
    let mut sink = Sink::new(&header, &plan, body.len());
    match header.format {
        Format::Ascii => read_ascii(&header, &plan, body, header.lines, &mut sink)?,
        Format::Binary { big_endian } => read_binary(&header, &plan, body, big_endian, &mut sink)?,
    }
    sink.finish()
}

/// Writes vertices (with colours when present) and optional triangles.
pub fn write_ply(
    path: &Path,
    cloud: &Cloud,
    faces: Option<&[[u32; 3]]>,
    encoding: PlyEncoding,
) -> Result<()> {
    write_file_atomic(path, &encode_ply(cloud, faces, encoding)?)
}

impl TriMesh {
    /// The mesh in a PLY file; `None` when it has no faces (a plain point cloud).
    pub fn from_ply(data: PlyData) -> Option<TriMesh> {
        let faces = data.faces.filter(|f| !f.is_empty())?;
        Some(TriMesh {
            vertices: data.cloud.points,
            faces,
        })
    }

    /// `n` points uniformly distributed over the surface: a triangle is picked with
    /// probability proportional to its area, then a uniform point inside it. Zero-area faces
    /// (and faces naming missing vertices) are never picked; a mesh without area gives an
    /// empty cloud.
    pub fn sample_surface<R: rand::Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Cloud {
        let tri = |f: &[u32; 3]| -> Option<[[f32; 3]; 3]> {
            let v = |i: u32| self.vertices.get(i as usize).copied();
            Some([v(f[0])?, v(f[1])?, v(f[2])?])
        };
        // Running sum of areas: a uniform draw in [0, total) lands in face i's interval
        // with probability area_i / total.
        let mut cumulative = Vec::with_capacity(self.faces.len());
        let mut total = 0f64;
        for f in &self.faces {
            let area = tri(f).map_or(0.0, |t| triangle_area(&t));
            if area.is_finite() && area > 0.0 {
                total += area;
            }
            cumulative.push(total);
        }
        if n == 0 || total <= 0.0 {
            return Cloud::default();
        }
        // Rounding can make `u * total` reach `total`; the last face with area takes it.
        let last = cumulative
            .iter()
            .rposition(|&c| c < total)
            .map_or(0, |i| i + 1);
        let mut points = Vec::with_capacity(n);
        for _ in 0..n {
            let r = rng.random::<f64>() * total;
            let i = cumulative.partition_point(|&c| c <= r).min(last);
            let [a, b, c] = tri(&self.faces[i]).expect("picked faces have area");
            // sqrt makes the barycentric draw uniform over the triangle, not clustered at `a`.
            let s = rng.random::<f32>().sqrt();
            let t = rng.random::<f32>();
            let (wa, wb, wc) = (1.0 - s, s * (1.0 - t), s * t);
            points.push(std::array::from_fn(|k| wa * a[k] + wb * b[k] + wc * c[k]));
        }
        Cloud::new(points)
    }
}

fn triangle_area(t: &[[f32; 3]; 3]) -> f64 {
    let d = |p: &[f32; 3], q: &[f32; 3]| -> [f64; 3] {
        std::array::from_fn(|k| p[k] as f64 - q[k] as f64)
    };
    let (u, v) = (d(&t[1], &t[0]), d(&t[2], &t[0]));
    let c = [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ];
    0.5 * (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt()
}

fn encode_ply(cloud: &Cloud, faces: Option<&[[u32; 3]]>, encoding: PlyEncoding) -> Result<Vec<u8>> {
    use std::fmt::Write as _;
    let n = cloud.len();
    let colors = colors_to_write(cloud, "PLY")?;
    let faces = faces.unwrap_or(&[]);
    // Indices are written as `int`, the type every PLY reader accepts.
    if !faces.is_empty() && n > i32::MAX as usize {
        return Err(crate::Error::invalid(format!(
            "cannot write PLY: {n} vertices do not fit int face indices"
        )));
    }
    if let Some((i, f)) = faces
        .iter()
        .enumerate()
        .find(|(_, f)| f.iter().any(|&v| v as usize >= n))
    {
        return Err(crate::Error::invalid(format!(
            "cannot write PLY: face {i} {f:?} names a vertex beyond the {n} vertices"
        )));
    }
    let format = match encoding {
        PlyEncoding::Ascii => "ascii",
        PlyEncoding::BinaryLittleEndian => "binary_little_endian",
    };
    let mut head = format!(
        "ply\nformat {format} 1.0\ncomment written by semcorr\nelement vertex {n}\n\
         property float x\nproperty float y\nproperty float z\n"
    );
    if colors.is_some() {
        head.push_str("property uchar red\nproperty uchar green\nproperty uchar blue\n");
    }
    if !faces.is_empty() {
        let _ = write!(
            head,
            "element face {}\nproperty list uchar int vertex_indices\n",
            faces.len()
        );
    }
    head.push_str("end_header\n");
    match encoding {
        PlyEncoding::Ascii => {
            write_points_ascii(&mut head, cloud, |t, c| {
                let _ = write!(t, " {} {} {}", c[0], c[1], c[2]);
            });
            for f in faces {
                let _ = writeln!(head, "3 {} {} {}", f[0], f[1], f[2]);
            }
            Ok(head.into_bytes())
        }
        PlyEncoding::BinaryLittleEndian => {
            let mut out = head.into_bytes();
            out.reserve(n * 15 + faces.len() * 13);
            write_points_le(&mut out, cloud, |o, c| o.extend_from_slice(&c));
            for f in faces {
                out.push(3);
                for &v in f {
                    out.extend_from_slice(&(v as i32).to_le_bytes());
                }
            }
            Ok(out)
        }
    }
}

/// The binary type a PLY type name stands for.
fn scalar_type(name: &str) -> Option<Scalar> {
    Some(match name {
        "char" | "int8" => Scalar::I8,
        "uchar" | "uint8" => Scalar::U8,
        "short" | "int16" => Scalar::I16,
        "ushort" | "uint16" => Scalar::U16,
        "int" | "int32" => Scalar::I32,
        "uint" | "uint32" => Scalar::U32,
        "float" | "float32" => Scalar::F32,
        "double" | "float64" => Scalar::F64,
        _ => return None,
    })
}

#[derive(Debug, Clone)]
enum Property {
    Scalar {
        name: String,
        ty: Scalar,
    },
    List {
        name: String,
        count: Scalar,
        item: Scalar,
    },
}

impl Property {
    fn name(&self) -> &str {
        match self {
            Property::Scalar { name, .. } | Property::List { name, .. } => name,
        }
    }
}

#[derive(Debug)]
struct Element {
    name: String,
    count: usize,
    properties: Vec<Property>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ascii,
    Binary { big_endian: bool },
}

#[derive(Debug)]
struct Header {
    format: Format,
    elements: Vec<Element>,
    /// Lines up to and including end_header, so ascii errors can name file line numbers.
    lines: usize,
}

fn parse_header(bytes: &[u8]) -> ParseResult<(Header, &[u8])> {
    let mut format = None;
    let mut elements: Vec<Element> = Vec::new();
    let mut lines = HeaderLines::new(bytes);
    while let Some(line) = lines.next() {
        let (line_no, line) = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if line_no == 1 {
            if words != ["ply"] {
                return Err("not a PLY file (the first line is not 'ply')".into());
            }
            continue;
        }
        let bad = |what: &str| format!("header line {line_no}: {what}: '{}'", line.trim());
        match words.as_slice() {
            [] | ["comment", ..] | ["obj_info", ..] => {}
            ["format", kind, _version] => {
                format = Some(match *kind {
                    "ascii" => Format::Ascii,
                    "binary_little_endian" => Format::Binary { big_endian: false },
                    "binary_big_endian" => Format::Binary { big_endian: true },
                    _ => return Err(bad("unknown format")),
                })
            }
            ["element", name, count] => elements.push(Element {
                name: name.to_string(),
                count: count.parse().map_err(|_| bad("bad element count"))?,
                properties: Vec::new(),
            }),
            ["property", rest @ ..] => {
                let prop = match rest {
                    ["list", count, item, name] => Property::List {
                        name: name.to_string(),
                        count: scalar_type(count).ok_or_else(|| bad("unknown list count type"))?,
                        item: scalar_type(item).ok_or_else(|| bad("unknown list item type"))?,
                    },
                    [ty, name] => Property::Scalar {
                        name: name.to_string(),
                        ty: scalar_type(ty).ok_or_else(|| bad("unknown property type"))?,
                    },
                    _ => return Err(bad("malformed property")),
                };
                elements
                    .last_mut()
                    .ok_or_else(|| bad("property before any element"))?
                    .properties
                    .push(prop);
            }
            ["end_header"] => {
                let format = format.ok_or("the header has no format line")?;
                let header = Header {
                    format,
                    elements,
                    lines: line_no,
                };
                return Ok((header, lines.rest()));
            }
            _ => return Err(bad("unrecognised header line")),
        }
    }
    Err(if lines.line_no() == 0 {
        "the file is empty".into()
    } else {
        "the header has no end_header line".into()
    })
}

/// What to pick out of the elements we read: indices into the header.
struct Plan {
    vertex: usize,
    /// Property indices of x, y, z within the vertex element.
    xyz: [usize; 3],
    rgb: Option<[usize; 3]>,
    /// (element index, property index) of the face index list.
    face: Option<(usize, usize)>,
}

impl Plan {
    fn new(header: &Header) -> ParseResult<Plan> {
        let vertex = header
            .elements
            .iter()
            .position(|e| e.name == "vertex")
            .ok_or("the header has no vertex element")?;
        let props = &header.elements[vertex].properties;
        let scalar = |name: &str| -> ParseResult<Option<usize>> {
            match props.iter().position(|p| p.name() == name) {
                None => Ok(None),
                Some(i) => match props[i] {
                    Property::Scalar { .. } => Ok(Some(i)),
                    Property::List { .. } => {
                        Err(format!("vertex property '{name}' is a list, not a number"))
                    }
                },
            }
        };
        let mut xyz = [0; 3];
        for (k, axis) in ["x", "y", "z"].iter().enumerate() {
            xyz[k] =
                scalar(axis)?.ok_or_else(|| format!("element vertex has no '{axis}' property"))?;
        }
        let rgb = match (scalar("red")?, scalar("green")?, scalar("blue")?) {
            (Some(r), Some(g), Some(b)) => Some([r, g, b]),
            _ => None,
        };
        let face = match header.elements.iter().position(|e| e.name == "face") {
            None => None,
            Some(e) => {
                let props = &header.elements[e].properties;
                let p = props
                    .iter()
                    .position(|p| matches!(p.name(), "vertex_indices" | "vertex_index"));
                match p {
                    Some(p) if matches!(props[p], Property::List { .. }) => Some((e, p)),
                    Some(_) => return Err("face property vertex_indices is not a list".into()),
                    None if header.elements[e].count == 0 => None,
                    None => return Err("element face has no vertex_indices list property".into()),
                }
            }
        };
        Ok(Plan {
            vertex,
            xyz,
            rgb,
            face,
        })
    }
}

/// Collects what the plan picks while the body is read.
struct Sink {
    points: Vec<[f32; 3]>,
    colors: Option<Vec<[u8; 3]>>,
    /// Float colours are in [0, 1] by convention and get scaled to 0..=255.
    rgb_float: bool,
    faces: Option<Vec<[u32; 3]>>,
}

impl Sink {
    fn new(header: &Header, plan: &Plan, body_len: usize) -> Sink {
        // Counts come from the header: never trust them for more memory than the body holds.
        let nv = header.elements[plan.vertex].count.min(body_len);
        let vprops = &header.elements[plan.vertex].properties;
        let rgb_float = plan.rgb.is_some_and(|rgb| {
            rgb.iter()
                .any(|&i| matches!(vprops[i], Property::Scalar { ty, .. } if ty.is_float()))
        });
        Sink {
            points: Vec::with_capacity(nv),
            colors: plan.rgb.map(|_| Vec::with_capacity(nv)),
            rgb_float,
            faces: plan
                .face
                .map(|(e, _)| Vec::with_capacity(header.elements[e].count.min(body_len))),
        }
    }

    /// Takes one vertex from its scalar property values (lists hold NaN, never used).
    fn vertex(&mut self, plan: &Plan, values: &[f64]) {
        self.points
            .push(std::array::from_fn(|k| values[plan.xyz[k]] as f32));
        if let (Some(colors), Some(rgb)) = (&mut self.colors, plan.rgb) {
            let scale = if self.rgb_float { 255.0 } else { 1.0 };
            colors.push(std::array::from_fn(|k| {
                (values[rgb[k]] * scale).round().clamp(0.0, 255.0) as u8
            }));
        }
    }

    /// Takes one polygon, as a triangle fan around its first vertex; polygons with fewer
    /// than three vertices have no area and are dropped.
    fn polygon(&mut self, indices: &[u32]) {
        if let Some(faces) = &mut self.faces {
            for w in indices.windows(2).skip(1) {
                faces.push([indices[0], w[0], w[1]]);
            }
        }
    }

    fn finish(self) -> ParseResult<PlyData> {
        let nv = self.points.len();
        if let Some(faces) = &self.faces {
            if let Some(f) = faces.iter().find(|f| f.iter().any(|&v| v as usize >= nv)) {
                return Err(format!(
                    "face {f:?} names a vertex index beyond the {nv} vertices"
                ));
            }
        }
        Ok(PlyData {
            cloud: Cloud {
                points: self.points,
                colors: self.colors,
                organised: None,
            },
            faces: self.faces,
        })
    }
}

/// A list length or index, which must be a non-negative integer.
fn as_index(v: f64, what: &str, at: impl Fn() -> String) -> ParseResult<u32> {
    if v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0 {
        Ok(v as u32)
    } else {
        Err(format!(
            "{}: {what} {v} is not a non-negative integer",
            at()
        ))
    }
}

fn read_ascii(
    header: &Header,
    plan: &Plan,
    body: &[u8],
    header_lines: usize,
    sink: &mut Sink,
) -> ParseResult<()> {
    let text = ascii_text(body, "body")?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (header_lines + i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let mut values = Vec::new();
    let mut indices = Vec::new();
    for (ei, element) in header.elements.iter().enumerate() {
        let is_vertex = ei == plan.vertex;
        let face_prop = plan.face.filter(|&(e, _)| e == ei).map(|(_, p)| p);
        for instance in 0..element.count {
            let (line_no, line) = lines.next().ok_or_else(|| {
                format!(
                    "the file ends before element '{}' {instance} of {}",
                    element.name, element.count
                )
            })?;
            let at = || format!("line {line_no} (element '{}' {instance})", element.name);
            let mut tokens = line.split_whitespace();
            let mut next = |what: &str| -> ParseResult<f64> {
                let tok = tokens
                    .next()
                    .ok_or_else(|| format!("{}: too few values, missing {what}", at()))?;
                tok.parse::<f64>()
                    .map_err(|_| format!("{}: cannot parse '{tok}' as a number", at()))
            };
            values.clear();
            for (pi, prop) in element.properties.iter().enumerate() {
                match prop {
                    Property::Scalar { name, .. } => values.push(next(name)?),
                    Property::List { name, .. } => {
                        let len = as_index(next(name)?, "list length", at)?;
                        indices.clear();
                        for _ in 0..len {
                            let v = next(name)?;
                            if face_prop == Some(pi) {
                                indices.push(as_index(v, "vertex index", at)?);
                            }
                        }
                        if face_prop == Some(pi) {
                            sink.polygon(&indices);
                        }
                        values.push(f64::NAN);
                    }
                }
            }
            if tokens.next().is_some() {
                return Err(format!(
                    "{}: more values than the {} properties declare",
                    at(),
                    element.properties.len()
                ));
            }
            if is_vertex {
                sink.vertex(plan, &values);
            }
        }
    }
    Ok(())
}

/// Reads binary values front to back, naming the element being read when the body ends.
struct Cursor<'a> {
    body: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl Cursor<'_> {
    fn bytes(&mut self, n: usize, element: &Element, instance: usize) -> ParseResult<&[u8]> {
        if self.body.len() - self.pos < n {
            return Err(format!(
                "the file is truncated in element '{}' {instance} of {} (the body has {} bytes)",
                element.name,
                element.count,
                self.body.len()
            ));
        }
        let b = &self.body[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    fn value(&mut self, ty: Scalar, element: &Element, instance: usize) -> ParseResult<f64> {
        let big_endian = self.big_endian;
        Ok(ty.decode(self.bytes(ty.size(), element, instance)?, big_endian))
    }
}

fn read_binary(
    header: &Header,
    plan: &Plan,
    body: &[u8],
    big_endian: bool,
    sink: &mut Sink,
) -> ParseResult<()> {
    let mut cur = Cursor {
        body,
        pos: 0,
        big_endian,
    };
    let mut values = Vec::new();
    let mut indices = Vec::new();
    for (ei, element) in header.elements.iter().enumerate() {
        let is_vertex = ei == plan.vertex;
        let face_prop = plan.face.filter(|&(e, _)| e == ei).map(|(_, p)| p);
        for instance in 0..element.count {
            let at = || format!("element '{}' {instance}", element.name);
            values.clear();
            for (pi, prop) in element.properties.iter().enumerate() {
                match *prop {
                    Property::Scalar { ty, .. } => values.push(cur.value(ty, element, instance)?),
                    Property::List { count, item, .. } => {
                        let len =
                            as_index(cur.value(count, element, instance)?, "list length", at)?;
                        if face_prop == Some(pi) {
                            indices.clear();
                            for _ in 0..len {
                                let v = cur.value(item, element, instance)?;
                                indices.push(as_index(v, "vertex index", at)?);
                            }
                            sink.polygon(&indices);
                        } else {
                            // Skip the whole list at once.
                            let skip = (len as usize).saturating_mul(item.size());
                            cur.bytes(skip, element, instance)?;
                        }
                        values.push(f64::NAN);
                    }
                }
            }
            if is_vertex {
                sink.vertex(plan, &values);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use rand::SeedableRng;

    /// The parser's message in an error from `parse_ply`, checking it names the data.
    fn message(err: Error) -> String {
        match err {
            Error::Parse { what, source } => {
                assert_eq!(what, "PLY data");
                source.to_string()
            }
            other => panic!("expected Error::Parse, got {other:?}"),
        }
    }

    fn parse_err(bytes: &[u8]) -> String {
        message(parse_ply(bytes).unwrap_err())
    }

    fn tetra() -> (Cloud, Vec<[u32; 3]>) {
        let cloud = Cloud {
            points: vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.1, -0.0],
                [1.0 / 3.0, 1.0, 1e-30],
                [0.0, 0.0, 1.0],
            ],
            colors: Some(vec![[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3]]),
            organised: None,
        };
        (cloud, vec![[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    }

    fn round_trip(encoding: PlyEncoding) {
        let dir = tempfile::tempdir().unwrap();
        let (cloud, faces) = tetra();
        let path = dir.path().join("mesh.ply");
        write_ply(&path, &cloud, Some(&faces), encoding).unwrap();
        let back = read_ply(&path).unwrap();
        assert_eq!(back.cloud, cloud);
        assert_eq!(back.faces.as_deref(), Some(&faces[..]));
        for (a, b) in back.cloud.points.iter().zip(&cloud.points) {
            assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
        }
        // Without faces or colours.
        let plain = Cloud::new(cloud.points.clone());
        write_ply(&path, &plain, None, encoding).unwrap();
        let back = read_ply(&path).unwrap();
        assert_eq!(
            back,
            PlyData {
                cloud: plain,
                faces: None
            }
        );
    }

    #[test]
    fn round_trip_ascii_with_faces() {
        round_trip(PlyEncoding::Ascii);
    }

    #[test]
    fn round_trip_binary_with_faces() {
        round_trip(PlyEncoding::BinaryLittleEndian);
    }

    #[test]
    fn write_rejects_bad_face_index() {
        let (cloud, _) = tetra();
        let err = encode_ply(&cloud, Some(&[[0, 1, 4]]), PlyEncoding::Ascii).unwrap_err();
        assert!(err.to_string().contains("face 0 [0, 1, 4]"), "{err}");
    }

    #[test]
    fn quad_is_split_into_two_triangles() {
        let text = "ply\nformat ascii 1.0\ncomment a unit square\nobj_info made by hand\n\
                    element vertex 4\nproperty float32 x\nproperty float32 y\nproperty float32 z\n\
                    element face 1\nproperty list uint8 int32 vertex_index\nend_header\n\
                    0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n";
        let data = parse_ply(text.as_bytes()).unwrap();
        assert_eq!(data.faces, Some(vec![[0, 1, 2], [0, 2, 3]]));
        let mesh = TriMesh::from_ply(data).unwrap();
        assert_eq!(mesh.vertices.len(), 4);
    }

    #[test]
    fn float_colours_and_double_coordinates() {
        let text = "ply\r\nformat ascii 1.0\r\nelement vertex 2\r\nproperty double x\r\n\
                    property double y\r\nproperty double z\r\nproperty float red\r\n\
                    property float green\r\nproperty float blue\r\nend_header\r\n\
                    0.5 1 2 1 0.5 0\r\n3 4 5 0 0 2\r\n";
        let data = parse_ply(text.as_bytes()).unwrap();
        assert_eq!(data.cloud.points, vec![[0.5, 1.0, 2.0], [3.0, 4.0, 5.0]]);
        assert_eq!(data.cloud.colors, Some(vec![[255, 128, 0], [0, 0, 255]]));
        assert_eq!(data.faces, None);
        assert_eq!(TriMesh::from_ply(data), None);
    }

    /// A binary mesh with an extra element before and after the vertices, extra vertex
    /// properties (scalar and list) and extra face properties.
    fn exotic_binary(big_endian: bool) -> Vec<u8> {
        let format = if big_endian {
            "binary_big_endian"
        } else {
            "binary_little_endian"
        };
        let mut b = format!(
            "ply\nformat {format} 1.0\ncomment extras everywhere\n\
             element material 1\nproperty list uchar float weights\nproperty short id\n\
             element vertex 3\nproperty uchar flags\nproperty double x\nproperty float y\n\
             property list ushort int extra\nproperty float z\nproperty uchar red\n\
             property uchar green\nproperty uchar blue\nproperty float nx\n\
             element face 1\nproperty uchar kind\nproperty list int uint vertex_indices\n\
             property float quality\n\
             element edge 2\nproperty int vertex1\nproperty int vertex2\nend_header\n"
        )
        .into_bytes();
        macro_rules! put {
            ($v:expr) => {
                if big_endian {
                    b.extend_from_slice(&$v.to_be_bytes())
                } else {
                    b.extend_from_slice(&$v.to_le_bytes())
                }
            };
        }
        put!(2u8);
        put!(0.25f32);
        put!(0.75f32);
        put!(-7i16);
        for i in 0..3u8 {
            put!(9u8);
            put!(f64::from(i) + 0.5);
            put!(f32::from(i) * 2.0);
            put!(u16::from(i));
            for _ in 0..i {
                put!(-1i32);
            }
            put!(-(f32::from(i)));
            put!(10 * i);
            put!(20 * i);
            put!(30 * i);
            put!(1.0f32);
        }
        put!(4u8);
        put!(3i32);
        put!(2u32);
        put!(1u32);
        put!(0u32);
        put!(0.5f32);
        for v in [0i32, 1, 1, 2] {
            put!(v);
        }
        b
    }

    #[test]
    fn binary_extra_elements_and_properties() {
        for big_endian in [false, true] {
            let data = parse_ply(&exotic_binary(big_endian)).unwrap();
            assert_eq!(
                data.cloud.points,
                vec![[0.5, 0.0, 0.0], [1.5, 2.0, -1.0], [2.5, 4.0, -2.0]]
            );
            assert_eq!(
                data.cloud.colors,
                Some(vec![[0, 0, 0], [10, 20, 30], [20, 40, 60]])
            );
            assert_eq!(data.faces, Some(vec![[2, 1, 0]]));
        }
    }

    #[test]
    fn truncated_binary_is_an_error() {
        let bytes = exotic_binary(false);
        let err = parse_err(&bytes[..bytes.len() - 3]);
        assert!(err.contains("truncated in element 'edge' 1 of 2"), "{err}");
        // Every cut fails cleanly, never panics.
        let body = bytes
            .windows(11)
            .position(|w| w == b"end_header\n")
            .unwrap()
            + 11;
        for cut in 0..bytes.len() {
            let r = parse_ply(&bytes[..cut]);
            assert!(r.is_err(), "cut at {cut} parsed");
            if cut > body {
                assert!(message(r.unwrap_err()).contains("truncated"));
            }
        }
    }

    #[test]
    fn truncated_ascii_is_an_error() {
        let text = "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n\
                    property float y\nproperty float z\nend_header\n0 0 0\n";
        let err = parse_err(text.as_bytes());
        assert!(err.contains("ends before element 'vertex' 1 of 2"), "{err}");
    }

    #[test]
    fn errors_name_the_problem() {
        let ok = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n\
                  property float z\nelement face 1\nproperty list uchar int vertex_indices\n\
                  end_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n";
        assert!(parse_ply(ok.as_bytes()).is_ok());
        // A table of (broken file, expected message) rows: alike in shape, each its own case.
        let cases = [
            (ok.replace("3 0 1 2", "3 0 1 3"), "beyond the 3 vertices"),
            (ok.replace("3 0 1 2", "3 0 -1 2"), "vertex index -1"),
            (
                ok.replace("3 0 1 2", "3 0 1"),
                "line 13 (element 'face' 0): too few values",
            ),
            (
                ok.replace("1 0 0\n", "1 0\n"),
                "line 11 (element 'vertex' 1): too few values",
            ),
            (
                ok.replace("1 0 0\n", "1 0 0 7\n"),
                "line 11 (element 'vertex' 1): more values",
            ),
            (ok.replace("0 1 0\n", "0 x 0\n"), "cannot parse 'x'"),
            (ok.replace("property float z\n", ""), "no 'z' property"),
            (ok.replace("vertex 3", "points 3"), "no vertex element"),
            (
                ok.replace("ascii", "binary_middle_endian"),
                "unknown format",
            ),
            (
                ok.replace("float y", "float64bit y"),
                "unknown property type",
            ),
            (
                ok.replace("vertex_indices", "corners"),
                "no vertex_indices list",
            ),
            (ok.replace("format ascii 1.0\n", ""), "no format line"),
            (ok.replace("end_header\n", ""), "unrecognised header line"),
            (ok.replace("ply\n", "plx\n"), "not a PLY file"),
            (
                ok.replace("element vertex 3\n", "element vertex three\n"),
                "bad element count",
            ),
        ];
        for (text, want) in cases {
            let err = parse_err(text.as_bytes());
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        assert!(parse_err(b"").contains("empty"));
        assert!(parse_err(b"ply\nformat ascii 1.0\n").contains("no end_header"));
    }

    #[test]
    fn public_parse_error_keeps_the_message() {
        let text = "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n\
                    property float y\nproperty float z\nend_header\n0 0 0\n1 0 x\n";
        let err = parse_ply(text.as_bytes()).unwrap_err();
        let want = "line 9 (element 'vertex' 1): cannot parse 'x' as a number";
        assert_eq!(err.to_string(), format!("PLY data: {want}"));
        let source = std::error::Error::source(&err).expect("the parser's message is kept");
        assert_eq!(source.to_string(), want);
        // Read from a file, the same message names the file instead.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.ply");
        std::fs::write(&path, text).unwrap();
        let err = read_ply(&path).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: {want}", path.display()));
    }

    #[test]
    fn sample_unit_square() {
        let mesh = TriMesh {
            vertices: vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [1.0, 1.0, 0.0],
                [0.0, 1.0, 0.0],
            ],
            faces: vec![[0, 1, 2], [0, 2, 3]],
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let cloud = mesh.sample_surface(20_000, &mut rng);
        assert_eq!(cloud.len(), 20_000);
        let mut mean = [0f64; 3];
        let mut below_diagonal = 0;
        for p in &cloud.points {
            assert!(
                (0.0..=1.0).contains(&p[0]) && (0.0..=1.0).contains(&p[1]),
                "{p:?}"
            );
            assert_eq!(p[2], 0.0);
            for k in 0..3 {
                mean[k] += p[k] as f64 / cloud.len() as f64;
            }
            below_diagonal += usize::from(p[1] < p[0]);
        }
        assert!(
            (mean[0] - 0.5).abs() < 0.01 && (mean[1] - 0.5).abs() < 0.01,
            "{mean:?}"
        );
        // Both triangles have equal area, so each gets about half the points.
        assert!((below_diagonal as f64 / 20_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn sampling_skips_degenerate_faces() {
        let mesh = TriMesh {
            vertices: vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [5.0, 5.0, 5.0],
                [6.0, 6.0, 6.0],
            ],
            // Collinear, repeated-vertex and out-of-range faces around the one real triangle.
            faces: vec![[3, 4, 4], [0, 3, 4], [0, 1, 2], [3, 3, 3], [0, 1, 9]],
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let cloud = mesh.sample_surface(5_000, &mut rng);
        assert_eq!(cloud.len(), 5_000);
        for p in &cloud.points {
            assert!(
                p[0] >= 0.0 && p[1] >= 0.0 && p[0] + p[1] <= 1.0 + 1e-6,
                "{p:?}"
            );
            assert_eq!(p[2], 0.0);
        }
        let flat = TriMesh {
            vertices: mesh.vertices.clone(),
            faces: vec![[3, 4, 4], [0, 3, 4]],
        };
        assert!(flat.sample_surface(10, &mut rng).is_empty());
        assert!(TriMesh::default().sample_surface(10, &mut rng).is_empty());
    }
}
