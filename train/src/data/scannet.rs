//! One scene in the ScanNet export layout (what ScanNet's SensReader writes, and what the
//! synthetic-room generator writes too):
//!
//! ```text
//! <dir>/color/{i}.jpg (or .png)      colour frame i
//! <dir>/depth/{i}.png                uint16 depth in millimetres, 0 = invalid
//! <dir>/pose/{i}.txt                 4×4 camera-to-world (metres); rows of -inf mark an invalid frame
//! <dir>/intrinsic/intrinsic_depth.txt  4×4 (or 3×3) with fx 0 cx / 0 fy cy, for depth pixels
//! <dir>/<scene>.txt                  `key = value` lines, `axisAlignment` = 16 floats row-major
//! <dir>/<scene>_vh_clean_2.ply       the raw-frame mesh (its bounding-box centre anchors SQA3D poses)
//! <dir>/video.mp4                    optional
//! ```
//!
//! `<scene>` is the directory's name. Frames are numbered 0..n−1 consecutively, n = the number
//! of pose files. Files are read when asked for, so opening a scene is cheap.

use std::path::{Path, PathBuf};

use loc3r_bundle::bev::{BevFrame, Vec3};

use super::{ply, DataError};

/// A camera-to-world rigid transform, row-major.
pub type Pose = [[f64; 4]; 4];

/// Pinhole intrinsics in pixels (OpenCV convention: pixel centres at integer coordinates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
}

impl Intrinsics {
    /// The camera-frame point at depth `z` (along the optical axis) seen at pixel `(u, v)`:
    /// `z · K⁻¹ [u, v, 1]ᵀ` (x right, y down, z forward).
    pub fn unproject(&self, u: f64, v: f64, z: f64) -> Vec3 {
        [(u - self.cx) / self.fx * z, (v - self.cy) / self.fy * z, z]
    }
}

/// A depth image in millimetres (0 = no measurement), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthImage {
    pub width: usize,
    pub height: usize,
    pub millimetres: Vec<u16>,
}

impl DepthImage {
    pub fn at(&self, x: usize, y: usize) -> u16 {
        self.millimetres[y * self.width + x]
    }
}

/// A ScanNet-layout scene directory.
#[derive(Debug, Clone)]
pub struct ScanNetScene {
    dir: PathBuf,
    scene_id: String,
    frame_count: usize,
    depth_intrinsics: Intrinsics,
}

/// ScanNet's raw world frame is z-up.
pub const Z_UP: Vec3 = [0.0, 0.0, 1.0];

/// Above this |A₂₀| or |A₂₁| the `axisAlignment` rotation is not a rotation about z, and the
/// world up is read from it instead of assumed.
const TILT_TOLERANCE: f64 = 1e-3;

impl ScanNetScene {
    /// Opens a scene: checks the layout, counts the pose files and reads the depth intrinsics.
    pub fn open(dir: &Path) -> Result<ScanNetScene, DataError> {
        if !dir.is_dir() {
            return Err(DataError::NotADirectory { path: dir.to_path_buf() });
        }
        let scene_id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| DataError::parse(dir, "the directory name is not UTF-8; name it after the scene (e.g. scene0000_00)"))?
            .to_string();
        let frame_count = count_frames(&dir.join("pose"))?;
        let depth_dir = dir.join("depth");
        if !depth_dir.is_dir() {
            return Err(DataError::Missing {
                path: depth_dir,
                what: "the depth directory",
                hint: "export the depth frames (depth/{i}.png, uint16 millimetres)",
            });
        }
        let depth_intrinsics = read_intrinsics(&dir.join("intrinsic").join("intrinsic_depth.txt"))?;
        Ok(ScanNetScene { dir: dir.to_path_buf(), scene_id, frame_count, depth_intrinsics })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory's name, e.g. `scene0000_00`.
    pub fn scene_id(&self) -> &str {
        &self.scene_id
    }

    /// Number of frames (= pose files).
    pub fn frame_count(&self) -> usize {
        self.frame_count
    }

    /// Intrinsics of the depth images.
    pub fn depth_intrinsics(&self) -> Intrinsics {
        self.depth_intrinsics
    }

    /// The camera-to-world pose of frame `i`, `None` when the file holds non-finite values
    /// (ScanNet's mark of a frame whose tracking failed).
    pub fn pose(&self, i: usize) -> Result<Option<Pose>, DataError> {
        self.check_frame(i)?;
        let path = self.dir.join("pose").join(format!("{i}.txt"));
        let m = read_matrix4(&path)?;
        Ok(m.iter().flatten().all(|v| v.is_finite()).then_some(m))
    }

    /// The frames with a finite pose, ascending.
    pub fn valid_frames(&self) -> Result<Vec<usize>, DataError> {
        let mut out = Vec::with_capacity(self.frame_count);
        for i in 0..self.frame_count {
            if self.pose(i)?.is_some() {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// The depth image of frame `i`.
    pub fn depth(&self, i: usize) -> Result<DepthImage, DataError> {
        self.check_frame(i)?;
        let path = self.dir.join("depth").join(format!("{i}.png"));
        if !path.is_file() {
            return Err(DataError::Missing { path, what: "the depth frame", hint: "every frame with a pose file needs depth/{i}.png" });
        }
        let img = image::open(&path).map_err(|source| DataError::Image { path: path.clone(), source })?;
        match img {
            image::DynamicImage::ImageLuma16(buf) => {
                let (width, height) = (buf.width() as usize, buf.height() as usize);
                Ok(DepthImage { width, height, millimetres: buf.into_raw() })
            }
            other => Err(DataError::parse(
                &path,
                format!("the depth image is {:?}, expected 16-bit single-channel millimetres; export depth as uint16 PNG", other.color()),
            )),
        }
    }

    /// The colour image of frame `i` (`color/{i}.jpg`, else `color/{i}.png`).
    pub fn color_path(&self, i: usize) -> Result<PathBuf, DataError> {
        self.check_frame(i)?;
        let jpg = self.dir.join("color").join(format!("{i}.jpg"));
        if jpg.is_file() {
            return Ok(jpg);
        }
        let png = jpg.with_extension("png");
        if png.is_file() {
            return Ok(png);
        }
        Err(DataError::Missing {
            path: jpg,
            what: "the colour frame (.jpg or .png)",
            hint: "every frame with a pose file needs color/{i}.jpg or color/{i}.png",
        })
    }

    /// `video.mp4` in the scene directory, if present.
    pub fn video_path(&self) -> Option<PathBuf> {
        let p = self.dir.join("video.mp4");
        p.is_file().then_some(p)
    }

    /// The world's unit up vector: +z (ScanNet's raw frame), unless `<scene>.txt` has an
    /// `axisAlignment` whose rotation is not about z (|A₂₀| or |A₂₁| ≥ 1e-3); then the third row
    /// of its rotation (the raw-frame direction the alignment maps to +z). A missing file or key
    /// means +z (ScanNet's test scenes carry no alignment).
    pub fn up(&self) -> Result<Vec3, DataError> {
        let path = self.meta_path();
        if !path.is_file() {
            return Ok(Z_UP);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        match axis_alignment(&text).map_err(|m| DataError::parse(&path, m))? {
            None => Ok(Z_UP),
            Some(a) => up_from_alignment(&a).map_err(|m| DataError::parse(&path, m)),
        }
    }

    /// Centre of the axis-aligned bounding box of the raw mesh `<scene>_vh_clean_2.ply`
    /// (SQA3D positions are relative to it).
    pub fn bs_center(&self) -> Result<Vec3, DataError> {
        let path = self.dir.join(format!("{}_vh_clean_2.ply", self.scene_id));
        if !path.is_file() {
            return Err(DataError::Missing {
                path,
                what: "the raw mesh",
                hint: "copy <scene>_vh_clean_2.ply from the ScanNet release into the scene directory",
            });
        }
        ply::bounding_box_center(&path)
    }

    /// The BEV frame anchored at frame `first` (the first sampled frame of a video).
    pub fn bev_frame(&self, first: usize) -> Result<BevFrame, DataError> {
        let pose = self.pose(first)?.ok_or(DataError::InvalidAnchorPose { dir: self.dir.clone(), frame: first })?;
        let up = self.up()?;
        BevFrame::from_camera0(&pose, up).map_err(|e| DataError::parse(self.dir.join("pose").join(format!("{first}.txt")), e.to_string()))
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join(format!("{}.txt", self.scene_id))
    }

    fn check_frame(&self, i: usize) -> Result<(), DataError> {
        if i < self.frame_count {
            Ok(())
        } else {
            Err(DataError::FrameOutOfRange { dir: self.dir.clone(), frame: i, count: self.frame_count })
        }
    }
}

/// Number of pose files, checking that they are `0.txt .. (n−1).txt`.
fn count_frames(pose_dir: &Path) -> Result<usize, DataError> {
    if !pose_dir.is_dir() {
        return Err(DataError::Missing {
            path: pose_dir.to_path_buf(),
            what: "the pose directory",
            hint: "export the camera poses (pose/{i}.txt, 4×4 camera-to-world)",
        });
    }
    let entries = std::fs::read_dir(pose_dir).map_err(|e| DataError::io(pose_dir, e))?;
    let mut indices = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(pose_dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".txt")) else { continue };
        match stem.parse::<usize>() {
            Ok(i) if i.to_string() == stem => indices.push(i),
            _ => {
                return Err(DataError::parse(
                    entry.path(),
                    "pose files must be named by the frame index without padding (0.txt, 1.txt, …); rename or remove it",
                ))
            }
        }
    }
    if indices.is_empty() {
        return Err(DataError::NoPoses { path: pose_dir.to_path_buf() });
    }
    indices.sort_unstable();
    if let Some(gap) = indices.iter().enumerate().find(|(k, &i)| *k != i).map(|(k, _)| k) {
        return Err(DataError::Missing {
            path: pose_dir.join(format!("{gap}.txt")),
            what: "a pose file",
            hint: "frames must be numbered 0..n−1 without gaps; re-export the scene",
        });
    }
    Ok(indices.len())
}

/// A 4×4 matrix from whitespace-separated numbers (`-inf`, `inf`, `nan` accepted as numbers).
fn read_matrix4(path: &Path) -> Result<[[f64; 4]; 4], DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let values = parse_numbers(&text).map_err(|m| DataError::parse(path, m))?;
    if values.len() != 16 {
        return Err(DataError::parse(path, format!("holds {} numbers, a 4×4 matrix needs 16 (four rows of four)", values.len())));
    }
    let mut m = [[0.0; 4]; 4];
    for (k, v) in values.into_iter().enumerate() {
        m[k / 4][k % 4] = v;
    }
    Ok(m)
}

fn parse_numbers(text: &str) -> Result<Vec<f64>, String> {
    text.split_whitespace().map(|w| w.parse::<f64>().map_err(|_| format!("`{w}` is not a number; the file must hold plain decimal numbers"))).collect()
}

fn read_intrinsics(path: &Path) -> Result<Intrinsics, DataError> {
    if !path.is_file() {
        return Err(DataError::Missing {
            path: path.to_path_buf(),
            what: "the depth intrinsics",
            hint: "export intrinsic/intrinsic_depth.txt (4×4, fx 0 cx / 0 fy cy)",
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let v = parse_numbers(&text).map_err(|m| DataError::parse(path, m))?;
    let cols = match v.len() {
        16 => 4,
        9 => 3,
        n => return Err(DataError::parse(path, format!("holds {n} numbers; intrinsics are a 4×4 (16) or 3×3 (9) matrix"))),
    };
    let k = Intrinsics { fx: v[0], cx: v[2], fy: v[cols + 1], cy: v[cols + 2] };
    if !(k.fx.is_finite() && k.fy.is_finite() && k.fx > 0.0 && k.fy > 0.0 && k.cx.is_finite() && k.cy.is_finite()) {
        return Err(DataError::parse(path, format!("focal lengths must be positive and all values finite, found {k:?}")));
    }
    Ok(k)
}

/// The `axisAlignment` matrix of a `<scene>.txt`, if the key is present.
fn axis_alignment(text: &str) -> Result<Option<[[f64; 4]; 4]>, String> {
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.trim() != "axisAlignment" {
            continue;
        }
        let v = parse_numbers(value)?;
        if v.len() != 16 || v.iter().any(|x| !x.is_finite()) {
            return Err(format!("axisAlignment holds {} values, expected 16 finite numbers (a 4×4 matrix, row-major)", v.len()));
        }
        let mut m = [[0.0; 4]; 4];
        for (k, x) in v.into_iter().enumerate() {
            m[k / 4][k % 4] = x;
        }
        return Ok(Some(m));
    }
    Ok(None)
}

/// World up from an alignment A (raw → aligned): +z when A rotates about z only, else the third
/// row of A's rotation, normalised.
fn up_from_alignment(a: &[[f64; 4]; 4]) -> Result<Vec3, String> {
    if a[2][0].abs() < TILT_TOLERANCE && a[2][1].abs() < TILT_TOLERANCE {
        return Ok(Z_UP);
    }
    loc3r_bundle::bev::normalize([a[2][0], a[2][1], a[2][2]])
        .ok_or_else(|| "axisAlignment's third row has no length; the matrix is not a rigid transform".to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a minimal scene: `poses.len()` frames with the given poses, constant depth
    /// images of `depth_mm`, depth intrinsics `k` for a `w`×`h` image.
    pub(crate) fn write_scene(dir: &Path, poses: &[Option<Pose>], k: Intrinsics, depth: &[DepthImage]) {
        for sub in ["color", "depth", "pose", "intrinsic"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("intrinsic/intrinsic_depth.txt"), format!("{} 0 {} 0\n0 {} {} 0\n0 0 1 0\n0 0 0 1\n", k.fx, k.cx, k.fy, k.cy)).unwrap();
        for (i, p) in poses.iter().enumerate() {
            let text = match p {
                Some(m) => m.iter().map(|r| r.map(|x| format!("{x:.17e}")).join(" ")).collect::<Vec<_>>().join("\n"),
                None => ["-inf -inf -inf -inf"; 4].join("\n"),
            };
            std::fs::write(dir.join(format!("pose/{i}.txt")), text + "\n").unwrap();
            let d = &depth[i.min(depth.len() - 1)];
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(d.width as u32, d.height as u32, d.millimetres.clone())
                .unwrap()
                .save(dir.join(format!("depth/{i}.png")))
                .unwrap();
        }
    }

    fn identity() -> Pose {
        let mut m = [[0.0; 4]; 4];
        for (i, row) in m.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        m
    }

    const K: Intrinsics = Intrinsics { fx: 50.0, fy: 50.0, cx: 7.5, cy: 5.5 };

    fn flat(mm: u16) -> DepthImage {
        DepthImage { width: 16, height: 12, millimetres: vec![mm; 16 * 12] }
    }

    #[test]
    fn opens_counts_and_reads_frames() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("scene0001_00");
        write_scene(&dir, &[Some(identity()), None, Some(identity())], K, &[flat(1500)]);
        let s = ScanNetScene::open(&dir).unwrap();
        assert_eq!((s.scene_id(), s.frame_count()), ("scene0001_00", 3));
        assert_eq!(s.depth_intrinsics(), K);
        assert_eq!(s.pose(0).unwrap(), Some(identity()));
        assert_eq!(s.pose(1).unwrap(), None);
        assert_eq!(s.valid_frames().unwrap(), vec![0, 2]);
        let d = s.depth(2).unwrap();
        assert_eq!((d.width, d.height, d.at(3, 4)), (16, 12, 1500));
        assert_eq!(s.up().unwrap(), Z_UP, "no <scene>.txt: +z");
        assert!(s.video_path().is_none());
        let e = s.color_path(0).unwrap_err().to_string();
        assert!(e.contains("color/0.jpg") && e.contains("colour frame"), "{e}");
        std::fs::write(dir.join("color/1.png"), b"x").unwrap();
        assert!(s.color_path(1).unwrap().ends_with("color/1.png"));
        assert!(matches!(s.pose(3), Err(DataError::FrameOutOfRange { frame: 3, count: 3, .. })));
        assert!(matches!(s.bev_frame(1), Err(DataError::InvalidAnchorPose { frame: 1, .. })));
        assert!(s.bev_frame(0).is_ok());
    }

    #[test]
    fn errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("scene0002_00");
        let e = ScanNetScene::open(&dir).unwrap_err().to_string();
        assert!(e.contains("scene0002_00") && e.contains("not a directory"), "{e}");

        write_scene(&dir, &[Some(identity()), Some(identity())], K, &[flat(1000)]);
        std::fs::write(dir.join("pose/1.txt"), "1 0 0 0\n0 1 0 0\n0 0 1 x\n0 0 0 1\n").unwrap();
        let s = ScanNetScene::open(&dir).unwrap();
        let e = s.pose(1).unwrap_err().to_string();
        assert!(e.contains("pose/1.txt") && e.contains("`x` is not a number"), "{e}");
        std::fs::write(dir.join("pose/1.txt"), "1 0 0 0\n").unwrap();
        let e = s.pose(1).unwrap_err().to_string();
        assert!(e.contains("pose/1.txt") && e.contains("needs 16"), "{e}");

        std::fs::remove_file(dir.join("depth/1.png")).unwrap();
        let e = s.depth(1).unwrap_err().to_string();
        assert!(e.contains("depth/1.png") && e.contains("missing"), "{e}");

        std::fs::remove_file(dir.join("pose/0.txt")).unwrap();
        let e = ScanNetScene::open(&dir).unwrap_err().to_string();
        assert!(e.contains("pose/0.txt") && e.contains("without gaps"), "{e}");
        std::fs::remove_file(dir.join("pose/1.txt")).unwrap();
        let e = ScanNetScene::open(&dir).unwrap_err().to_string();
        assert!(e.contains("pose") && e.contains("no pose files"), "{e}");

        write_scene(&dir, &[Some(identity())], K, &[flat(1000)]);
        std::fs::remove_dir_all(dir.join("depth")).unwrap();
        let e = ScanNetScene::open(&dir).unwrap_err().to_string();
        assert!(e.contains("depth") && e.contains("depth directory"), "{e}");
        std::fs::create_dir_all(dir.join("depth")).unwrap();
        std::fs::write(dir.join("intrinsic/intrinsic_depth.txt"), "50 0 nope").unwrap();
        let e = ScanNetScene::open(&dir).unwrap_err().to_string();
        assert!(e.contains("intrinsic_depth.txt") && e.contains("`nope`"), "{e}");
        let e = ScanNetScene::open(&dir).map(|_| ()).unwrap_err();
        assert!(matches!(e, DataError::Parse { .. }));
        std::fs::write(dir.join("intrinsic/intrinsic_depth.txt"), "50 0 1\n0 50 2\n0 0 1\n").unwrap();
        let s = ScanNetScene::open(&dir).unwrap();
        assert_eq!(s.depth_intrinsics(), Intrinsics { fx: 50.0, fy: 50.0, cx: 1.0, cy: 2.0 });
        let e = s.bs_center().unwrap_err().to_string();
        assert!(e.contains("scene0002_00_vh_clean_2.ply"), "{e}");
    }

    #[test]
    fn up_vector_from_axis_alignment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("scene0003_00");
        write_scene(&dir, &[Some(identity())], K, &[flat(1000)]);
        let s = ScanNetScene::open(&dir).unwrap();
        let (c, n) = (0.6f64.cos(), 0.6f64.sin());
        let about_z = format!("colorWidth = 1296\naxisAlignment = {c} {} 0 1.5 {n} {c} 0 -2 0 0 1 0 0 0 0 1\nfx_depth = 577.5\n", -n);
        std::fs::write(dir.join("scene0003_00.txt"), about_z).unwrap();
        assert_eq!(s.up().unwrap(), Z_UP);
        // A tilt of 0.1 rad about x: the third row of the rotation is the raw-frame up.
        let (c, n) = (0.1f64.cos(), 0.1f64.sin());
        let tilted = format!("axisAlignment = 1 0 0 0 0 {c} {} 0 0 {n} {c} 0 0 0 0 1\n", -n);
        std::fs::write(dir.join("scene0003_00.txt"), tilted).unwrap();
        let up = s.up().unwrap();
        assert!((up[0]).abs() < 1e-15 && (up[1] - n).abs() < 1e-15 && (up[2] - c).abs() < 1e-15, "{up:?}");
        std::fs::write(dir.join("scene0003_00.txt"), "axisAlignment = 1 0 0\n").unwrap();
        let e = s.up().unwrap_err().to_string();
        assert!(e.contains("scene0003_00.txt") && e.contains("expected 16"), "{e}");
        std::fs::write(dir.join("scene0003_00.txt"), "sceneType = Office\n").unwrap();
        assert_eq!(s.up().unwrap(), Z_UP);
    }
}
