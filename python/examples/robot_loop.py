#!/usr/bin/env python3
"""A robot's "where am I?" loop in Python, the same as the Rust example
(runtime/examples/robot_loop.rs): frames from a camera, stream, file or image directory at
their real rate, keyframes into a live scene of bounded size, a localisation every N frames
printed as one JSON line on stdout.

    python3 python/examples/robot_loop.py --bundle build/demo/bundle --source /dev/video0 \\
        --every 10 --localize-every 10 --window 16 --situation "I am facing the door"
"""
import argparse
import json
import sys
import time

import loc3r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="bundle directory (from loc3r-export export)")
    ap.add_argument("--source", required=True, help="/dev/videoN, rtsp://..., http(s)://..., a video file or a directory of images")
    ap.add_argument("--every", type=int, default=10, help="consider every N-th frame as a keyframe")
    ap.add_argument("--min-move-m", type=float, help="take a considered frame only if the camera moved this far ...")
    ap.add_argument("--min-turn-deg", type=float, help="... or turned this much (degrees)")
    ap.add_argument("--window", type=int, default=16, help="most keyframes kept (a full scene restarts from its newest half)")
    ap.add_argument("--localize-every", type=int, default=10, help="localise every N-th frame of the source")
    ap.add_argument("--situation", help="situation text, e.g. 'I am facing the door'")
    ap.add_argument("--as-fast-as-possible", action="store_true", help="read every frame of a file without pacing")
    ap.add_argument("--image-fps", type=float, default=10.0, help="frame rate of an image directory")
    ap.add_argument("--max-frames", type=int, help="stop after this many source frames")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = one per core)")
    a = ap.parse_args(argv)
    if a.localize_every < 1:
        ap.error("--localize-every must be at least 1")

    model = loc3r.open(a.bundle, threads=a.threads)
    live = model.live_scene(every=a.every, window=a.window, min_move_m=a.min_move_m, min_turn_deg=a.min_turn_deg)
    source = loc3r.frames(a.source, realtime=not a.as_fast_as_possible, image_fps=a.image_fps)
    print(f"robot_loop: {a.source} ({source.fps:.1f} fps), keyframe every {a.every} frames, window {a.window}", file=sys.stderr)
    start = time.perf_counter()
    count = 0
    for index, time_s, frame in source:
        if a.max_frames is not None and count >= a.max_frames:
            break
        count += 1
        t = time.perf_counter()
        offered = live.offer(index, time_s, frame)
        keyframe_ms = (time.perf_counter() - t) * 1e3
        if live.keyframes == 0 or index % a.localize_every != 0:
            continue
        t = time.perf_counter()
        pose = live.localize(a.situation)
        localize_ms = (time.perf_counter() - t) * 1e3
        anchor_frame, anchor_time_s = live.anchor
        position = pose.to_dict()
        del position["orientation_probs"]
        line = {"frame": index, "time_s": time_s, "wall_s": time.perf_counter() - start, **position,
                "localize_ms": localize_ms, "keyframe": offered, "keyframe_ms": keyframe_ms, "keyframes": live.keyframes,
                "anchor_frame": anchor_frame, "anchor_time_s": anchor_time_s, "dropped": source.dropped}
        print(json.dumps(line), flush=True)
    print(f"robot_loop: {count} frames, {live.restarts} restarts, {source.dropped} dropped, {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
