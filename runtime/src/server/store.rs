//! The registered videos (id = sha256 of content + frame count) and their observed scenes.
//! Resident scenes are accounted in bytes (`Scene::cache_bytes`); past `--cache-mb` the
//! least recently used scene is dropped from memory but its video is kept (an upload's
//! bytes on disk, or the allowed path), so a later request re-observes it transparently
//! (on the [`Scheduler`]). If the source is gone or changed by then, 410 Gone. Past
//! `--max-sessions` registered videos, the least recently used one is forgotten entirely
//! (404 afterwards), as after `DELETE`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::pipeline::Timings;
use crate::{FrameSpec, Loc3r, Scene};

use super::error::ApiError;
use super::metrics::Metrics;
use super::schedule::Scheduler;

/// Where a video's bytes live.
#[derive(Debug, Clone)]
pub enum Source {
    /// Uploaded; kept in the server's upload directory until deleted.
    Upload(PathBuf),
    /// A canonical path under `--allow-dir`.
    Path(PathBuf),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Upload(p) | Source::Path(p) => p,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Source::Upload(_) => "upload",
            Source::Path(_) => "path",
        }
    }
}

/// `sha256(content || frames as u64 LE)`, hex.
pub fn video_id_of_bytes(bytes: &[u8], frames: usize) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.update((frames as u64).to_le_bytes());
    hex::encode(h.finalize())
}

pub fn video_id_of_file(path: &Path, frames: usize) -> std::io::Result<String> {
    let mut h = Sha256::new();
    crate::files::require_regular(path, false)?;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.update((frames as u64).to_le_bytes());
    Ok(hex::encode(h.finalize()))
}

struct Entry {
    source: Source,
    frames: usize,
    duration_s: f64,
    scene: Option<Arc<Scene>>,
    bytes: usize,
    last_used: u64,
    observe_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    tick: u64,
    bytes: usize,
}

/// What the API reports about a registered video.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VideoInfo {
    pub video_id: String,
    pub frames: usize,
    pub duration_s: f64,
    pub resident: bool,
    pub cache_bytes: usize,
    pub source: &'static str,
}

pub struct Store {
    inner: Mutex<Inner>,
    budget: usize,
    max_videos: usize,
    upload_dir: PathBuf,
    /// `--max-pixels`, for every observe of the store's videos.
    max_pixels: u64,
    metrics: Arc<Metrics>,
}

impl Store {
    pub fn new(budget_bytes: usize, max_videos: usize, upload_dir: PathBuf, max_pixels: u64, metrics: Arc<Metrics>) -> Self {
        Store { inner: Mutex::new(Inner::default()), budget: budget_bytes, max_videos: max_videos.max(1), upload_dir, max_pixels, metrics }
    }

    /// How the store's videos are sampled: `frames` of at most `--max-pixels` pixels.
    pub fn frame_spec(&self, frames: usize) -> FrameSpec {
        FrameSpec::new(frames).with_max_pixels(self.max_pixels)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.upload_dir.join(format!("{id}.video"))
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// (resident bytes, resident scenes, registered videos)
    pub fn usage(&self) -> (usize, usize, usize) {
        let g = self.lock();
        (g.bytes, g.entries.values().filter(|e| e.scene.is_some()).count(), g.entries.len())
    }

    fn info(id: &str, e: &Entry) -> VideoInfo {
        VideoInfo {
            video_id: id.to_string(),
            frames: e.frames,
            duration_s: e.duration_s,
            resident: e.scene.is_some(),
            cache_bytes: e.bytes,
            source: e.source.kind(),
        }
    }

    /// The info of a registered video (touching it), if any.
    pub fn get(&self, id: &str) -> Option<VideoInfo> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let e = g.entries.get_mut(id)?;
        e.last_used = tick;
        Some(Self::info(id, e))
    }

    pub fn list(&self) -> Vec<VideoInfo> {
        let g = self.lock();
        let mut v: Vec<(u64, VideoInfo)> = g.entries.iter().map(|(id, e)| (e.last_used, Self::info(id, e))).collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.0));
        v.into_iter().map(|(_, i)| i).collect()
    }

    /// Registers an observed video (a concurrent registration of the same id wins).
    pub fn insert(&self, id: &str, source: Source, frames: usize, scene: Scene) -> VideoInfo {
        let mut forgotten = Vec::new();
        let info = {
            let mut g = self.lock();
            g.tick += 1;
            let tick = g.tick;
            if let Some(e) = g.entries.get_mut(id) {
                e.last_used = tick;
                return Self::info(id, e);
            }
            while g.entries.len() >= self.max_videos {
                let Some(old) = g.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone()) else {
                    break;
                };
                if let Some(e) = g.entries.remove(&old) {
                    g.bytes -= e.bytes;
                    forgotten.push(e.source);
                }
            }
            let bytes = scene.cache_bytes();
            g.bytes += bytes;
            let e = Entry {
                source,
                frames,
                duration_s: scene.duration_s(),
                scene: Some(Arc::new(scene)),
                bytes,
                last_used: tick,
                observe_lock: Arc::new(tokio::sync::Mutex::new(())),
            };
            let info = Self::info(id, &e);
            g.entries.insert(id.to_string(), e);
            self.evict_locked(&mut g, id);
            info
        };
        for s in forgotten {
            if let Source::Upload(p) = s {
                let _ = std::fs::remove_file(p);
            }
        }
        info
    }

    /// Drops least recently used scenes (never `keep`) until under the budget.
    fn evict_locked(&self, g: &mut Inner, keep: &str) {
        let mut n = 0;
        while g.bytes > self.budget {
            let victim = g.entries.iter().filter(|(k, e)| e.scene.is_some() && k.as_str() != keep).min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(e) = g.entries.get_mut(&victim) {
                e.scene = None;
                let b = std::mem::take(&mut e.bytes);
                g.bytes -= b;
                n += 1;
                tracing::info!(video_id = %victim, freed_bytes = b, "evicted scene (over --cache-mb)");
            }
        }
        if n > 0 {
            self.metrics.evicted(n);
        }
    }

    pub fn delete(&self, id: &str) -> bool {
        let e = {
            let mut g = self.lock();
            let Some(e) = g.entries.remove(id) else {
                return false;
            };
            g.bytes -= e.bytes;
            e
        };
        if let Source::Upload(p) = e.source {
            let _ = std::fs::remove_file(p);
        }
        true
    }

    /// The scene of a video, re-observing it (on the scheduler) if it was evicted.
    pub async fn scene(&self, id: &str, model: &Loc3r, sched: &Scheduler) -> Result<(Arc<Scene>, Option<Timings>), ApiError> {
        let lock = {
            let mut g = self.lock();
            g.tick += 1;
            let tick = g.tick;
            let Some(e) = g.entries.get_mut(id) else {
                return Err(ApiError::not_found(format!("no video `{id}`; register it with POST /v1/videos")));
            };
            e.last_used = tick;
            if let Some(s) = &e.scene {
                self.metrics.cache_hit(true);
                return Ok((s.clone(), None));
            }
            e.observe_lock.clone()
        };
        let _one_observer = lock.lock().await;
        let (source, frames) = {
            let g = self.lock();
            let Some(e) = g.entries.get(id) else {
                return Err(ApiError::not_found(format!("video `{id}` was deleted")));
            };
            if let Some(s) = &e.scene {
                self.metrics.cache_hit(true);
                return Ok((s.clone(), None));
            }
            (e.source.clone(), e.frames)
        };
        self.metrics.cache_hit(false);
        let model = model.clone();
        let want = id.to_string();
        let path = source.path().to_path_buf();
        let spec = self.frame_spec(frames);
        let metrics = self.metrics.clone();
        let scene = sched
            .observe(move |cancel| {
                match video_id_of_file(&path, frames) {
                    Ok(got) if got == want => {}
                    Ok(_) => {
                        return Err(ApiError::new(
                            axum::http::StatusCode::GONE,
                            "gone",
                            format!("video `{want}` was evicted from memory and its file has changed since; register it again"),
                        ))
                    }
                    Err(e) => {
                        return Err(ApiError::new(
                            axum::http::StatusCode::GONE,
                            "gone",
                            format!("video `{want}` was evicted from memory and its file can no longer be read ({e}); register it again"),
                        ))
                    }
                }
                metrics.observation();
                Ok(model.observe_video_cancellable(&path, &spec, cancel)?)
            })
            .await?;
        let timings = scene.observe_timings.clone();
        tracing::info!(video_id = %id, "re-observed an evicted scene");
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        let Some(e) = g.entries.get_mut(id) else {
            return Err(ApiError::not_found(format!("video `{id}` was deleted")));
        };
        let scene = Arc::new(scene);
        let bytes = scene.cache_bytes();
        e.scene = Some(scene.clone());
        e.bytes = bytes;
        e.last_used = tick;
        g.bytes += bytes;
        self.evict_locked(&mut g, id);
        Ok((scene, Some(timings)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_named_as_a_video_path_is_refused_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("video.mp4");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = video_id_of_file(&fifo, 4).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }
}
