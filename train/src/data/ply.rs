//! Vertex positions of a PLY mesh (ASCII or binary little-endian), enough for the centre of a
//! scene's bounding box. Faces and every other property are skipped by their declared types.

use std::path::Path;

use loc3r_bundle::bev::Vec3;

use super::DataError;

/// The centre `(min + max) / 2` of the axis-aligned bounding box of all vertices of a PLY file.
pub fn bounding_box_center(path: &Path) -> Result<Vec3, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let vertices = read_vertices(&bytes).map_err(|m| DataError::parse(path, format!("{m}; the file must be a PLY mesh with float x, y, z vertices")))?;
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for v in &vertices {
        if v.iter().any(|x| !x.is_finite()) {
            return Err(DataError::parse(path, "a vertex is not finite; re-export the mesh"));
        }
        for a in 0..3 {
            lo[a] = lo[a].min(v[a]);
            hi[a] = hi[a].max(v[a]);
        }
    }
    if vertices.is_empty() {
        return Err(DataError::parse(path, "the mesh has no vertices; use the scene's _vh_clean_2.ply"));
    }
    Ok([(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, (lo[2] + hi[2]) / 2.0])
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(name: &str) -> Result<Scalar, String> {
        Ok(match name {
            "char" | "int8" => Scalar::I8,
            "uchar" | "uint8" => Scalar::U8,
            "short" | "int16" => Scalar::I16,
            "ushort" | "uint16" => Scalar::U16,
            "int" | "int32" => Scalar::I32,
            "uint" | "uint32" => Scalar::U32,
            "float" | "float32" => Scalar::F32,
            "double" | "float64" => Scalar::F64,
            other => return Err(format!("unknown PLY property type `{other}`")),
        })
    }

    fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::F64 => 8,
        }
    }

    /// The value at the start of `b` (at least `size()` bytes long).
    fn read_le(self, b: &[u8]) -> f64 {
        match self {
            Scalar::I8 => f64::from(b[0] as i8),
            Scalar::U8 => f64::from(b[0]),
            Scalar::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
            Scalar::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
            Scalar::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Scalar::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Scalar::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Scalar::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        }
    }
}

#[derive(Debug, Clone)]
enum Property {
    Scalar { name: String, ty: Scalar },
    List { count: Scalar, item: Scalar },
}

#[derive(Debug, Clone)]
struct Element {
    name: String,
    count: usize,
    properties: Vec<Property>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Ascii,
    BinaryLittleEndian,
}

struct Header {
    format: Format,
    elements: Vec<Element>,
    body_start: usize,
}

fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    const END: &[u8] = b"end_header";
    let end = bytes.windows(END.len()).position(|w| w == END).ok_or("no `end_header` line")?;
    let newline = bytes[end..].iter().position(|&b| b == b'\n').ok_or("the header does not end with a newline")?;
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| "the header is not text")?;
    let mut lines = text.lines().map(str::trim);
    if lines.next() != Some("ply") {
        return Err("the first line is not `ply`".into());
    }
    let mut format = None;
    let mut elements: Vec<Element> = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["format", "ascii", ..] => format = Some(Format::Ascii),
            ["format", "binary_little_endian", ..] => format = Some(Format::BinaryLittleEndian),
            ["format", other, ..] => return Err(format!("PLY format `{other}` is not supported (ascii or binary_little_endian)")),
            ["element", name, count] => {
                let count = count.parse().map_err(|_| format!("element `{name}` has count `{count}`, not a number"))?;
                elements.push(Element { name: name.to_string(), count, properties: Vec::new() });
            }
            ["property", "list", count, item, _name] => {
                let e = elements.last_mut().ok_or("a property comes before any element")?;
                e.properties.push(Property::List { count: Scalar::parse(count)?, item: Scalar::parse(item)? });
            }
            ["property", ty, name] => {
                let e = elements.last_mut().ok_or("a property comes before any element")?;
                e.properties.push(Property::Scalar { name: name.to_string(), ty: Scalar::parse(ty)? });
            }
            _ => {} // comment, obj_info, blank
        }
    }
    let format = format.ok_or("no `format` line")?;
    Ok(Header { format, elements, body_start: end + newline + 1 })
}

/// Positions (x, y, z) of the `vertex` element.
fn read_vertices(bytes: &[u8]) -> Result<Vec<Vec3>, String> {
    let header = parse_header(bytes)?;
    let vertex_at = header.elements.iter().position(|e| e.name == "vertex").ok_or("no `vertex` element")?;
    let vertex = &header.elements[vertex_at];
    let column = |axis: &str| {
        vertex
            .properties
            .iter()
            .position(|p| matches!(p, Property::Scalar { name, .. } if name == axis))
            .ok_or(format!("the vertex element has no `{axis}` property"))
    };
    let xyz = [column("x")?, column("y")?, column("z")?];
    let body = &bytes[header.body_start..];
    match header.format {
        Format::Ascii => read_ascii(body, &header.elements[..vertex_at], vertex, xyz),
        Format::BinaryLittleEndian => read_binary(body, &header.elements[..vertex_at], vertex, xyz),
    }
}

fn read_ascii(body: &[u8], before: &[Element], vertex: &Element, xyz: [usize; 3]) -> Result<Vec<Vec3>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the ASCII body is not text")?;
    // One element instance per line in ASCII PLY.
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let skip: usize = before.iter().map(|e| e.count).sum();
    for _ in 0..skip {
        lines.next().ok_or("the file ends before the vertex element")?;
    }
    let mut out = Vec::with_capacity(vertex.count);
    for i in 0..vertex.count {
        let line = lines.next().ok_or(format!("the file ends after {i} of {} vertices", vertex.count))?;
        let mut words = line.split_whitespace();
        let mut values = vec![f64::NAN; vertex.properties.len()];
        for (slot, p) in values.iter_mut().zip(&vertex.properties) {
            let mut next = || -> Result<f64, String> {
                let w = words.next().ok_or(format!("vertex {i} has too few values"))?;
                w.parse::<f64>().map_err(|_| format!("vertex {i} holds `{w}`, not a number"))
            };
            match p {
                Property::Scalar { .. } => *slot = next()?,
                Property::List { .. } => {
                    let n = next()?;
                    for _ in 0..(n as usize) {
                        next()?;
                    }
                }
            }
        }
        out.push([values[xyz[0]], values[xyz[1]], values[xyz[2]]]);
    }
    Ok(out)
}

fn read_binary(body: &[u8], before: &[Element], vertex: &Element, xyz: [usize; 3]) -> Result<Vec<Vec3>, String> {
    let truncated = || "the binary body is shorter than its header declares".to_string();
    let mut at = 0usize;
    // Size of one instance, reading list counts as they come.
    let skip_instance = |at: &mut usize, e: &Element, values: Option<&mut Vec<f64>>| -> Result<(), String> {
        let mut values = values;
        for (k, p) in e.properties.iter().enumerate() {
            match p {
                Property::Scalar { ty, .. } => {
                    let b = body.get(*at..*at + ty.size()).ok_or_else(truncated)?;
                    if let Some(v) = values.as_deref_mut() {
                        v[k] = ty.read_le(b);
                    }
                    *at += ty.size();
                }
                Property::List { count, item } => {
                    let b = body.get(*at..*at + count.size()).ok_or_else(truncated)?;
                    let n = count.read_le(b);
                    if !(0.0..=1e9).contains(&n) {
                        return Err(format!("a list of element `{}` has length {n}", e.name));
                    }
                    *at += count.size() + n as usize * item.size();
                }
            }
        }
        Ok(())
    };
    for e in before {
        for _ in 0..e.count {
            skip_instance(&mut at, e, None)?;
        }
    }
    let mut out = Vec::with_capacity(vertex.count);
    let mut values = vec![0.0; vertex.properties.len()];
    for _ in 0..vertex.count {
        skip_instance(&mut at, vertex, Some(&mut values))?;
        out.push([values[xyz[0]], values[xyz[1]], values[xyz[2]]]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    const CORNERS: [[f64; 3]; 3] = [[-1.0, 2.0, 0.0], [3.0, 4.5, 2.5], [0.5, 3.0, 1.0]];
    const CENTER: [f64; 3] = [1.0, 3.25, 1.25];

    #[test]
    fn ascii_center_skips_other_properties_and_faces() {
        let mut s = String::from("ply\nformat ascii 1.0\ncomment made by a test\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n");
        s += "property uchar red\nproperty list uchar int extra\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n";
        for v in CORNERS {
            s += &format!("{} {} {} 200 2 7 8\n", v[0], v[1], v[2]);
        }
        s += "3 0 1 2\n";
        let (_d, p) = temp_file("a.ply", s.as_bytes());
        assert_eq!(bounding_box_center(&p).unwrap(), CENTER);
    }

    #[test]
    fn binary_center_with_doubles_and_a_leading_element() {
        let header = "ply\nformat binary_little_endian 1.0\nelement camera 1\nproperty list uchar float k\nproperty short s\nelement vertex 3\nproperty uchar flag\nproperty double x\nproperty float y\nproperty double z\nproperty ushort alpha\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n";
        let mut b = header.as_bytes().to_vec();
        b.push(2);
        b.extend(1.5f32.to_le_bytes());
        b.extend(2.5f32.to_le_bytes());
        b.extend(7i16.to_le_bytes());
        for v in CORNERS {
            b.push(9);
            b.extend(v[0].to_le_bytes());
            b.extend((v[1] as f32).to_le_bytes());
            b.extend(v[2].to_le_bytes());
            b.extend(65535u16.to_le_bytes());
        }
        let (_d, p) = temp_file("b.ply", &b);
        assert_eq!(bounding_box_center(&p).unwrap(), CENTER);
        b.truncate(b.len() - 3);
        let (_d2, p2) = temp_file("short.ply", &b);
        let e = bounding_box_center(&p2).unwrap_err().to_string();
        assert!(e.contains("short.ply") && e.contains("shorter"), "{e}");
    }

    #[test]
    fn big_endian_is_refused_by_name() {
        let (_d, p) = temp_file("c.ply", b"ply\nformat binary_big_endian 1.0\nelement vertex 0\nend_header\n");
        let e = bounding_box_center(&p).unwrap_err().to_string();
        assert!(e.contains("c.ply") && e.contains("binary_big_endian"), "{e}");
    }
}
