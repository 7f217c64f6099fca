#!/usr/bin/env python3
"""SQA3D and VSI-Bench golden fixtures: the benchmarks' own scoring functions run on randomized
predictions, for eval/tests/sqa3d_golden.rs and eval/tests/vsibench_golden.rs (see
tools/golden/README-eval-official.md).

Dev-only. The official functions are read from checkouts of their repositories (never copied into
this one): the named functions are picked out of each file with `ast` and executed alone, so the
heavy imports around them (openai, transformers, lmms-eval, mmengine) are not needed. Needs NumPy,
SciPy, pandas and PyYAML. CI only reads the fixtures this writes.

    python tools/golden/eval_official_golden.py --official DIR --out-dir eval/tests/fixtures
"""

import argparse
import ast
import contextlib
import functools
import io
import json
import math
import random
import re
import sys
import unicodedata
import warnings
from collections import OrderedDict

import numpy as np
import pandas as pd
import scipy
import yaml
from scipy.spatial.transform import Rotation

# The revisions the committed fixtures were made from; README-eval-official.md clones these.
SOURCES = {
    "SQA3D": ("SilongYong/SQA3D", "a98da8fda65f81f614bdfed48c27aae34975c566"),
    "embodied-generalist": ("embodied-generalist/embodied-generalist", "567f2d809cf8b21289d7fb9d3b616ae9c405cba3"),
    "LLaVA-3D": ("ZCMax/LLaVA-3D", "91d979dca9998174c8eda50744de8da448e0ba0c"),
    "GPT4Scene-and-VLN-R1": ("Qi-Zhangyang/GPT4Scene-and-VLN-R1", "988e7f345f24197f61948752542fdc1f9fadc1b5"),
    "thinking-in-space": ("vision-x-nyu/thinking-in-space", "51e089c3ae69b9435e9489058610f5b3964c56a8"),
}


# ------------------------------------------------------------------ loading the official code


def pick(path, names, env, inside=None):
    """Executes only the top-level definitions `names` of the Python file `path` (or, with
    `inside`, the functions `names` nested in the body of the top-level function or class
    `inside`) in a namespace seeded with `env`, and returns that namespace."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    scope = tree.body
    if inside is not None:
        (outer,) = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == inside]
        scope = outer.body
    chosen, found = [], set()
    for node in scope:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            node.decorator_list = []
            chosen.append(node)
            found.add(node.name)
        elif isinstance(node, ast.Assign):
            targets = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if targets & set(names):
                chosen.append(node)
                found |= targets
    missing = set(names) - found
    if missing:
        sys.exit(f"{path}: {sorted(missing)} not found; is it the revision in SOURCES?")
    namespace = dict(env)
    with warnings.catch_warnings():
        # The normalisers' patterns are plain strings with `\.` and `\s` in them.
        warnings.simplefilter("ignore")
        exec(compile(ast.Module(body=chosen, type_ignores=[]), path, "exec"), namespace)
    return namespace


def quiet(f, *args, **kwargs):
    """Calls f with its prints swallowed (the official scorers print every item)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return f(*args, **kwargs)


class Official:
    def __init__(self, root):
        p = lambda repo, rel: f"{root}/{repo}/{rel}"  # noqa: E731
        base = {"re": re, "math": math, "np": np, "R": Rotation}
        sqa3d = pick(p("SQA3D", "LLM/eval_sqa3d_llm.py"), ["clean_answer"], base)
        self._sqa3d_clean = sqa3d["clean_answer"]
        self.leo_clean = pick(p("embodied-generalist", "data/data_utils.py"), ["clean_answer"], base)["clean_answer"]
        leo = pick(p("embodied-generalist", "evaluator/scanqa_eval.py"), ["answer_match"], base, inside="ScanQAEvaluator")
        self.leo_match = functools.partial(leo["answer_match"], None)
        llava = pick(p("LLaVA-3D", "llava/eval/sqa3d_evaluator.py"), ["clean_answer", "answer_match", "calc_sqa3d_score"], {**base, "tqdm": lambda x: x})
        self.llava_clean, self.llava_match, self.llava_score = llava["clean_answer"], llava["answer_match"], llava["calc_sqa3d_score"]
        gpt4scene = pick(p("GPT4Scene-and-VLN-R1", "evaluate/utils/helper.py"), ["clean_answer", "answer_match"], base)
        self.gpt4scene_clean, self.gpt4scene_match = gpt4scene["clean_answer"], gpt4scene["answer_match"]

        loc_path = p("SQA3D", "utils/localization_metric.py")
        self.metric_localization = pick(loc_path, ["metric_localization"], base)["metric_localization"]
        inner = pick(loc_path, ["pos_distance", "rot_distance"], base, inside="metric_localization")
        self.pos_distance, self.rot_distance = inner["pos_distance"], inner["rot_distance"]

        vsi_names = [
            "MCA_QUESTION_TYPES", "NA_QUESTION_TYPES", "METRICS_FOR_MCA", "METRICS_FOR_NA", "WORST_CASE_FOR_METRICS",
            "fuzzy_matching", "exact_match", "abs_dist_norm", "mean_relative_accuracy", "to_float",
            "vsibench_process_results", "vsibench_aggregate_results", "vsibench_doc_to_text",
        ]

        class Logger:
            def info(self, *_):
                pass

        vsi_env = {**base, "pd": pd, "partial": functools.partial, "OrderedDict": OrderedDict, "eval_logger": Logger()}
        self.vsi = pick(p("thinking-in-space", "lmms_eval/tasks/vsibench/utils.py"), vsi_names, vsi_env)
        # The task's default prompt arguments, read from its yaml as lmms-eval does (the lines with
        # a `!function` tag dropped, as its utils.py drops them).
        with open(p("thinking-in-space", "lmms_eval/tasks/vsibench/vsibench.yaml"), encoding="utf-8") as f:
            task = yaml.safe_load("".join(line for line in f if "!function" not in line))
        self.vsi_prompt_kwargs = task["lmms_eval_specific_kwargs"]["default"]

    def normalize(self, s):
        """SQA3D's normaliser; its three copies used for EM / EM-R must agree with it."""
        out = self._sqa3d_clean([{"answer": s}])[0]["answer"]
        for copy in (self.leo_clean, self.llava_clean, self.gpt4scene_clean):
            assert copy(s) == out, (s, copy(s), out)
        return out


# ------------------------------------------------------------------------------ SQA3D answers

WORDS = ["chair", "table", "bed", "sofa", "lamp", "door", "window", "left", "right", "front", "behind", "yes", "no",
         "brown", "white", "black", "wooden", "backpack", "trash can", "north", "backwards", "backward", "toilet",
         "desk", "cabinet", "shelf", "sink", "couch", "towel", "monitor", "clock", "nightstand", "box"]
TYPOS = ["letf", "let", "tehre", "rigth", "rght", "behine", "tv", "TV", "Tv", "chai", "wasing", "waslked", "oclock",
         "o' clock", "o'   clock", "o'clock", "mat2", "no1", "x1y", "mat22", "a1", "lamp3"]
NUMBERS = ["0", "none", "None", "1", "2", "3", "4", "5", "7", "10", "12", "19", "20", "21", "22", "23", "24", "100",
           "1.5", "2.5", "0.5", "1,000", "2-3", "3:30", "-1", "two", "twenty-three", "zero", "3rd", "1st", "10am"]
ARTICLES = ["a", "an", "the", "A", "An", "The", "THE"]
PUNCT = [".", ",", "!", "?", ";", ":", "'", "\"", "-", "(", ")", "...", "’", "'s", "n't", " .", " ?", "/", "&", "_"]
UNICODE = ["café", "façade", "naïve", "it’s", "don’t", "“chair”", "İstanbul", "KELVIN\u212a", "straße", "ΟΔΟΣ",
           "椅子", "１２", "٣", "½", "é", "e\u0301", "\u00a0", "\u2003", "\u200b", "\x1c", "\x1f", "\t", "\n", "\r",
           "\u2028", "\x85", "😀", "Σ"]
CONTRACTIONS = ["don't", "can't", "it's", "I'm", "they're", "won't", "there's", "what's", "isn't"]
SPACES = [" ", " ", " ", "  ", "   ", "\t", " \n", "\n"]


def answer_word(rng):
    r = rng.random()
    pool = (WORDS if r < 0.35 else TYPOS if r < 0.45 else NUMBERS if r < 0.6 else ARTICLES if r < 0.72
            else CONTRACTIONS if r < 0.78 else UNICODE if r < 0.88 else PUNCT)
    w = rng.choice(pool)
    if rng.random() < 0.15:
        w = w.upper() if rng.random() < 0.5 else w.capitalize()
    if rng.random() < 0.1:
        w += rng.choice(PUNCT)
    return w


def answer_text(rng):
    n = rng.choice([0, 1, 1, 1, 2, 2, 3, 4, 6])
    text = ""
    for i in range(n):
        text += answer_word(rng) + (rng.choice(SPACES) if i + 1 < n else "")
    r = rng.random()
    if r < 0.1:
        text = rng.choice(SPACES) + text
    elif r < 0.2:
        text += rng.choice([" ", "  ", " \n", "  \n", "\n", "\n\n", " \n ", ".", ". ", ".  ", " ."])
    return text


# Hand-picked normaliser inputs: one or more per step and per quirk of their order.
NORMALIZE_EDGE = [
    "", " ", "   ", "\n", " \n", "yes  \n", "  yes  \n", "yes \n\n", "yes \n \n", "yes\t \t", "a \n ",
    "left    side", "end.   next", "end.  ", "chair .", "Yes.", "The chair", "2", "1.5", "2.5", "0.5", "1,000",
    "2-3", "a 2", "let me see", "it’s", "café", "the the box", "a a chair", "a a a chair", "a an apple",
    "the a chair", "a 2b", "banana a", "a  box", "a\tbox", "an", "the", "a", "the 1", "the tv", "a tv", "tv's",
    "none", "mat2", "mat22", "x1y", "21", "22", "23", "24", "20", "0", "00", "5 o' \u0020 clock", "5 o'clock",
    "oclock", "o'clock", "o'  clock", "o' clockwise", "Go Backwards!", "backwards-facing", "letf rigth rght tehre",
    "behine chai wasing waslked", "no", "north", "a\u00a0box", "no\u00a01", "a\u1680b", "a\u3000b", "a\u001cb",
    "a\u200bb", "İ", "\u212a", "ΣΑΣ", "façade", "\u2028", "\x85", "x\u2029", "one\r\ntwo", "“quoted”", "'single'",
    "it's", "don't", "o'", "-", "--", ":", "1:30", "3rd", "the-box", "the,box", "the 'box'", "an 8", "a b c d",
    "the 3 chairs", "an apple a day", "the  box", "The The Box",
]


def match_case(rng, normalize):
    """A prediction and its ground truths, built so that every matching rule is reached."""
    gts = [answer_text(rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    base = rng.choice(gts)
    r = rng.random()
    if r < 0.2:
        pred = base
    elif r < 0.3:
        pred = rng.choice(ARTICLES) + " " + base
    elif r < 0.4:
        pred = base.upper() + rng.choice(["", ".", " .", "!"])
    elif r < 0.5:
        words = base.split()
        pred = " ".join(words[: rng.randint(0, len(words))])
    elif r < 0.6:
        pred = base + rng.choice(SPACES) + answer_word(rng)
    elif r < 0.67:
        pred = base.replace(" ", "", 1)
    elif r < 0.72:
        pred = ""
    elif r < 0.8 and len(gts) > 1:
        # A containment hit on an earlier ground truth before an exact one (LEO's loop).
        pred = normalize(gts[-1])
        gts[0] = pred + " " + answer_word(rng)
    else:
        pred = answer_text(rng)
    return pred, gts


# ------------------------------------------------------------------------- SQA3D localization


def quat_about_z(rng, psi_deg):
    """A quaternion about z for angle psi_deg, at a random scale, sign and with tiny x/y (which
    our scorer accepts up to 1e-6)."""
    h = math.radians(psi_deg) / 2.0
    q = [0.0, 0.0, math.sin(h), math.cos(h)]
    r = rng.random()
    if r < 0.3:
        q = [-v for v in q]
    elif r < 0.4:
        s = rng.choice([0.5, 2.0, 3.7, 1e-3, 1e3])
        q = [v * s for v in q]
    elif r < 0.45:
        q[0], q[1] = rng.uniform(-1e-7, 1e-7), rng.uniform(-1e-7, 1e-7)
    return q


def localization_samples(rng, n):
    samples = []
    for i in range(n):
        gx, gy = rng.uniform(-5, 5), rng.uniform(-5, 5)
        psi = rng.uniform(-180, 180)
        if i % 17 == 0:
            psi = rng.choice([0.0, 90.0, -90.0, 180.0, -180.0, 179.999, -179.999])
        k = rng.choice([1, 1, 1, 2, 3])
        preds_p, preds_r = [], []
        for _ in range(k):
            mode = rng.random()
            # Positions: uniform, near a threshold (±1 µm and ±1e-12 m), or on one exactly.
            if mode < 0.3:
                px, py = rng.uniform(-6, 6), rng.uniform(-6, 6)
            elif mode < 0.7:
                d = rng.choice([0.5, 1.0]) + rng.choice([-1e-6, 1e-6, -1e-12, 1e-12, -0.01, 0.01])
                a = rng.uniform(-math.pi, math.pi)
                px, py = gx + d * math.cos(a), gy + d * math.sin(a)
            else:
                d = rng.choice([0.5, 1.0, 0.3, 0.8])
                px, py = (gx + d, gy) if rng.random() < 0.5 else (gx, gy - d)
            # Yaws: uniform, or the ground truth's ± a threshold ± 1e-6° (wrapping through ±180°).
            if rng.random() < 0.35:
                pp = rng.uniform(-180, 180)
            else:
                pp = psi + rng.choice([-1, 1]) * (rng.choice([15.0, 30.0]) + rng.choice([-1e-6, 1e-6, -0.5, 0.5]))
                pp = (pp + 180.0) % 360.0 - 180.0
            preds_p.append([px, py, rng.choice([0.0, 0.0, rng.uniform(-2, 2)])])
            preds_r.append(quat_about_z(rng, pp))
        samples.append({"gt_pos": [gx, gy, 0.0], "gt_rot": quat_about_z(rng, psi), "pred_pos": preds_p, "pred_rot": preds_r})
    return samples


def localization(off, samples):
    """Per-sample official errors and threshold flags, and the official accuracies."""
    thresholds = [("acc@0.5m", 0), ("acc@1.0m", 1), ("acc@15°", 2), ("acc@30°", 3)]
    for s in samples:
        gp = np.array(s["gt_pos"])
        s["position_error"] = min(off.pos_distance(gp, np.array(p)) for p in s["pred_pos"])
        s["angle_error_deg"] = min(off.rot_distance(s["gt_rot"], r) for r in s["pred_rot"])
        one = quiet(off.metric_localization, [gp], [s["gt_rot"]], [[np.array(p) for p in s["pred_pos"]]], [s["pred_rot"]])
        s["hits"] = [int(next(iter(one[name]))) for name, _ in thresholds]
        # Angle errors that land on a threshold are decided by rounding, not by the metric.
        for t in (15.0, 30.0):
            assert abs(s["angle_error_deg"] - t) > 1e-9, s
    res = quiet(
        off.metric_localization,
        [np.array(s["gt_pos"]) for s in samples],
        [s["gt_rot"] for s in samples],
        [[np.array(p) for p in s["pred_pos"]] for s in samples],
        [s["pred_rot"] for s in samples],
    )
    return {name: float(next(iter(res[name]))) for name, _ in thresholds}


# -------------------------------------------------------------------------------- VSI-Bench

NUMERIC_TYPES = ["object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation"]
MC_TYPES = ["object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium",
            "object_rel_direction_hard", "route_planning", "obj_appearance_order"]


def unicode_digits(value, zero):
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in value)


def decimal_zeros():
    return [cp for cp in range(sys.maxunicode + 1) if unicodedata.decimal(chr(cp), None) == 0]


def numeric_truth(rng, question_type):
    if question_type == "object_counting":
        return str(rng.randint(1, 12))
    if rng.random() < 0.03:
        return rng.choice(["-2.5", "-1", "1e-3", "1e6", "inf"])
    mag = {"object_abs_distance": (0.1, 8), "object_size_estimation": (5, 300), "room_size_estimation": (5, 80)}[question_type]
    return str(round(rng.uniform(*mag), rng.choice([0, 1, 1, 2])))


def numeric_prediction(rng, gt):
    g = float(gt)
    r = rng.random()
    if r < 0.45:
        # Relative errors around every MRA threshold, on either side.
        rel = rng.choice([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]) + rng.choice([-1e-9, 0.0, 1e-9, -0.01, 0.01])
        v = g * (1 + rng.choice([-1, 1]) * rel)
        text = repr(v) if rng.random() < 0.5 else f"{v:.{rng.choice([0, 1, 2, 3])}f}"
    elif r < 0.6:
        text = rng.choice([gt, str(int(g)) if math.isfinite(g) else gt, f"{g:g}" if math.isfinite(g) else gt])
    elif r < 0.75:
        text = rng.choice(["0", "-0", "0.0", "-3", "-1e3", "1e400", "-1e400", "5e-324", "1e-9", "999999999", "1_000",
                           "1__0", "_1", "1.", ".5", "4.", "1e0", "1E+01", "0x10", "1,000", "nan", "NaN", "-nan", "inf",
                           "-inf", "Infinity", "iNfInItY", "+5", "--5", "+-5", "1.2.3", "1e", "e5", "", " ", "."])
    elif r < 0.85:
        base = rng.choice([gt, "3", "12.5"])
        text = rng.choice([base + " meters", base + "m", base + ".", base + "..", base + ". ", " " + base, base + "\n",
                           base + "\nmeters", "about " + base, base + ",", "(" + base + ")", "\u00a0" + base,
                           base + "\u00a0", "\x1c" + base, base + "\t", "−" + base, "＋" + base])
    elif r < 0.93:
        text = unicode_digits(rng.choice([gt, "12", "3.5", "1e1"]), rng.choice([0x660, 0x966, 0xFF10, 0x1D7CE, 0x6F0]))
    else:
        text = rng.choice(["three", "twelve", "zero", "none", "I don't know", "a few", "½", "²", "⑤", "Ⅻ"])
    return text


def mc_prediction(rng, gt):
    letters = "ABCD"
    other = rng.choice([c for c in letters if c != gt] or ["A"])
    return rng.choice([
        gt, gt.lower(), other, other.lower(), gt + ".", gt + "..", gt + ". chair", gt + ".\nbecause", f"({gt})",
        gt + ")", gt + ",", "The answer is " + gt, "Answer: " + gt, " " + gt, gt + "\n", gt + " ", "\t" + gt,
        gt + "\u00a0", "\u00a0" + gt, gt + gt, chr(ord(gt) + 0xFEE0), "", ".", gt + " is correct", other + ". " + gt,
        gt.lower() + ".", "Option " + gt, gt + ":",
    ])


def mc_truth(rng):
    r = rng.random()
    if r < 0.95:
        return rng.choice("ABCD")
    # Case-folding corner cases: the reference compares str.lower() of both sides.
    return rng.choice(["a", "ΑΣ", "ας", "İ", "i\u0307", "\u212a", "k", "ß", "SS", "ǅ", "ǆ"])


# Hand-picked items: MRA threshold boundaries, non-finite numbers against every sign of ground
# truth, and the extraction rules.
VSI_EDGE = [
    ("object_abs_distance", "1.2", "1.0"), ("object_abs_distance", "1.1", "1.0"), ("object_abs_distance", "1.15", "1.0"),
    ("object_abs_distance", "1.35", "1.0"), ("object_abs_distance", "1.5", "1.0"), ("object_abs_distance", "2", "1"),
    ("object_abs_distance", "0.5", "1"), ("object_abs_distance", "2.5m", "2.5"), ("object_counting", "1e0", "1"),
    ("object_counting", "4", "5"), ("object_size_estimation", "60", "50"), ("room_size_estimation", "18", "20"),
    ("object_abs_distance", "inf", "2.5"), ("object_abs_distance", "-inf", "2.5"), ("object_abs_distance", "nan", "2.5"),
    ("object_abs_distance", "inf", "-2.5"), ("object_abs_distance", "-inf", "-2.5"), ("object_abs_distance", "nan", "-2.5"),
    ("object_abs_distance", "1e400", "-1"), ("object_abs_distance", "3", "-2.5"), ("object_counting", "inf", "inf"),
    ("object_counting", "3", "inf"), ("object_counting", "3", "nan"), ("object_counting", "nan", "nan"),
    ("object_counting", "3", "1e-320"), ("object_counting", "5e-324", "5e-324"), ("object_counting", "1e308", "1e-308"),
    ("room_size_estimation", "20", " 20 "),
    ("room_size_estimation", "20", "２０"), ("room_size_estimation", "20", "\u00a020"),
    ("object_rel_distance", "B", "B"), ("object_rel_distance", "C. lamp", "A"), ("object_rel_direction_medium", "B.", "C"),
    ("object_rel_direction_medium", "c", "C"), ("object_rel_direction_hard", "The answer is D", "D"),
    ("route_planning", "A. Turn left", "A"), ("obj_appearance_order", "(B)", "B"), ("route_planning", "B.\nbecause", "B"),
    ("route_planning", "B,", "B"), ("route_planning", "b", "B"), ("route_planning", "A", " A"), ("route_planning", "", ""),
]


PROMPT_QUESTIONS = [
    "How many chair(s) are in this room?",
    "Measuring from the closest point of each object, what is the distance between the sofa and the lamp (in meters)?",
    "What is the length of the longest dimension (length, width, or height) of the bed, measured in centimeters?",
    "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size of the combined space.",
    "If I am standing by the door and facing the window, is the table to my front-left, front-right, back-left, or back-right?",
    "Which of these objects (chair, table, lamp) is the closest to the tv?\nThink about it.",
]


def vsi_items(rng, n):
    items = [{"question_type": t, "prediction": p, "ground_truth": g} for t, p, g in VSI_EDGE]
    for i in range(n):
        qt = (NUMERIC_TYPES + MC_TYPES)[i % 10] if i < 200 else rng.choice(NUMERIC_TYPES + MC_TYPES)
        if qt in NUMERIC_TYPES:
            gt = numeric_truth(rng, qt)
            pred = numeric_prediction(rng, gt)
        else:
            gt = mc_truth(rng)
            pred = mc_prediction(rng, gt) if gt in "ABCD" else rng.choice(["ΑΣ", "ας", "İ", "i\u0307", "\u212a", "k", "ß", "ss", "SS", "ǅ", "Ǆ", "ǆ", "A"])
        items.append({"question_type": qt, "prediction": pred, "ground_truth": gt})
    return items


def vsi_score(off, item):
    doc = dict(item)
    out = off.vsi["vsibench_process_results"](doc, [item["prediction"]])["vsibench_score"]
    key = "accuracy" if item["question_type"] in MC_TYPES else "MRA:.5:.95:.05"
    return float(out[key]), out


def vsi_aggregate(off, docs):
    res = off.vsi["vsibench_aggregate_results"]([dict(d) for d in docs])
    return {k: float(v) for k, v in res.items() if k not in ("tabulated_keys", "tabulated_results")}


def json_float(v):
    """JSON has no NaN or infinities: those go as Python's repr."""
    return v if v is None or math.isfinite(v) else repr(v)


def vsibench(off, rng):
    items = vsi_items(rng, 600 - len(VSI_EDGE))
    docs = []
    for it in items:
        score, doc = vsi_score(off, it)
        it["score"] = score
        docs.append(doc)

    strings = sorted({it["prediction"] for it in items} | {it["ground_truth"] for it in items if it["question_type"] in NUMERIC_TYPES})
    strings += [unicode_digits("1234567890", z) for z in decimal_zeros()]
    fuzzy = [[s, off.vsi["fuzzy_matching"](s)] for s in sorted({it["prediction"] for it in items})]
    floats = [[s, json_float(off.vsi["to_float"](s))] for s in strings]

    # Corpora: all items, and subsets of question types. The reference merges the three
    # relative-direction difficulties only when `easy` is present (and fails without `medium` or
    # `hard`), so every subset keeps all three or none.
    families = [NUMERIC_TYPES[:1], NUMERIC_TYPES[1:2], NUMERIC_TYPES[2:3], NUMERIC_TYPES[3:], ["object_rel_distance"],
                MC_TYPES[1:4], ["route_planning"], ["obj_appearance_order"]]
    subsets = {"all": NUMERIC_TYPES + MC_TYPES, "numeric": NUMERIC_TYPES, "multiple_choice": MC_TYPES,
               "no_rel_direction": [t for t in NUMERIC_TYPES + MC_TYPES if not t.startswith("object_rel_direction")],
               "rel_direction": MC_TYPES[1:4], "counting": ["object_counting"]}
    for k in range(6):
        chosen = rng.sample(families, rng.randint(1, len(families)))
        subsets[f"random_{k}"] = [t for f in chosen for t in f]
    corpora = []
    for name, types in subsets.items():
        idx = [i for i, it in enumerate(items) if it["question_type"] in types]
        if name.startswith("random_") and rng.random() < 0.5:
            fewer = sorted(rng.sample(idx, max(1, len(idx) // 3)))
            directions = {items[i]["question_type"] for i in fewer} & set(MC_TYPES[1:4])
            if len(directions) in (0, 3):
                idx = fewer
        corpora.append({"name": name, "items": idx, "scores": vsi_aggregate(off, [docs[i] for i in idx])})

    # What the reference does not score: it raises on these (ZeroDivisionError; ValueError).
    raises = []
    for qt, pred, gt in [("object_counting", "3", "0"), ("room_size_estimation", "0", "0.0"), ("object_abs_distance", "nan", "-0"),
                         ("object_counting", "3", "-0.0"), ("what", "A", "A"), ("object_rel_direction", "A", "A")]:
        try:
            vsi_score(off, {"question_type": qt, "prediction": pred, "ground_truth": gt})
        except (ZeroDivisionError, ValueError) as e:
            raises.append({"question_type": qt, "prediction": pred, "ground_truth": gt, "error": type(e).__name__})
        else:
            sys.exit(f"expected the reference to raise on {(qt, pred, gt)}")
    # A ground truth of 0 with a prediction that is not a number: the reference scores 0 (its
    # TypeError comes before the division); loc3r-eval scores the item 0 too but refuses such a
    # document in a ground-truth file.
    zero_truths = []
    for qt, pred, gt in [("object_counting", "three", "0"), ("object_counting", "", "0"), ("object_abs_distance", "2.5m", "0.0")]:
        score, _ = vsi_score(off, {"question_type": qt, "prediction": pred, "ground_truth": gt})
        zero_truths.append({"question_type": qt, "prediction": pred, "ground_truth": gt, "score": score})
    # Numeric ground truths that are not numbers: the reference scores every prediction 0 (its
    # TypeError handler); loc3r-eval refuses the document instead.
    unparsable_truths = []
    for qt, pred, gt in [("object_counting", "3", "three"), ("object_abs_distance", "1.5", ""), ("room_size_estimation", "20", "20 m"),
                         ("object_counting", "5", "\x1c5")]:
        score, _ = vsi_score(off, {"question_type": qt, "prediction": pred, "ground_truth": gt})
        unparsable_truths.append({"question_type": qt, "prediction": pred, "ground_truth": gt, "score": score})

    # The prompts the task asks (loc3r-eval run asks the same text).
    prompts = []
    for k, qt in enumerate(NUMERIC_TYPES + MC_TYPES):
        doc = {"id": k, "question_type": qt, "question": rng.choice(PROMPT_QUESTIONS), "options": None}
        if qt in MC_TYPES:
            doc["options"] = [f"{letter}. {rng.choice(WORDS)}" for letter in "ABCD"[: rng.choice([2, 3, 4])]]
        doc["prompt"] = off.vsi["vsibench_doc_to_text"](dict(doc), dict(off.vsi_prompt_kwargs))
        prompts.append(doc)

    return {"items": items, "prompts": prompts, "fuzzy_matching": fuzzy, "to_float": floats, "corpora": corpora, "raises": raises,
            "zero_truths": zero_truths, "unparsable_truths": unparsable_truths}


# ------------------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="directory with one checkout per repository in SOURCES, named like its key")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    off = Official(args.official)
    rng = random.Random(args.seed)
    versions = f"Python {sys.version.split()[0]} (Unicode {unicodedata.unidata_version}), NumPy {np.__version__}, SciPy {scipy.__version__}, pandas {pd.__version__}"
    sources = {k: f"github.com/{repo}@{commit}" for k, (repo, commit) in SOURCES.items()}

    # SQA3D answers.
    raw = NORMALIZE_EDGE + [answer_text(rng) for _ in range(500)]
    matches = []
    for _ in range(500):
        pred, gts = match_case(rng, off.normalize)
        p, g = off.normalize(pred), [off.normalize(x) for x in gts]
        matches.append({"pred": pred, "gts": gts, "exact_first": list(off.llava_match(p, g)), "exact_first_guard": list(off.gpt4scene_match(p, g)),
                        "leo_loop": list(off.leo_match(p, g))})
        raw += [pred, *gts]
    normalize = [[s, off.normalize(s)] for s in sorted(set(raw))]
    single = [m for m in matches if len(m["gts"]) == 1][:300]
    preds = [{"question_id": i, "text": m["pred"]} for i, m in enumerate(single)]
    truths = [{"question_id": i, "text": m["gts"][0], "type": i % 6} for i, m in enumerate(single)]
    official = quiet(off.llava_score, preds, truths)
    corpus = {"items": [[m["pred"], m["gts"][0]] for m in single], "em": official["[sqa3d] EM1"], "em_r": official["[sqa3d] EM1_refined"]}

    samples = localization_samples(rng, 400)
    accuracies = localization(off, samples)
    one_each = [{**s, "pred_pos": s["pred_pos"][:1], "pred_rot": s["pred_rot"][:1]} for s in samples]
    accuracies_first = localization(off, one_each)

    sqa3d = {
        "generator": f"tools/golden/eval_official_golden.py --seed {args.seed}; {versions}",
        "sources": {k: sources[k] for k in ("SQA3D", "embodied-generalist", "LLaVA-3D", "GPT4Scene-and-VLN-R1")},
        "normalize": normalize,
        "match": matches,
        "corpus": corpus,
        "localization": {"samples": samples, "accuracies": accuracies, "first_prediction_only": accuracies_first},
    }
    vsi = {"generator": sqa3d["generator"], "sources": {"thinking-in-space": sources["thinking-in-space"]}, **vsibench(off, rng)}

    for name, fixture in [("sqa3d_golden.json", sqa3d), ("vsibench_golden.json", vsi)]:
        path = f"{args.out_dir}/{name}"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(fixture, f, indent=0, ensure_ascii=False, allow_nan=False)
            f.write("\n")
        print(path)
    print(f"sqa3d: {len(normalize)} normaliser strings, {len(matches)} match cases, {len(single)} corpus items, {len(samples)} poses; "
          f"vsibench: {len(vsi['items'])} items, {len(vsi['corpora'])} corpora")


if __name__ == "__main__":
    main()
