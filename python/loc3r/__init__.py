"""loc3r: the Loc3R-VLM runtime from Python.

Open an exported bundle once, observe a video (or push live camera frames), then ask
"where am I?" and questions about the scene::

    import loc3r

    model = loc3r.open("build/demo/bundle")
    scene = model.observe_video("build/demo/room.mp4", frames=16)
    print(scene.localize("I am sitting on the bed facing the window"))
    answer = scene.ask(None, "What is on the table?", max_new_tokens=32, stream=print)

A robot's camera: ``for index, t, frame in loc3r.frames("/dev/video0"): live.offer(index, t, frame)``
with ``live = model.live_scene(every=10, window=16)`` (python/examples/robot_loop.py).

Every inference call releases the GIL. Errors are ``loc3r.Error`` subclasses chosen by
whose fault they are: ``InputError`` (also a ``ValueError``), ``BundleError``,
``RuntimeError`` (also the builtin ``RuntimeError``) and ``InternalError``.
"""

import glob
import importlib.util
import os


def _onnxruntime_from_package():
    """The shared library inside the ``onnxruntime`` (or ``onnxruntime-gpu``) package of
    this Python, found without importing the package; None if there is none."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for package_dir in spec.submodule_search_locations:
        # The wheels ship a versioned name (libonnxruntime.so.1.31.1) and no plain .so.
        found = sorted(glob.glob(os.path.join(package_dir, "capi", "libonnxruntime.so*")))
        if found:
            return found[-1]
    return None


# The runtime loads ONNX Runtime when a bundle is opened and looks first at ORT_DYLIB_PATH,
# then at the .venv of the checkout the module was built in. A user's ORT_DYLIB_PATH wins;
# otherwise the onnxruntime package of this Python, so an installed wheel works anywhere.
if "ORT_DYLIB_PATH" not in os.environ:
    _library = _onnxruntime_from_package()
    if _library is not None:
        os.environ["ORT_DYLIB_PATH"] = _library

from ._native import (  # noqa: E402  (ORT_DYLIB_PATH must be settled first)
    Answer,
    BundleError,
    Error,
    FrameSource,
    InputError,
    InternalError,
    LiveScene,
    Localization,
    Model,
    RuntimeError,
    Scene,
    __version__,
    frames,
    open,
)

# `open` and `RuntimeError` stay out of `from loc3r import *`: they would shadow builtins.
__all__ = ["Answer", "BundleError", "Error", "FrameSource", "InputError", "InternalError", "LiveScene", "Localization", "Model", "Scene", "frames"]
