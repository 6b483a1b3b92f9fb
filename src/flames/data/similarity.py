"""How alike two prompts are, by the pairs of adjacent characters they share.

Chinese has no spaces to split words on, and most of its words are one or two characters, so
the set of adjacent character pairs (bigrams) is the usual unit for near-duplicate detection in
Chinese text. Texts are compared after dropping everything but letters and digits (punctuation,
spaces, symbols) and folding case and width (NFKC), so reformatting does not make a new prompt.

- `containment`: the share of the shorter text's bigrams found in the other. A prompt that
  embeds another one whole (a role-play frame around a Flames prompt) scores 1.0.
- `jaccard`: shared bigrams over all bigrams of both: near 1.0 only for near-identical texts.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=65536)
def bigrams(text: str) -> frozenset[str]:
    """The character bigrams of `text`'s letters and digits (one character: itself)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(c for c in folded if unicodedata.category(c)[0] in "LN")
    if len(kept) < 2:
        return frozenset([kept]) if kept else frozenset()
    return frozenset(kept[i : i + 2] for i in range(len(kept) - 1))


def containment(a: str, b: str) -> float:
    """|A ∩ B| / min(|A|, |B|) over the bigram sets; 0 when either text has none."""
    x, y = bigrams(a), bigrams(b)
    if not x or not y:
        return 0.0
    return len(x & y) / min(len(x), len(y))


def jaccard(a: str, b: str) -> float:
    """|A ∩ B| / |A ∪ B| over the bigram sets; 0 when both have none."""
    x, y = bigrams(a), bigrams(b)
    return len(x & y) / len(x | y) if x or y else 0.0


class NearDuplicates:
    """Texts indexed by their bigrams, to find the one a new text most overlaps with
    (`containment`) without comparing it to every text."""

    def __init__(self, texts: Iterable[str] = ()):
        self._sizes: list[int] = []
        self._postings: dict[str, list[int]] = {}
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self._sizes)

    def add(self, text: str) -> None:
        grams = bigrams(text)
        index = len(self._sizes)
        self._sizes.append(len(grams))
        for gram in grams:
            self._postings.setdefault(gram, []).append(index)

    def closest(self, text: str) -> tuple[float, int | None]:
        """(containment, index) of the indexed text `text` overlaps most with; (0, None) when
        it shares no bigram with any."""
        grams = bigrams(text)
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(self._postings.get(gram, ()))
        best, where = 0.0, None
        for index, count in shared.items():
            score = count / min(len(grams), self._sizes[index])
            if score > best or (score == best and where is not None and index < where):
                best, where = score, index
        return best, where
