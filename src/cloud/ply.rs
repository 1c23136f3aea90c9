//! PLY files: ascii and binary_little_endian, vertex x y z (+ rgb), faces when present.
use super::Cloud;
use crate::error::Result;
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
    pub faces: Option<Vec<[u32; 3]>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlyEncoding {
    Ascii,
    BinaryLittleEndian,
}

pub fn read_ply(path: &Path) -> Result<PlyData> {
    let _ = path;
    Err(crate::Error::invalid("PLY reading is not written yet"))
}

pub fn write_ply(
    _path: &Path,
    _cloud: &Cloud,
    _faces: Option<&[[u32; 3]]>,
    _encoding: PlyEncoding,
) -> Result<()> {
    Err(crate::Error::invalid("PLY writing is not written yet"))
}
