"""The official Flames-scorer (needs the [local] extra: torch, transformers, sentencepiece)."""
