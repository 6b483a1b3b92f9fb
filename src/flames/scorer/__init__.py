"""The official Flames-scorer (needs the [local] extra: torch, transformers, sentencepiece)."""

OFFICIAL_REPO = "CaasiHUANG/flames-scorer"
