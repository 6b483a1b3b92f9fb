"""The published Flames leaderboard (README of the official repository, Dec 11 2023, 17 models).

Numbers as printed: harmless rate in percent, harmless score. They are published numbers, not
results of this tool.
"""

from __future__ import annotations

# The released checkpoint on the Hugging Face hub, as its own infer.py loads it
# (`from_pretrained("CaasiHUANG/flames-scorer")`, in the public copies of infer.py, which also
# default to --max_length 512). `HF_ENDPOINT` redirects the download to a hub mirror
# (tests/test_official_data.py checks that it does). The published
# numbers below were scored with it.
OFFICIAL_REPO = "CaasiHUANG/flames-scorer"

DIMENSIONS = ("Fairness", "Safety", "Morality", "Legality", "Data protection")
N = (249, 429, 201, 46, 76)
"""Denominators behind every published rate (spec section 5)."""

# model: (overall rate, [(rate, score) per dimension])
PUBLISHED: dict[str, tuple[float, list[tuple[float, float]]]] = {
    "ChatGPT": (46.91, [(45.38, 79.8), (45.45, 74.1), (42.79, 76.8), (45.65, 63.8), (55.26, 70.2)]),
    "GPT-4": (40.01, [(41.37, 78.2), (27.51, 67.7), (50.75, 80.6), (30.43, 53.6), (50.0, 66.7)]),
    "Claude": (63.77, [(53.41, 83.4), (28.44, 65.5), (77.11, 91.5), (71.74, 81.2), (88.16, 92.1)]),
    "Minimax": (23.66, [(24.5, 69.9), (18.41, 59.6), (27.86, 70.5), (30.43, 53.6), (17.11, 44.7)]),
    "Ernie Bot": (
        45.96,
        [(42.97, 78.8), (32.17, 69.2), (47.76, 78.1), (60.87, 73.9), (46.05, 64.0)],
    ),
    "InternLM-20B": (
        58.56,
        [(52.61, 83.5), (51.05, 79.2), (54.23, 81.4), (71.74, 81.2), (63.16, 75.4)],
    ),
    "MOSS-16B": (36.18, [(33.33, 74.6), (33.33, 70.6), (31.34, 71.0), (50.0, 66.7), (32.89, 55.3)]),
    "Qwen-14B": (
        41.97,
        [(30.92, 72.2), (36.83, 74.7), (54.23, 82.3), (32.61, 55.1), (55.26, 70.2)],
    ),
    "Baichuan2-13B": (
        43.16,
        [(38.55, 76.4), (53.85, 81.7), (44.78, 77.9), (39.13, 59.4), (39.47, 59.6)],
    ),
    "BELLE-13B": (
        24.76,
        [(22.09, 68.4), (15.38, 57.8), (20.9, 66.5), (39.13, 59.4), (26.32, 50.9)],
    ),
    "InternLM-7B": (
        53.93,
        [(44.58, 78.0), (35.9, 69.1), (51.24, 80.3), (76.09, 84.1), (61.84, 74.6)],
    ),
    "Qwen-7B": (36.45, [(36.14, 77.2), (31.93, 69.2), (40.3, 76.1), (30.43, 53.6), (43.42, 62.3)]),
    "Baichuan2-7B": (
        46.17,
        [(42.17, 79.4), (56.41, 81.6), (39.3, 76.0), (52.17, 68.1), (40.79, 60.5)],
    ),
    "ChatGLM-6B": (33.1, [(26.91, 72.3), (15.38, 60.4), (40.3, 75.6), (50.0, 66.7), (32.89, 55.3)]),
    "ChatGLM2-6B": (
        33.86,
        [(31.73, 74.2), (22.61, 64.3), (43.28, 75.8), (28.26, 52.2), (43.42, 62.3)],
    ),
    "ChatGLM3-6B": (
        36.32,
        [(37.75, 77.8), (32.63, 70.0), (44.78, 77.1), (28.26, 52.2), (38.16, 58.8)],
    ),
    "ChatYuan-770M": (
        41.07,
        [(28.11, 72.3), (54.78, 79.1), (30.35, 71.0), (50.0, 66.7), (42.11, 61.4)],
    ),
}
