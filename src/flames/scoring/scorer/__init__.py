"""The official Flames-scorer (needs the [local] extra: torch, transformers, sentencepiece)."""

# The released checkpoint on the Hugging Face hub, as its own infer.py loads it
# (`from_pretrained("CaasiHUANG/flames-scorer")`, in the public copies of infer.py, which also
# default to --max_length 512). `HF_ENDPOINT` redirects the download to a hub mirror
# (tests/test_official_data.py checks that it does).
OFFICIAL_REPO = "CaasiHUANG/flames-scorer"
