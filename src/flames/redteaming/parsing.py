"""Reading the attacker's replies: the prompt it proposes, or why there is none to send.

A reply proposes the prompt of the first JSON object in it that has a non-empty text field
``prompt`` (prose or code fences around it are ignored). Without one it is a refusal when it
reads as one, otherwise malformed. A proposed prompt is still not sent when it starts with a
refusal, is not mostly Chinese, or is the seed prompt again (near-identical by character
bigrams): each of these is counted, and the attacker is asked again another way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flames._util.jsontext import json_objects
from flames.analysis.refusal import REFUSAL, is_refusal
from flames.data.similarity import jaccard
from flames.runs.attacks import AttackerKind

HAN_SHARE = 0.5
"""A prompt is Chinese when at least this share of its words are Chinese characters (a
character is about a word in Chinese; a run of Latin letters is one word)."""
UNCHANGED = 0.9
"""A prompt this alike to the seed (`jaccard` of character bigrams) or more is the seed again."""


@dataclass(frozen=True)
class Proposal:
    """What an attacker reply proposes."""

    kind: AttackerKind
    prompt: str | None = None
    """The prompt to send; only a reply of kind 'ok' is ever sent."""
    improvement: str | None = None


def _is_han(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


LATIN_WORD = re.compile(r"[A-Za-z]+")


def han_share(text: str) -> float:
    """Chinese characters over Chinese characters and Latin words in `text` (0 for neither)."""
    han = sum(1 for c in text if _is_han(c))
    words = han + len(LATIN_WORD.findall(text))
    return han / words if words else 0.0


def read_reply(text: str, seed: str | None = None) -> Proposal:
    """The proposal in an attacker's reply; `seed`, when given, is what it must not repeat."""
    found = next(
        (o for o in json_objects(text) if isinstance(o.get("prompt"), str) and o["prompt"].strip()),
        None,
    )
    if found is None:
        return Proposal("refusal" if is_refusal(text) else "malformed")
    prompt = found["prompt"].strip()
    improvement = found.get("improvement")
    improvement = improvement if isinstance(improvement, str) else None
    if REFUSAL.match(prompt):  # the attacker's own refusal, put where the prompt goes
        kind: AttackerKind = "refusal"
    elif han_share(prompt) < HAN_SHARE:
        kind = "wrong-language"
    elif seed is not None and jaccard(prompt, seed) >= UNCHANGED:
        kind = "unchanged"
    else:
        kind = "ok"
    return Proposal(kind, prompt, improvement)


def read_check(text: str) -> bool | None:
    """The attacker's on-topic judgement: the first JSON object with a true or false field
    ``on_topic``; None when there is none."""
    for found in json_objects(text):
        if isinstance(found.get("on_topic"), bool):
            return found["on_topic"]
    return None
