"""Masking secrets (API keys and their encodings) in text that is stored or printed.

A server may echo the key it was given: plainly, URL-encoded, JSON-escaped, or base64-encoded
(for instance a whole ``Authorization: Bearer KEY`` header). Every such form of every known
secret is masked, and so is anything that merely looks like a credential in error text: URL
userinfo, key-like query parameters and ``Bearer``/``Basic`` tokens. Masking comes before any
cut, so a key cannot survive by straddling one.

A URL query parameter holds a secret when its name says so (`secret_parameter`): one of its
words is a credential word (``key``, ``token``, ``sig``, ``code`` ...), or it ends in one
(``apikey``, ``accesstoken``), or the user named it in ``$FLAMES_SECRET_PARAMS``.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus

MASK = "***"
MIN_SECRET_CHARS = 6
"""Shorter values are still masked verbatim, but not in their encodings (too many false hits)."""

SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "sig",
        "signature",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "code",
        "jwt",
    }
)
"""A query parameter's name holding one of these words (split at anything but letters and
digits, any case) marks its value as a secret: ``key``, ``subscription-key`` (Azure API
Management), ``x-api-key``, ``access_key``, ``code`` (Azure Functions), ``sig`` (Azure SAS),
``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token`` ..."""
SECRET_ENDINGS = ("key", "token", "secret", "signature", "password", "passwd", "credential")
"""So does a name that ends in one of these once its separators are dropped: ``apikey``,
``accesstoken``, ``clientsecret``, ``subscriptionkey`` ..."""
SECRET_PARAMS_ENV = "FLAMES_SECRET_PARAMS"
"""More parameter names whose values are secrets, separated by commas or spaces (any case)."""


def secret_parameter(name: str) -> bool:
    """Whether the URL query parameter `name` holds a secret (`SECRET_WORDS`, `SECRET_ENDINGS`,
    or named in ``$FLAMES_SECRET_PARAMS``)."""
    name = unquote_plus(name).strip().lower()
    words = [w for w in re.split(r"[^a-z0-9]+", name) if w]
    compact = "".join(words)
    extra = {n.lower() for n in re.split(r"[,\s]+", os.environ.get(SECRET_PARAMS_ENV, "")) if n}
    return (
        name in extra
        or any(word in SECRET_WORDS for word in words)
        or (bool(compact) and compact.endswith(SECRET_ENDINGS))
    )


_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
_QUERY_PARAMETER = re.compile(r"([?&;]([^=&;#\s\"'<>?]+)=)([^&;#\s\"'<>]+)")
_REPEATED_MASK = re.compile(rf"(?:{re.escape(MASK)}){{2,}}")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{4,}")


def base64_cores(secret: bytes, alphabet: bytes | None = None) -> list[str]:
    """What base64 of any data holding `secret` must contain, whatever precedes it.

    Base64 turns 3 bytes into 4 characters, so the encoding of `secret` depends on its offset
    modulo 3 in the surrounding data. For each offset this is the run of characters fixed by the
    secret's bytes alone, without the 1-2 boundary characters shared with its neighbours.
    """
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret, altchars=alphabet).decode("ascii")
        start = -(-8 * offset // 6)  # first character made of the secret's bits only
        end = 8 * (offset + len(secret)) // 6
        cores.append(encoded[start:end])
    return cores


def encoded_forms(secret: str) -> set[str]:
    """The secret as servers may echo it: verbatim, URL-encoded, JSON-escaped, base64."""
    forms = {secret}
    if len(secret) < MIN_SECRET_CHARS:
        return forms
    for encoded in (quote(secret, safe=""), quote_plus(secret), quote(secret)):
        forms.add(encoded)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
    escaped = json.dumps(secret)[1:-1]
    forms |= {escaped, escaped.replace("/", "\\/")}
    raw = secret.encode("utf-8")
    for alphabet in (None, b"-_"):
        forms.update(base64_cores(raw, alphabet))
    return {f for f in forms if f}


def _masked_parameter(found: re.Match[str]) -> str:
    return found.group(1) + MASK if secret_parameter(found.group(2)) else found.group(0)


def masked_url(url: str) -> str:
    """`url` with the values of its secret query parameters masked (and any userinfo)."""
    return _QUERY_PARAMETER.sub(_masked_parameter, _USERINFO.sub(MASK + "@", url))


class Redactor:
    """Masks known secrets in all their forms, and credential-like text in error messages.

    In error messages, any run of `FRAGMENT` or more characters shared with a form of a secret
    is masked too: a server that cut its own message through the key leaves a piece of it.
    """

    FRAGMENT = 12

    def __init__(self, secrets: Iterable[str] = ()):
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= encoded_forms(secret)
        self._known = (
            re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
            if forms
            else None
        )
        n = self.FRAGMENT
        long_forms = [f for f in forms if len(f) >= n]
        self._pieces = {f[i : i + n] for f in long_forms for i in range(len(f) - n + 1)}
        # Any run of n characters of a form holds one of these aligned blocks: a cheap pre-check.
        half = n // 2
        self._blocks = {
            f[i : i + half] for f in long_forms for i in range(0, len(f) - half + 1, half)
        }

    def known(self, text: str) -> str:
        """Mask the known secrets only: for model output, which is otherwise kept as it is."""
        return self._known.sub(MASK, text) if self._known else text

    def error(self, text: str) -> str:
        """Mask known secrets, pieces of them, and anything shaped like a credential."""
        text = self._pieces_masked(self.known(text))
        text = _USERINFO.sub(MASK + "@", text)
        text = _QUERY_PARAMETER.sub(_masked_parameter, text)
        text = _AUTH_SCHEME.sub(r"\1\2" + MASK, text)
        return _REPEATED_MASK.sub(MASK, text)

    def _pieces_masked(self, text: str) -> str:
        n = self.FRAGMENT
        if not any(block in text for block in self._blocks):
            return text
        runs: list[list[int]] = []
        for i in range(len(text) - n + 1):
            if text[i : i + n] in self._pieces:
                if runs and i <= runs[-1][1]:
                    runs[-1][1] = i + n
                else:
                    runs.append([i, i + n])
        out, last = [], 0
        for start, end in runs:
            out += [text[last:start], MASK]
            last = end
        return "".join(out) + text[last:]
