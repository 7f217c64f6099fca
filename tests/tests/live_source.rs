//! Live frames (issue 15, item 3): a file played at its real rate or as fast as it is read,
//! an image directory, a stream that stalls, a device that does not exist; and a live scene
//! whose keyframe policy and window keep it bounded while it localizes.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use loc3r::live::{FrameSource, KeyframePolicy, LiveFrame, LiveScene, Offered, SourceKind, SourceOptions};
use loc3r::stages::video::VideoError;
use loc3r::{Loc3r, SessionOptions};
use loc3r_e2e::{synthetic_video, tiny_bundle};

fn fast() -> SourceOptions {
    SourceOptions { realtime: false, stall_timeout: Duration::from_secs(20), ..Default::default() }
}

#[test]
fn a_file_gives_every_frame_in_order_with_its_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let video = synthetic_video(dir.path(), "v.mp4", 160, 120, 25);
    let src = FrameSource::open(video.to_str().unwrap(), &fast()).unwrap();
    assert_eq!(src.kind(), SourceKind::File);
    assert!((src.fps() - 10.0).abs() < 1e-6, "{}", src.fps());
    let frames: Vec<LiveFrame> = src.map(Result::unwrap).collect();
    assert_eq!(frames.len(), 25);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.index, i);
        assert!((f.time_s - i as f64 / 10.0).abs() < 1e-6, "frame {i} at {}", f.time_s);
        assert_eq!(f.rgb.shape(), &[120, 160, 3]);
    }
}

/// Played at its real rate, a 2 s file takes at least its duration to read, and a consumer
/// slower than the frame rate sees the newest frames (older ones are dropped and counted),
/// as from a camera.
#[test]
fn realtime_playback_is_paced_and_drops_what_a_slow_consumer_misses() {
    let dir = tempfile::tempdir().unwrap();
    let video = synthetic_video(dir.path(), "v.mp4", 160, 120, 20);
    let opts = SourceOptions { realtime: true, stall_timeout: Duration::from_secs(20), ..Default::default() };
    let start = Instant::now();
    let mut src = FrameSource::open(video.to_str().unwrap(), &opts).unwrap();
    let mut got = Vec::new();
    while let Some(f) = src.next_frame().unwrap() {
        got.push(f.index);
        // A consumer that needs 0.35 s per frame, at 10 frames per second.
        std::thread::sleep(Duration::from_millis(350));
    }
    assert!(start.elapsed() >= Duration::from_millis(1800), "paced: {:?}", start.elapsed());
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert!(got.len() < 20 && src.dropped() > 0 && got.len() + src.dropped() == 20, "got {got:?}, dropped {}", src.dropped());
}

#[test]
fn an_image_directory_is_a_source_at_its_stated_rate() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, (i * 80) as u8]));
        img.save(dir.path().join(format!("{i:03}.png"))).unwrap();
    }
    let opts = SourceOptions { image_fps: 5.0, ..fast() };
    let frames: Vec<LiveFrame> = FrameSource::open(dir.path().to_str().unwrap(), &opts).unwrap().map(Result::unwrap).collect();
    assert_eq!(frames.iter().map(|f| f.time_s).collect::<Vec<_>>(), vec![0.0, 0.2, 0.4]);
    assert_eq!(frames[2].rgb[[0, 0, 2]], 160);
}

/// A server that accepts and then sends nothing: opening gives up at the stall timeout
/// with an error that says so, instead of hanging.
#[test]
fn a_stream_that_stalls_is_an_error_after_the_stall_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/live.mp4", listener.local_addr().unwrap());
    let silent = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf);
        std::thread::sleep(Duration::from_secs(6));
    });
    let opts = SourceOptions { stall_timeout: Duration::from_millis(1500), ..fast() };
    let start = Instant::now();
    let e = FrameSource::open(&url, &opts).err().expect("a silent server cannot be opened");
    let waited = start.elapsed();
    assert!(matches!(e, VideoError::Stalled { .. } | VideoError::Source { .. }), "{e}");
    assert!(waited < Duration::from_secs(5), "gave up after {waited:?}, not at the 1.5 s stall timeout");
    let _ = silent.join();
}

#[test]
fn missing_devices_and_files_are_clear_errors() {
    let e = FrameSource::open("/dev/video97", &fast()).err().unwrap().to_string();
    assert!(e.contains("no such device"), "{e}");
    let e = FrameSource::open("/no/such/video.mp4", &fast()).err().unwrap().to_string();
    assert!(e.contains("does not exist"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.mp4"), b"not a video").unwrap();
    let e = FrameSource::open(dir.path().join("x.mp4").to_str().unwrap(), &fast()).err().unwrap().to_string();
    assert!(e.contains("cannot open"), "{e}");
}

/// Every 2nd frame of a 24-frame video into a window of 4 keyframes: the scene never holds
/// more than 4, restarts from its newest 2 when full, stays anchored at a frame it holds,
/// and localizes after every keyframe. A huge movement threshold keeps only the first frame.
#[test]
fn a_live_scene_stays_within_its_window_and_localizes() {
    let dir = tempfile::tempdir().unwrap();
    let video = synthetic_video(dir.path(), "v.mp4", 160, 120, 24);
    let model = Loc3r::open(tiny_bundle(1), &SessionOptions { intra_threads: 1, ..Default::default() }).unwrap();
    let policy = KeyframePolicy { every: 2, window: 4, ..Default::default() };
    let mut live = LiveScene::new(&model, policy).unwrap();
    let mut outcomes = Vec::new();
    for f in FrameSource::open(video.to_str().unwrap(), &fast()).unwrap() {
        let f = f.unwrap();
        let index = f.index;
        let o = live.offer(f).unwrap();
        assert!(live.keyframes() <= 4);
        if o != Offered::Skipped {
            let scene = live.scene().unwrap();
            assert_eq!(scene.frames.len(), live.keyframes());
            assert_eq!(scene.frames.last().unwrap().index, index);
            let (anchor, _) = live.anchor().unwrap();
            assert_eq!(scene.frames[0].index, anchor);
            let pose = scene.localize(Some("I am facing the door")).unwrap();
            assert!(pose.position.x.is_finite() && pose.yaw_deg.is_finite());
        }
        outcomes.push(o);
    }
    let count = |o: Offered| outcomes.iter().filter(|x| **x == o).count();
    // 12 keyframes: 4 fill the first scene, then each restart keeps 2 and adds 1 (3), the
    // next adds 1 (4): restarts at keyframes 5, 7, 9, 11.
    assert_eq!((count(Offered::Skipped), count(Offered::Added), count(Offered::Restarted)), (12, 8, 4));
    assert_eq!(live.restarts(), 4);

    let still = KeyframePolicy { every: 1, min_move_m: Some(1e6), min_turn_deg: Some(360.0), window: 4 };
    let mut live = LiveScene::new(&model, still).unwrap();
    for f in FrameSource::open(video.to_str().unwrap(), &fast()).unwrap().take(6) {
        live.offer(f.unwrap()).unwrap();
    }
    assert_eq!(live.keyframes(), 1, "the camera never moved a million metres");

    // Frames out of order and impossible policies are refused.
    let mut frames = FrameSource::open(video.to_str().unwrap(), &fast()).unwrap();
    let (a, b) = (frames.next().unwrap().unwrap(), frames.next().unwrap().unwrap());
    let mut live = LiveScene::new(&model, KeyframePolicy { every: 1, window: 4, ..Default::default() }).unwrap();
    live.offer(b).unwrap();
    assert!(live.offer(a).unwrap_err().to_string().contains("must come in order"));
    assert!(LiveScene::new(&model, KeyframePolicy { every: 0, ..Default::default() }).is_err());
    assert!(LiveScene::new(&model, KeyframePolicy { window: 100_000, ..Default::default() }).unwrap_err().to_string().contains("window"));
}
