//! Geodesic distances on point clouds.
