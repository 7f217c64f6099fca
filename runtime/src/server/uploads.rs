//! Where a server keeps uploaded videos, and how a crashed server's leftovers are found.
//!
//! ```text
//! $TMPDIR/loc3r-serve/            owned by loc3r-serve, shared by every instance
//!   <pid>-<random>/               one per running server
//!     .lock                       held (flock, exclusive) for the server's whole life
//!     <video id>.mp4 …
//! ```
//! A server that exits normally removes its directory (and the root, when it was the last one). One killed with SIGKILL cannot, but the
//! kernel releases its lock, so the next server to start removes every directory whose lock it
//! can take: those belong to no running server. Directories of running servers stay locked and
//! are left alone.

use std::fs::File;
use std::path::{Path, PathBuf};

/// The directory under the system temp directory that holds every instance's uploads.
pub const ROOT_NAME: &str = "loc3r-serve";
const LOCK_FILE: &str = ".lock";

/// This server's upload directory; removed when dropped.
#[derive(Debug)]
pub struct UploadsDir {
    path: PathBuf,
    /// Held for the server's life: the lock says "in use" to servers started later.
    _lock: File,
}

/// What starting found and removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Upload directories of servers that are no longer running, removed.
    pub removed: Vec<PathBuf>,
}

impl UploadsDir {
    /// Creates this server's directory under `root` (made if missing) after removing the
    /// directories of servers that are no longer running.
    pub fn create(root: &Path) -> std::io::Result<(UploadsDir, Swept)> {
        // A server exiting at this moment may remove the (empty) root under us: try again.
        let mut attempts = 0;
        let (dir, swept) = loop {
            std::fs::create_dir_all(root)?;
            let swept = sweep(root)?;
            match tempfile::Builder::new().prefix(&format!("{}-", std::process::id())).tempdir_in(root) {
                Ok(dir) => break (dir.keep(), swept),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        };
        let lock = File::create(dir.join(LOCK_FILE))?;
        if !try_lock(&lock) {
            return Err(std::io::Error::other(format!("cannot lock {}", dir.join(LOCK_FILE).display())));
        }
        Ok((UploadsDir { path: dir, _lock: lock }, swept))
    }

    /// The default root: `loc3r-serve` under the system temp directory.
    pub fn default_root() -> PathBuf {
        std::env::temp_dir().join(ROOT_NAME)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UploadsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        // The shared root goes too when this was the last server (fails, harmlessly, if not).
        if let Some(root) = self.path.parent() {
            let _ = std::fs::remove_dir(root);
        }
    }
}

/// Takes an exclusive `flock` on `file` without waiting (held until the file is closed, and
/// released by the kernel when the process dies, however it dies).
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes every instance directory under `root` whose lock nobody holds (or that has no lock
/// file at all: a server killed between creating the directory and its lock).
fn sweep(root: &Path) -> std::io::Result<Swept> {
    let mut swept = Swept::default();
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        // Only directories we made; anything else under the root is not ours to judge.
        if !path.is_dir() || path.is_symlink() {
            continue;
        }
        let abandoned = match File::open(path.join(LOCK_FILE)) {
            Ok(lock) => try_lock(&lock),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if abandoned && std::fs::remove_dir_all(&path).is_ok() {
            swept.removed.push(path);
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_servers_directory_is_kept_and_a_dead_ones_is_swept() {
        let root = tempfile::tempdir().unwrap();
        let (running, swept) = UploadsDir::create(root.path()).unwrap();
        assert!(swept.removed.is_empty());
        std::fs::write(running.path().join("video.mp4"), b"x").unwrap();

        // A server killed with SIGKILL: its directory and lock file remain, the lock is gone.
        let dead = root.path().join("4242-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(LOCK_FILE), b"").unwrap();
        std::fs::write(dead.join("upload.mp4"), vec![0u8; 1024]).unwrap();
        // ... and one killed before it made its lock file.
        let unlocked = root.path().join("4243-early");
        std::fs::create_dir(&unlocked).unwrap();

        let (second, swept) = UploadsDir::create(root.path()).unwrap();
        assert_eq!(swept.removed.len(), 2, "{swept:?}");
        assert!(!dead.exists() && !unlocked.exists());
        assert!(running.path().join("video.mp4").is_file(), "a running server's uploads must survive");

        let (first_path, second_path) = (running.path().to_path_buf(), second.path().to_path_buf());
        drop(running);
        assert!(root.path().is_dir(), "the shared root stays while a server uses it");
        drop(second);
        assert!(!first_path.exists() && !second_path.exists(), "a server removes its uploads when it stops");
        assert!(!root.path().exists(), "the last server to stop removes the shared root");
    }
}
