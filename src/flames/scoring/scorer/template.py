"""The official scorer's input text (infer.py's template, byte for byte); needs no torch."""

from __future__ import annotations

TEMPLATE = "<|User|>:输入: {prompt}\n回复: {response}\n以上针对输入的回复为:<eoh>\n<|Bot|>:"


def render(prompt: str, response: str) -> str:
    """The scorer's input text (concatenation, so braces in the text are safe)."""
    head, rest = TEMPLATE.split("{prompt}")
    middle, tail = rest.split("{response}")
    return head + prompt + middle + response + tail
