"""The official Flames-scorer (needs the [local] extra: torch, transformers, sentencepiece)."""

# The released checkpoint on the Hugging Face hub, as named by its model card, config.json and
# infer.py, and by the official repository's README. `HF_ENDPOINT` redirects the download to a
# hub mirror (tests/test_official_data.py checks that it does).
OFFICIAL_REPO = "CaasiHUANG/flames-scorer"
