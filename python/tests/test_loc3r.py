"""The `loc3r` Python module against a tiny random bundle: results, live frames, streaming,
errors and the GIL."""

import json
import math
import shutil
import sys
import threading
import time

import numpy as np
import pytest

import loc3r
from conftest import HEIGHT, REPO, WIDTH, make_frames


def check_localization(loc):
    assert isinstance(loc, loc3r.Localization)
    for value in (loc.x, loc.y, loc.sigma_x, loc.sigma_y, loc.yaw_deg):
        assert math.isfinite(value)
    assert loc.sigma_x > 0 and loc.sigma_y > 0
    assert -180.0 < loc.yaw_deg <= 180.0
    assert len(loc.orientation_probs) > 1
    assert math.isclose(sum(loc.orientation_probs), 1.0, rel_tol=1e-4)
    assert isinstance(loc.orientation_confident, bool)


# ---------------------------------------------------------------------------------------
# Opening a bundle
# ---------------------------------------------------------------------------------------


def test_errors_form_one_hierarchy_by_fault():
    for cls, fault in [(loc3r.InputError, "input"), (loc3r.BundleError, "bundle"), (loc3r.RuntimeError, "runtime"), (loc3r.InternalError, "internal")]:
        assert issubclass(cls, loc3r.Error) and cls.fault == fault
        assert cls.__module__ == "loc3r"
    assert issubclass(loc3r.InputError, ValueError)
    assert issubclass(loc3r.RuntimeError, RuntimeError)
    assert loc3r.RuntimeError is not RuntimeError


def test_a_missing_bundle_is_a_bundle_error_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-bundle"
    with pytest.raises(loc3r.BundleError, match="no-such-bundle") as e:
        loc3r.open(missing)
    assert "loc3r-export export" in str(e.value)


def test_a_bundle_with_a_missing_graph_names_the_file(bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "heads.onnx").unlink()
    with pytest.raises(loc3r.BundleError, match="heads.onnx"):
        loc3r.open(broken)


def test_an_unknown_device_is_an_input_error(bundle):
    with pytest.raises(loc3r.InputError, match="unknown device `gpu`; use cpu, cuda, tensorrt or tensorrt-rtx"):
        loc3r.open(bundle, device="gpu")


def test_a_device_without_its_provider_is_a_runtime_error(bundle):
    try:
        model = loc3r.open(bundle, device="cuda")
    except loc3r.RuntimeError as e:
        assert "`cuda` is not available" in str(e)
    else:
        # An ONNX Runtime with the CUDA provider and a GPU: the bundle opens on it.
        assert model.device == "cuda"


def test_model_attributes(model, bundle):
    assert model.device == "cpu"
    assert model.bundle == bundle
    assert repr(model) == f"Model(bundle={str(bundle)!r}, device='cpu')"


# ---------------------------------------------------------------------------------------
# A video
# ---------------------------------------------------------------------------------------


def test_observe_video_then_localize_and_ask(model, video):
    scene = model.observe_video(video, frames=4)
    assert len(scene) == scene.frame_count == 4
    assert scene.frame_times_s == pytest.approx([0.0, 0.1, 0.2, 0.4])
    assert scene.duration_s == pytest.approx(0.5)
    assert len(scene.camera_poses) == 4 and all(len(p) == 7 for p in scene.camera_poses)
    assert scene.prefix_tokens > 0 and scene.cache_bytes > 0
    assert scene.observe_timings_ms["total"] > 0
    assert repr(scene).startswith("Scene(frames=4, duration_s=0.50, prefix_tokens=")

    loc = scene.localize()
    check_localization(loc)
    assert scene.localize() == loc, "the same scene and situation give the same pose"
    situated = scene.localize("I am sitting on the bed facing the window")
    check_localization(situated)
    assert situated != loc

    d = loc.to_dict()
    assert set(d) == {"x", "y", "sigma_x", "sigma_y", "yaw_deg", "orientation_probs", "orientation_confident"}
    assert d["x"] == loc.x and d["orientation_probs"] == loc.orientation_probs
    json.dumps(d)
    assert repr(loc).startswith(f"Localization(x={loc.x:.3f}, y={loc.y:.3f}, ")

    answer = scene.ask(None, "Where is the chair?", max_new_tokens=6)
    assert isinstance(answer, loc3r.Answer)
    assert 1 <= answer.generated_tokens <= 6 and len(answer.token_ids) == answer.generated_tokens
    assert answer.prompt_tokens > scene.prefix_tokens
    # The pose is read before the question, so it is localize's (to the rounding of another
    # prefill length).
    pose = answer.localization
    assert (pose.x, pose.y, pose.yaw_deg) == pytest.approx((loc.x, loc.y, loc.yaw_deg), abs=1e-4)
    assert answer.timings_ms["total"] > 0
    d = answer.to_dict()
    assert set(d) == {"text", "localization", "prompt_tokens", "generated_tokens", "token_ids", "timings_ms"}
    assert d["localization"] == pose.to_dict() and d["text"] == answer.text
    json.dumps(d)
    assert repr(answer).startswith(f"Answer(text={answer.text!r}, x={pose.x:.3f}, ")


def test_video_errors_carry_the_library_message(model, tmp_path):
    with pytest.raises(loc3r.InputError, match="does not exist"):
        model.observe_video(tmp_path / "missing.mp4", frames=4)
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    with pytest.raises(loc3r.InputError, match="not a readable video"):
        model.observe_video(not_a_video)
    with pytest.raises(loc3r.InputError, match="at least 1"):
        model.observe_video(not_a_video, frames=0)
    with pytest.raises(OverflowError):
        model.observe_video(not_a_video, frames=-1)


# ---------------------------------------------------------------------------------------
# Live frames
# ---------------------------------------------------------------------------------------


def test_an_empty_scene_refuses_to_localize_or_answer(model):
    scene = model.scene()
    assert len(scene) == 0 and scene.duration_s == 0 and scene.frame_times_s == []
    assert repr(scene) == "Scene(frames=0, duration_s=0.00, prefix_tokens=0)"
    with pytest.raises(loc3r.InputError, match=r"no frames yet; push one with scene.push_frame\(frame, time_s\)"):
        scene.localize()
    with pytest.raises(loc3r.InputError, match="no frames yet"):
        scene.ask(None, "Where is the door?")


def test_live_frames_localize_and_answer(live_scene):
    assert len(live_scene) == 3
    assert live_scene.frame_times_s == [0.0, 0.5, 1.0]
    assert live_scene.duration_s == 1.0
    check_localization(live_scene.localize())
    answer = live_scene.ask("I am at the door", "What is in front of me?", max_new_tokens=4)
    assert answer.generated_tokens <= 4


def test_pushing_frames_one_by_one_grows_the_scene(model, frames):
    scene = model.scene()
    prefix = []
    for i, frame in enumerate(frames):
        scene.push_frame(frame, 0.25 * i)
        prefix.append(scene.prefix_tokens)
        assert len(scene) == i + 1
        check_localization(scene.localize())
    assert prefix == sorted(prefix) and len(set(prefix)) == len(prefix)


def test_views_and_other_layouts_are_the_same_frame_as_a_contiguous_copy(model, frames):
    # A flipped view (what frame[..., ::-1] of an OpenCV BGR image gives), a Fortran-order
    # array and a read-only array must give exactly what their contiguous copies give.
    variants = [lambda f: f[:, ::-1], lambda f: f[..., ::-1], np.asfortranarray, lambda f: f.copy().transpose(1, 0, 2).copy().transpose(1, 0, 2)]
    for make in variants:
        views, copies = model.scene(), model.scene()
        for i, frame in enumerate(frames[:2]):
            view = make(frame)
            views.push_frame(view, float(i))
            copies.push_frame(np.ascontiguousarray(view), float(i))
        assert views.localize() == copies.localize()
    frozen = frames[0].copy()
    frozen.setflags(write=False)
    scene = model.scene()
    scene.push_frame(frozen, 0.0)
    assert len(scene) == 1


@pytest.mark.parametrize(
    "frame, message",
    [
        ([[[0, 0, 0]]], "numpy.ndarray of dtype uint8 and shape \\(H, W, 3\\), got a list"),
        (np.zeros((HEIGHT, WIDTH, 3), np.float32), "dtype float32, expected uint8"),
        (np.zeros((HEIGHT, WIDTH, 3), np.int64), "dtype int64, expected uint8"),
        (np.zeros((HEIGHT, WIDTH), np.uint8), r"shape \[120, 160\], expected \(H, W, 3\)"),
        (np.zeros((HEIGHT, WIDTH, 4), np.uint8), r"shape \[120, 160, 4\], expected \(H, W, 3\)"),
        (np.zeros((0, WIDTH, 3), np.uint8), r"shape \[0, 160, 3\]"),
        (np.zeros((1, HEIGHT, WIDTH, 3), np.uint8), r"shape \[1, 120, 160, 3\]"),
    ],
)
def test_frames_that_are_not_rgb_bytes_are_refused(model, frame, message):
    scene = model.scene()
    with pytest.raises(loc3r.InputError, match=message):
        scene.push_frame(frame, 0.0)
    assert len(scene) == 0


def test_bad_pushes_leave_the_scene_unchanged(model, frames):
    scene = model.scene()
    scene.push_frame(frames[0], 1.0)
    scene.push_frame(frames[1], 2.0)
    before = scene.localize()

    smaller = np.ascontiguousarray(frames[2][: HEIGHT // 2, : WIDTH // 2])
    with pytest.raises(loc3r.InputError, match="frame is 80x60 pixels but this scene's first frame was 160x120"):
        scene.push_frame(smaller, 3.0)
    with pytest.raises(loc3r.InputError, match="before the previous frame"):
        scene.push_frame(frames[2], 1.5)
    for bad_time in (-1.0, float("nan"), float("inf")):
        with pytest.raises(loc3r.InputError, match="time_s must be a finite number of seconds >= 0"):
            scene.push_frame(frames[2], bad_time)

    assert len(scene) == 2 and scene.frame_times_s == [1.0, 2.0]
    assert scene.localize() == before
    scene.push_frame(frames[2], 2.0)  # the same time as the previous frame is allowed
    assert len(scene) == 3


def test_a_new_first_frame_of_another_size_is_fine(model):
    # The size rule is per scene: a 4:3 frame of another resolution starts its own scene.
    frame = np.zeros((HEIGHT * 2, WIDTH * 2, 3), np.uint8)
    scene = model.scene()
    scene.push_frame(frame, 0.0)
    check_localization(scene.localize())


def test_frames_pushed_after_a_video_continue_its_times(model, video, frames):
    scene = model.observe_video(video, frames=4)
    with pytest.raises(loc3r.InputError, match="before the previous frame at 0.400 s"):
        scene.push_frame(frames[0], 0.3)
    scene.push_frame(frames[0], 0.6)
    assert len(scene) == 5 and scene.frame_times_s[-1] == 0.6
    check_localization(scene.localize())


# ---------------------------------------------------------------------------------------
# Streaming answers
# ---------------------------------------------------------------------------------------


def test_streamed_pieces_make_the_answer(live_scene):
    pieces = []
    answer = live_scene.ask(None, "What color is the wall?", max_new_tokens=8, stream=pieces.append)
    assert pieces, "the callback got every piece"
    assert "".join(pieces).strip() == answer.text
    plain = live_scene.ask(None, "What color is the wall?", max_new_tokens=8)
    assert (plain.text, plain.token_ids) == (answer.text, answer.token_ids), "a callback returning None does not stop"


def test_returning_false_stops_the_answer(live_scene):
    full = live_scene.ask(None, "Describe the room.", max_new_tokens=8)
    calls = []

    def stop_at_once(piece):
        calls.append(piece)
        return False

    stopped = live_scene.ask(None, "Describe the room.", max_new_tokens=8, stream=stop_at_once)
    assert len(calls) == 1, "no piece after the callback said stop"
    assert stopped.generated_tokens <= full.generated_tokens
    assert full.token_ids[: stopped.generated_tokens] == stopped.token_ids
    assert full.text.startswith(stopped.text)
    # Values other than False (0, "", None) go on.
    zero = live_scene.ask(None, "Describe the room.", max_new_tokens=8, stream=lambda piece: 0)
    assert zero.token_ids == full.token_ids


def test_an_exception_in_the_callback_stops_and_propagates(live_scene):
    calls = []

    def fail(piece):
        calls.append(piece)
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        live_scene.ask(None, "Where is the lamp?", max_new_tokens=8, stream=fail)
    assert len(calls) == 1


def test_generation_options_are_checked(live_scene):
    with pytest.raises(loc3r.InputError, match="top_p must be in \\(0, 1\\]"):
        live_scene.ask(None, "Where is the lamp?", top_p=0.0)
    with pytest.raises(loc3r.InputError, match="temperature must be finite and >= 0"):
        live_scene.ask(None, "Where is the lamp?", temperature=-1.0)
    with pytest.raises(loc3r.InputError, match="question"):
        live_scene.ask(None, "")
    sampled = [live_scene.ask(None, "Where is the lamp?", max_new_tokens=6, temperature=1.0, seed=7).token_ids for _ in range(2)]
    assert sampled[0] == sampled[1], "a seed makes sampling reproducible"


# ---------------------------------------------------------------------------------------
# Threads and the GIL
# ---------------------------------------------------------------------------------------


def test_inference_releases_the_gil(live_scene):
    # With a switch interval far longer than the test, Python threads only change hands when
    # one of them releases the GIL: the counting thread gives it up at every sleep(0), the
    # main thread only inside the native calls. So the counter moves during a call if and
    # only if that call released the GIL.
    counter = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0)

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    worker = threading.Thread(target=count)
    try:
        worker.start()
        moved = {"localize": 0, "ask": 0}
        for _ in range(20):
            before = counter[0]
            live_scene.localize()
            moved["localize"] += counter[0] - before
            before = counter[0]
            live_scene.ask(None, "Where is the sofa?", max_new_tokens=2)
            moved["ask"] += counter[0] - before
    finally:
        stop.set()
        sys.setswitchinterval(old)
        worker.join()
    assert moved["localize"] > 0 and moved["ask"] > 0, moved


def test_threads_share_a_scene(live_scene):
    expected = live_scene.localize("I am by the window")
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(live_scene.localize("I am by the window"))
        except Exception as e:  # reported below; an assert here would be lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 20 and all(r == expected for r in results)


def test_push_and_localize_from_two_threads(model):
    scene = model.scene()
    frames = make_frames(6, seed=3)
    scene.push_frame(frames[0], 0.0)
    errors = []

    def push():
        try:
            for i, frame in enumerate(frames[1:], start=1):
                scene.push_frame(frame, 0.1 * i)
        except Exception as e:
            errors.append(e)

    pusher = threading.Thread(target=push)
    pusher.start()
    while pusher.is_alive():
        check_localization(scene.localize())
    pusher.join()
    assert not errors and len(scene) == 6


def test_frames_from_a_file_then_a_bounded_live_scene(model, video):
    source = loc3r.frames(str(video), realtime=False)
    assert source.fps == pytest.approx(10.0)
    got = list(source)
    assert [i for i, _, _ in got] == [0, 1, 2, 3, 4]
    assert [t for _, t, _ in got] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert got[0][2].shape == (HEIGHT, WIDTH, 3) and got[0][2].dtype == np.uint8

    live = model.live_scene(every=1, window=2)
    assert live.anchor is None and live.keyframes == 0
    offered = [live.offer(i, t, f) for i, t, f in got]
    # Window 2: frames 0, 1 fill it; each later frame restarts from the newest one plus itself.
    assert offered == ["added", "added", "restarted", "restarted", "restarted"]
    assert live.keyframes == 2 and live.restarts == 3 and live.anchor == (3, pytest.approx(0.3))
    pose = live.localize("I am facing the door")
    assert np.isfinite(pose.x) and np.isfinite(pose.yaw_deg)


def test_live_errors_are_input_errors(model, tmp_path):
    with pytest.raises(loc3r.InputError, match="no such device"):
        loc3r.frames("/dev/video97")
    with pytest.raises(loc3r.InputError, match="stall_timeout_s"):
        loc3r.frames("/dev/null", stall_timeout_s=0)
    with pytest.raises(loc3r.InputError, match="window"):
        model.live_scene(window=1)
    live = model.live_scene()
    with pytest.raises(loc3r.InputError, match="no keyframe"):
        live.localize()


def test_the_robot_loop_example_prints_one_json_pose_per_localisation(bundle, video):
    import subprocess

    example = REPO / "python" / "examples" / "robot_loop.py"
    done = subprocess.run([sys.executable, str(example), "--bundle", str(bundle), "--source", str(video), "--every", "2",
                           "--localize-every", "2", "--window", "2", "--threads", "1", "--as-fast-as-possible"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["frame"] for line in lines] == [0, 2, 4]
    assert [line["keyframe"] for line in lines] == ["added", "added", "restarted"]
    assert all(np.isfinite(line["x"]) and line["localize_ms"] > 0 for line in lines)
    assert lines[-1]["anchor_frame"] == 2
