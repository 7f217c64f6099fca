//! Inputs are checked to be regular files (or directories where one is expected) before
//! they are opened: opening a FIFO blocks until a writer appears, forever for a hostile
//! one, and a character device such as `/dev/zero` never ends. The check turns a hang
//! into an error that says what the path is.

use std::fs::{FileType, Metadata};
use std::path::Path;

/// What a path that is neither a regular file nor a directory is, in words.
pub fn kind(t: &FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The metadata of `path` (after symlinks) if it is a regular file, or a directory when
/// `dir_ok`; otherwise an `InvalidInput` I/O error naming what it is.
pub fn require_regular(path: &Path, dir_ok: bool) -> std::io::Result<Metadata> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() || (dir_ok && meta.is_dir()) {
        return Ok(meta);
    }
    let expected = if dir_ok { "a regular file or a directory" } else { "a regular file" };
    Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("it is {}, not {expected}", kind(&meta.file_type()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_unexpected_directories_are_refused() {
        let root = std::env::temp_dir().join(format!("loc3r-bundle-files-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        struct Cleanup(std::path::PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = Cleanup(root);
        let fifo = dir.0.join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = require_regular(&fifo, true).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("FIFO"), "{e}");
        assert!(require_regular(Path::new("/dev/zero"), false).unwrap_err().to_string().contains("character device"));
        assert!(require_regular(dir.0.as_path(), true).is_ok());
        assert!(require_regular(dir.0.as_path(), false).unwrap_err().to_string().contains("a directory"));
        assert_eq!(require_regular(&dir.0.as_path().join("absent"), false).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }
}
