//! The `sensor_msgs/PointCloud2` wire format without ROS: the node's adapter copies the
//! message's fields into `RawPointCloud2` and everything else (decoding any field layout,
//! encoding the outputs) is plain, testable Rust.

use crate::cloud::{Cloud, Organised};
use crate::error::{Error, Result};

/// `sensor_msgs/PointField` datatypes.
pub mod datatype {
    pub const INT8: u8 = 1;
    pub const UINT8: u8 = 2;
    pub const INT16: u8 = 3;
    pub const UINT16: u8 = 4;
    pub const INT32: u8 = 5;
    pub const UINT32: u8 = 6;
    pub const FLOAT32: u8 = 7;
    pub const FLOAT64: u8 = 8;
}

/// Bytes of one element of a datatype; `None` for an unknown code.
pub fn datatype_size(datatype: u8) -> Option<usize> {
    use datatype::*;
    match datatype {
        INT8 | UINT8 => Some(1),
        INT16 | UINT16 => Some(2),
        INT32 | UINT32 | FLOAT32 => Some(4),
        FLOAT64 => Some(8),
        _ => None,
    }
}

/// `sensor_msgs/PointField`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointField {
    pub name: String,
    pub offset: u32,
    pub datatype: u8,
    pub count: u32,
}

/// The layout and bytes of a `sensor_msgs/PointCloud2` (header excluded).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawPointCloud2 {
    pub height: u32,
    pub width: u32,
    pub fields: Vec<PointField>,
    pub is_bigendian: bool,
    pub point_step: u32,
    pub row_step: u32,
    pub data: Vec<u8>,
    pub is_dense: bool,
}

fn field<'a>(msg: &'a RawPointCloud2, name: &str) -> Result<&'a PointField> {
    msg.fields.iter().find(|f| f.name == name).ok_or_else(|| {
        let names: Vec<&str> = msg.fields.iter().map(|f| f.name.as_str()).collect();
        Error::invalid(format!(
            "PointCloud2 has no '{name}' field (fields: {names:?})"
        ))
    })
}

/// Reads one coordinate as f32 from `bytes` (already sliced at the field's offset).
fn read_coordinate(bytes: &[u8], datatype: u8, big_endian: bool) -> f32 {
    let mut b8 = [0u8; 8];
    match datatype {
        datatype::FLOAT64 => {
            b8.copy_from_slice(&bytes[..8]);
            (if big_endian {
                f64::from_be_bytes(b8)
            } else {
                f64::from_le_bytes(b8)
            }) as f32
        }
        _ => {
            let b4 = [bytes[0], bytes[1], bytes[2], bytes[3]];
            if big_endian {
                f32::from_be_bytes(b4)
            } else {
                f32::from_le_bytes(b4)
            }
        }
    }
}

/// Decodes x, y, z from any layout: fields in any order among extra fields, FLOAT32 or
/// FLOAT64 coordinates, padding in `point_step` and `row_step`, organised clouds
/// (height > 1), either byte order. Every point is kept, in row-major order, NaN holes
/// included: dropping them is the pipeline's first stage (`pipeline::filters`), so a
/// result's index is the message's. Every inconsistency between the layout and the data
/// is an error that names it.
pub fn decode(msg: &RawPointCloud2) -> Result<Cloud> {
    let bad = |m: String| Error::invalid(format!("PointCloud2: {m}"));
    let xyz = [field(msg, "x")?, field(msg, "y")?, field(msg, "z")?];
    for f in xyz {
        if f.datatype != datatype::FLOAT32 && f.datatype != datatype::FLOAT64 {
            return Err(bad(format!(
                "field '{}' has datatype {}; x, y and z must be FLOAT32 (7) or FLOAT64 (8)",
                f.name, f.datatype
            )));
        }
    }
    for f in &msg.fields {
        let size = datatype_size(f.datatype).ok_or_else(|| {
            bad(format!(
                "field '{}' has unknown datatype {}",
                f.name, f.datatype
            ))
        })?;
        let end = f.offset as usize + size * f.count.max(1) as usize;
        if end > msg.point_step as usize {
            return Err(bad(format!(
                "field '{}' ends at byte {end} but point_step is {}",
                f.name, msg.point_step
            )));
        }
    }
    let (height, width) = (msg.height as usize, msg.width as usize);
    let step = msg.point_step as usize;
    if height * width == 0 {
        return Ok(Cloud::default());
    }
    let row_step = msg.row_step as usize;
    // u32 layout values from the wire: multiply in u64-safe steps so a hostile message
    // cannot overflow.
    let row_bytes = width
        .checked_mul(step)
        .ok_or_else(|| bad("width x point_step overflows".into()))?;
    if row_step < row_bytes {
        return Err(bad(format!(
            "row_step {row_step} is smaller than width {width} x point_step {step}"
        )));
    }
    let needed = (height - 1)
        .checked_mul(row_step)
        .and_then(|b| b.checked_add(row_bytes))
        .ok_or_else(|| bad("height x row_step overflows".into()))?;
    if msg.data.len() < needed {
        return Err(bad(format!(
            "data has {} bytes but height {height}, width {width}, point_step {step} and \
             row_step {row_step} need {needed}",
            msg.data.len()
        )));
    }
    let mut points = Vec::with_capacity(height * width);
    // Depth cameras send FLOAT32 little-endian: read those at fixed offsets without a
    // per-coordinate type dispatch (a 640 x 480 image in about a third of the time).
    let f32_le = !msg.is_bigendian && xyz.iter().all(|f| f.datatype == datatype::FLOAT32);
    let offsets = xyz.map(|f| f.offset as usize);
    for row in 0..height {
        let pixels = msg.data[row * row_step..][..row_bytes].chunks_exact(step);
        if f32_le {
            let at =
                |px: &[u8], o: usize| f32::from_le_bytes(px[o..o + 4].try_into().expect("4 bytes"));
            points.extend(pixels.map(|px| offsets.map(|o| at(px, o))));
        } else {
            points.extend(pixels.map(|px| {
                xyz.map(|f| read_coordinate(&px[f.offset as usize..], f.datatype, msg.is_bigendian))
            }));
        }
    }
    // An image (height > 1) stays one: the scene stage clusters on its pixel grid.
    let organised = (height > 1).then_some(Organised { width, height });
    Ok(Cloud {
        organised,
        ..Cloud::new(points)
    })
}

/// One output row of `~/output/correspondences`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorrespondencePoint {
    pub xyz: [f32; 3],
    pub keypoint_id: u32,
    pub score: f32,
    /// The detection's index (`Detection3D.id`, the `/tf` frame's number).
    pub object_id: u32,
}

/// Encodes correspondences as an unorganised little-endian PointCloud2 with fields
/// x, y, z (FLOAT32), keypoint_id (UINT32), score (FLOAT32), object_id (UINT32): 24 bytes
/// per point.
pub fn encode_correspondences(points: &[CorrespondencePoint]) -> RawPointCloud2 {
    let fields = [
        ("x", 0, datatype::FLOAT32),
        ("y", 4, datatype::FLOAT32),
        ("z", 8, datatype::FLOAT32),
        ("keypoint_id", 12, datatype::UINT32),
        ("score", 16, datatype::FLOAT32),
        ("object_id", 20, datatype::UINT32),
    ];
    let mut data = Vec::with_capacity(points.len() * 24);
    for p in points {
        for c in p.xyz {
            data.extend_from_slice(&c.to_le_bytes());
        }
        data.extend_from_slice(&p.keypoint_id.to_le_bytes());
        data.extend_from_slice(&p.score.to_le_bytes());
        data.extend_from_slice(&p.object_id.to_le_bytes());
    }
    unorganised(&fields, 24, points.len(), data)
}

/// Encodes x, y, z (FLOAT32): a plain sensor cloud, for tests, samples and benchmarks.
pub fn encode_xyz(points: &[[f32; 3]]) -> RawPointCloud2 {
    let fields = [
        ("x", 0, datatype::FLOAT32),
        ("y", 4, datatype::FLOAT32),
        ("z", 8, datatype::FLOAT32),
    ];
    let data = points
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    unorganised(&fields, 12, points.len(), data)
}

/// Encodes xyz + rgb (PCL's packed FLOAT32 `rgb`) for the embedding visualisation.
pub fn encode_xyzrgb(points: &[[f32; 3]], colors: &[[u8; 3]]) -> RawPointCloud2 {
    let fields = [
        ("x", 0, datatype::FLOAT32),
        ("y", 4, datatype::FLOAT32),
        ("z", 8, datatype::FLOAT32),
        ("rgb", 12, datatype::FLOAT32),
    ];
    let mut data = Vec::with_capacity(points.len() * 16);
    for (p, c) in points.iter().zip(colors) {
        for v in p {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let packed = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        data.extend_from_slice(&packed.to_le_bytes());
    }
    unorganised(&fields, 16, points.len().min(colors.len()), data)
}

/// Encodes x, y, z of a cloud, keeping a depth camera's organised shape (height x width,
/// NaN holes in place, `is_dense` false) as a driver publishes it.
pub fn encode_xyz_organised(cloud: &Cloud) -> Result<RawPointCloud2> {
    cloud.check_organised("cloud")?;
    let mut msg = encode_xyz(&cloud.points);
    if let Some(o) = cloud.organised {
        msg.height = o.height as u32;
        msg.width = o.width as u32;
        msg.row_step = msg.point_step * msg.width;
    }
    msg.is_dense = cloud.points.iter().all(|p| p.iter().all(|c| c.is_finite()));
    Ok(msg)
}

fn unorganised(fields: &[(&str, u32, u8)], step: u32, n: usize, data: Vec<u8>) -> RawPointCloud2 {
    RawPointCloud2 {
        height: 1,
        width: n as u32,
        fields: fields
            .iter()
            .map(|&(name, offset, datatype)| PointField {
                name: name.into(),
                offset,
                datatype,
                count: 1,
            })
            .collect(),
        is_bigendian: false,
        point_step: step,
        row_step: step * n as u32,
        data,
        is_dense: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, offset: u32, datatype: u8) -> PointField {
        PointField {
            name: name.into(),
            offset,
            datatype,
            count: 1,
        }
    }

    /// Points with layout [intensity f32, z, pad, x, y] of `ty`, optional big-endian,
    /// organised as `height` rows with `row_pad` bytes of padding per row.
    fn build(
        points: &[[f64; 3]],
        ty: u8,
        big: bool,
        height: u32,
        row_pad: usize,
    ) -> RawPointCloud2 {
        let s = datatype_size(ty).unwrap() as u32;
        let (oz, ox, oy) = (4, 4 + s + 4, 4 + 2 * s + 4);
        let step = oy + s + 3; // trailing padding
        let width = points.len() as u32 / height;
        let row_step = step * width + row_pad as u32;
        let mut data = vec![0u8; (row_step * height) as usize];
        for (i, p) in points.iter().enumerate() {
            let (r, c) = (i as u32 / width, i as u32 % width);
            let base = (r * row_step + c * step) as usize;
            let mut put = |off: u32, v: f64| {
                let bytes: Vec<u8> = match (ty, big) {
                    (datatype::FLOAT64, false) => v.to_le_bytes().to_vec(),
                    (datatype::FLOAT64, true) => v.to_be_bytes().to_vec(),
                    (_, false) => (v as f32).to_le_bytes().to_vec(),
                    (_, true) => (v as f32).to_be_bytes().to_vec(),
                };
                data[base + off as usize..base + off as usize + bytes.len()]
                    .copy_from_slice(&bytes);
            };
            put(oz, p[2]);
            put(ox, p[0]);
            put(oy, p[1]);
        }
        RawPointCloud2 {
            height,
            width,
            fields: vec![
                f("intensity", 0, datatype::FLOAT32),
                f("z", oz, ty),
                f("x", ox, ty),
                f("y", oy, ty),
            ],
            is_bigendian: big,
            point_step: step,
            row_step,
            data,
            is_dense: false,
        }
    }

    const PTS: [[f64; 3]; 4] = [
        [1.0, 2.0, 3.0],
        [-1.5, 0.25, 8.0],
        [0.0, 0.0, 0.5],
        [7.0, -7.0, 1.0],
    ];

    #[test]
    fn decodes_every_layout() {
        for ty in [datatype::FLOAT32, datatype::FLOAT64] {
            for big in [false, true] {
                for (height, pad) in [(1, 0), (2, 5)] {
                    let d = decode(&build(&PTS, ty, big, height, pad)).unwrap();
                    let want: Vec<[f32; 3]> = PTS.iter().map(|p| p.map(|c| c as f32)).collect();
                    assert_eq!(d.points, want, "type {ty} big-endian {big} height {height}");
                    let shape = (height > 1).then_some(Organised {
                        width: 4 / height as usize,
                        height: height as usize,
                    });
                    assert_eq!(d.organised, shape);
                }
            }
        }
    }

    #[test]
    fn non_finite_points_are_kept_in_place() {
        let mut pts = PTS;
        pts[1][0] = f64::NAN;
        pts[3][2] = f64::INFINITY;
        let d = decode(&build(&pts, datatype::FLOAT64, false, 2, 0)).unwrap();
        assert_eq!(d.len(), 4);
        assert!(d.points[1][0].is_nan() && d.points[3][2].is_infinite());
        assert_eq!(d.points[2], PTS[2].map(|c| c as f32));
    }

    #[test]
    fn malformed_layouts_are_named() {
        let good = build(&PTS, datatype::FLOAT32, false, 1, 0);
        let mut m = good.clone();
        m.fields.retain(|f| f.name != "z");
        assert!(decode(&m).unwrap_err().to_string().contains("no 'z' field"));
        let mut m = good.clone();
        m.point_step = 8;
        assert!(decode(&m)
            .unwrap_err()
            .to_string()
            .contains("point_step is 8"));
        let mut m = good.clone();
        m.data.truncate(m.data.len() - 1);
        assert!(decode(&m).unwrap_err().to_string().contains("need"));
        let mut m = good.clone();
        m.row_step = 3;
        assert!(decode(&m).unwrap_err().to_string().contains("row_step 3"));
        let mut m = good.clone();
        m.fields[1].datatype = datatype::UINT16;
        assert!(decode(&m)
            .unwrap_err()
            .to_string()
            .contains("must be FLOAT32"));
        let mut m = good;
        m.fields[0].datatype = 42;
        assert!(decode(&m)
            .unwrap_err()
            .to_string()
            .contains("unknown datatype 42"));
    }

    #[test]
    fn empty_cloud_is_not_an_error() {
        let mut m = build(&PTS, datatype::FLOAT32, false, 1, 0);
        m.width = 0;
        m.row_step = 0;
        m.data.clear();
        assert!(decode(&m).unwrap().is_empty());
    }

    #[test]
    fn correspondences_round_trip_through_the_decoder() {
        let out = encode_correspondences(&[
            CorrespondencePoint {
                xyz: [1.0, 2.0, 3.0],
                keypoint_id: 7,
                score: 0.5,
                object_id: 0,
            },
            CorrespondencePoint {
                xyz: [4.0, 5.0, 6.0],
                keypoint_id: 9,
                score: 1.0,
                object_id: 3,
            },
        ]);
        assert_eq!(out.point_step, 24);
        let d = decode(&out).unwrap();
        assert_eq!(d.points, vec![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let word = |at: usize| u32::from_le_bytes(out.data[at..at + 4].try_into().unwrap());
        assert_eq!((word(24 + 12), word(24 + 20)), (9, 3));
        let rgb = encode_xyzrgb(&[[0.0; 3]], &[[1, 2, 3]]);
        assert_eq!(
            u32::from_le_bytes(rgb.data[12..16].try_into().unwrap()),
            0x010203
        );
    }
}
