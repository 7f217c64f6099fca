//! Input files are checked to be regular files before they are opened: opening a FIFO
//! blocks until a writer appears (forever, for a hostile one), and a character device such
//! as `/dev/zero` never ends. Refusing them up front turns a hang into a clear error.

use std::path::Path;

use crate::error::{Error, Result};

/// Ok if `path` (after symlinks) is a regular file; a missing file is the usual
/// `NotFound` I/O error, anything else says what it is.
pub fn require_regular_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return Ok(());
    }
    Err(Error::Invalid(format!("{}: is {}, not a regular file; name a regular file", path.display(), loc3r_bundle::files::kind(&meta.file_type()))))
}

/// The largest text input read whole (configs, name maps, tokenizer corpora): far above any
/// real one, far below what would hurt the machine.
pub const MAX_TEXT_INPUT_BYTES: u64 = 64 << 20;

/// `std::fs::read_to_string` for an input file, refusing anything but a regular file and
/// files over [`MAX_TEXT_INPUT_BYTES`].
pub fn read_input(path: &Path) -> Result<String> {
    require_regular_file(path)?;
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len > MAX_TEXT_INPUT_BYTES {
        return Err(Error::Invalid(format!(
            "{}: {len} bytes is too large for a text input (at most {} MiB); name the right file",
            path.display(),
            MAX_TEXT_INPUT_BYTES >> 20
        )));
    }
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_devices_are_refused_without_opening_them() {
        let dir = std::env::temp_dir().join(format!("loc3r-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("pipe");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        let e = read_input(&fifo).unwrap_err().to_string();
        assert!(e.contains("FIFO") && e.contains("pipe"), "{e}");
        let e = read_input(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
        let e = read_input(&dir).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        assert!(matches!(read_input(&dir.join("absent")), Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound));
        // Sparse: the size is checked before anything is read.
        let huge = dir.join("huge.json");
        std::fs::File::create(&huge).unwrap().set_len(MAX_TEXT_INPUT_BYTES + 1).unwrap();
        let e = read_input(&huge).unwrap_err().to_string();
        assert!(e.contains("too large") && e.contains("64 MiB"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
