#!/usr/bin/env python3
"""ScanQA golden fixture: pycocoevalcap 1.2's own PTB tokenizer and BLEU / ROUGE-L / CIDEr scorers
run on randomized answers, for eval/tests/scanqa_golden.rs (see tools/golden/README-scanqa.md).

Dev-only: needs `pip install pycocoevalcap==1.2` (in any venv) and Java 8+ for the tokenizer jar
shipped in that package. CI only reads the fixture this writes.

    python tools/golden/scanqa_golden.py --out eval/tests/fixtures/scanqa_golden.json
"""

import argparse
import json
import random

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

# The synthetic rooms' vocabulary (loc3r-synth): colours, object classes, count words; plus the
# words and punctuation free-form answers carry.
COLOURS = ["red", "green", "blue", "yellow", "white", "black", "brown", "orange", "purple", "gray"]
CLASSES = ["chair", "table", "bed", "sofa", "cabinet", "lamp", "tv", "plant", "door", "window"]
NUMBERS = ["one", "two", "three", "four", "2", "3", "10", "3.5", "1,000", "10:30", "1/2", "0.5", "21"]
WORDS = ["the", "a", "an", "on", "in", "next", "to", "left", "right", "of", "behind", "near", "wooden", "small", "large",
         "it", "is", "there", "are", "corner", "room", "wall", "floor", "by", "under", "above", "and"]
ATTACHED = [".", ",", "!", "?", "'s", "n't", ":", ";", "...", "-", "s"]
WRAPPERS = [("(", ")"), ("[", "]"), ("\"", "\""), ("'", "'"), ("{", "}")]
FREE = ["$5", "50%", "#1", "co-op", "don't", "can't", "it's", "o'clock", "cannot", "u.s.a.", "etc.", "mr.", "5m", "3d",
        "x-ray", "left-", "-left", "a--b", "2-3", "at&t", "what?!", "yes!!", "wait..", "a/b", "a+b", "TV's", "80's", "'90s"]

# Hand-picked tokenizer cases, one or more per rule of docs/evaluation.md ("PTB tokenizer").
EDGE = [
    "'s",
    "x 's",
    "'d like",
    "the 'm",
    "AT&T",
    "At&t",
    "S&P500",
    "A&B",
    "A+B",
    "AB+CD",
    "a+B",
    "a...",
    "mr...",
    "x.y...",
    "u.s.a..",
    "5%'s",
    "(x)'s",
    "x.'s",
    "1/2n",
    "1/2m",
    "3:30pm",
    "1,000s",
    "a...b",
    "'s'",
    "3 1/2 one",
    "woodenn't 21n't",
    "80's's",
    "can'tn't",
    "hi... wait..",
    "The Brown Chair.",
    "don't know",
    "(white) [black] {x}",
    "\"quoted\" word",
    "5'10\"",
    "it costs $5",
    "one,000",
    "5m",
    "3d",
    "2-3",
    "-5",
    ".5",
    "5.",
    "yes!!",
    "what?!",
    "a--b",
    "a - b",
    "left-",
    "-left",
    "co-op",
    "at&t",
    "u.s.a.",
    "mr. smith",
    "etc.",
    "e.g. this",
    "a. b",
    "j. smith",
    "x.y",
    "colour",
    "grey",
    "o'clock",
    "ma'am",
    "'90s",
    "'twas",
    "y'all",
    "rock'n'roll",
    "cannot",
    "gonna",
    "wanna",
    "gotta",
    "lemme",
    "gimme",
    "tv's",
    "80's",
    "I'm here",
    "they're",
    "we'll",
    "we've",
    "he'd",
    "a+b",
    "a=b",
    "a*b",
    "a/b",
    "1/2",
    "3.5m",
    "10:30",
    "x:",
    "a:b",
    "a;b",
    "hi...",
    "wait..",
    "½",
    "…",
    "&amp;",
    "@home",
    "50%",
    "#1",
    "£5",
    "€5",
    "it's",
    "its'",
    "james' car",
    "can't",
    "won't",
    "ain't",
    "shan't",
    "l'amour",
    "",
    "The Brown Chair.",
    "\"quoted\" word",
    "5'10\"",
    "it costs $5",
]


def word(rng):
    r = rng.random()
    if r < 0.3:
        w = rng.choice(COLOURS)
    elif r < 0.55:
        w = rng.choice(CLASSES)
    elif r < 0.65:
        w = rng.choice(NUMBERS)
    elif r < 0.72:
        w = rng.choice(FREE)
    else:
        w = rng.choice(WORDS)
    if rng.random() < 0.1:
        w = w.capitalize() if rng.random() < 0.7 else w.upper()
    if rng.random() < 0.08:
        w += rng.choice(ATTACHED)
    if rng.random() < 0.04:
        left, right = rng.choice(WRAPPERS)
        w = left + w + right
    return w


def phrase(rng):
    return " ".join(word(rng) for _ in range(rng.randint(1, 5)))


def mutate(rng, text):
    words = text.split(" ")
    r = rng.random()
    if r < 0.2:
        return text
    if r < 0.4 and len(words) > 1:
        del words[rng.randrange(len(words))]
    elif r < 0.6:
        words[rng.randrange(len(words))] = word(rng)
    elif r < 0.75:
        words.insert(rng.randrange(len(words) + 1), word(rng))
    elif r < 0.85:
        return phrase(rng)
    elif r < 0.9:
        return ""
    text = " ".join(words)
    if rng.random() < 0.2:
        text += "."
    if rng.random() < 0.1:
        text = text.capitalize()
    return text


def corpus(rng, n):
    items = []
    for _ in range(n):
        refs = [phrase(rng) for _ in range(rng.choice([1, 1, 1, 2, 2, 3]))]
        items.append({"hypothesis": mutate(rng, rng.choice(refs)), "references": refs})
    return items


def ptb(strings):
    """pycocoevalcap's PTBTokenizer on a list of captions, returned in order."""
    out = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(strings)})
    return [out[i][0] for i in range(len(strings))]


def scores(items):
    gts = {i: list(it["references"]) for i, it in enumerate(items)}
    res = {i: [it["hypothesis"]] for i, it in enumerate(items)}
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_items = Rouge().compute_score(gts, res)
    cider, cider_items = Cider().compute_score(gts, res)
    return {
        "bleu": {"corpus": [float(x) for x in bleu], "per_item": [[float(bleu_items[n][i]) for n in range(4)] for i in range(len(items))]},
        "rouge_l": {"corpus": float(rouge), "per_item": [float(x) for x in rouge_items]},
        "cider": {"corpus": float(cider), "per_item": [float(x) for x in cider_items]},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    raw = {"large": corpus(rng, 300), "block": corpus(rng, 40), "small": corpus(rng, 7)}
    strings = sorted({s for items in raw.values() for it in items for s in [it["hypothesis"], *it["references"]]} | set(EDGE))
    tokenized = dict(zip(strings, ptb(strings)))

    corpora = []
    for name, items in raw.items():
        # Raw whitespace tokens (the video3dllm protocol's scorer inputs) ...
        corpora.append({"name": f"{name}_raw", "items": items, **scores(items)})
        # ... and the PTB-tokenised ones (official / leo_ptb).
        ptb_items = [{"hypothesis": tokenized[it["hypothesis"]], "references": [tokenized[r] for r in it["references"]]} for it in items]
        corpora.append({"name": f"{name}_ptb", "items": ptb_items, **scores(ptb_items)})

    fixture = {
        "generator": "tools/golden/scanqa_golden.py --seed %d (pycocoevalcap 1.2)" % args.seed,
        "ptb": [[s, tokenized[s]] for s in strings],
        "corpora": corpora,
    }
    with open(args.out, "w") as f:
        json.dump(fixture, f, indent=0, ensure_ascii=False)
        f.write("\n")
    print(f"{args.out}: {len(strings)} tokenised strings, {len(corpora)} corpora")


if __name__ == "__main__":
    main()
