//! The pinhole camera shared by colour and depth.
//!
//! Convention: pixel centres sit at integer coordinates, so the principal point of a W×H image
//! is `cx = (W − 1)/2`, `cy = (H − 1)/2`; pixel `(u, v)` looks along the camera-frame ray
//! `((u − cx)/fx, (v − cy)/fy, 1)` (OpenCV axes: x right, y down, z forward). Square pixels:
//! `fx = fy = (W/2) / tan(hfov/2)`.

use serde::Serialize;

/// Horizontal field of view (degrees), like ScanNet's colour camera.
pub const HFOV_DEG: f64 = 58.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Intrinsics {
    pub width: usize,
    pub height: usize,
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl Intrinsics {
    pub fn new(width: usize, height: usize) -> Intrinsics {
        let fx = (width as f64 / 2.0) / libm::tan(HFOV_DEG.to_radians() / 2.0);
        Intrinsics { width, height, fx, fy: fx, cx: (width as f64 - 1.0) / 2.0, cy: (height as f64 - 1.0) / 2.0 }
    }

    /// The 4×4 matrix of ScanNet's `intrinsic_*.txt`.
    pub fn matrix_text(&self) -> String {
        let r = [[self.fx, 0.0, self.cx, 0.0], [0.0, self.fy, self.cy, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        r.iter().map(|row| row.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join(" ") + "\n").collect()
    }
}
