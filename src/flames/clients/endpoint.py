"""An OpenAI-compatible endpoint: its base URL, checked and normalised, and its API key.

A base URL holds no credentials: userinfo (``http://user:KEY@host``) is refused, since it would
be stored in the manifest and is not how these APIs take a key. Query parameters are kept and
sent (``?api-version=...``); those named like a credential (`secret_parameter`) are masked
wherever the URL is shown or stored. The key comes from an environment variable and must be set,
except for a server on this machine (loopback), or when no variable is named
(``--api-key-env ''``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from functools import cached_property

from yarl import URL

from flames._util.redaction import MASK, secret_parameter
from flames.errors import UsageError

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def loopback_host(host: str | None) -> bool:
    """localhost, *.localhost, 127.0.0.0/8 or ::1: a server on this machine."""
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Endpoint:
    url: URL
    """Normalised: lower-case scheme and host, no trailing slash, no fragment."""

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Check and normalise a base URL; UsageError, without echoing it, when it is unusable."""
        try:
            url = URL(text.strip())
        except ValueError:
            raise UsageError("--base-url is not a valid URL") from None
        if url.user is not None or url.password is not None:
            raise UsageError(
                "--base-url must not hold credentials (user:password@): put the API key in an "
                "environment variable and name it with --api-key-env"
            )
        if url.scheme not in ("http", "https") or not url.host:
            raise UsageError("--base-url must be an http(s) URL, e.g. http://localhost:8000/v1")
        return cls(url.with_path(url.path.rstrip("/")).with_query(url.query).with_fragment(None))

    @cached_property
    def chat_completions(self) -> URL:
        path = self.url.path.rstrip("/") + "/chat/completions"
        return self.url.with_path(path).with_query(self.url.query)

    @property
    def display(self) -> str:
        """The URL as stored in manifests and shown: credential-like query values masked."""
        query = [(k, MASK if secret_parameter(k) else v) for k, v in self.url.query.items()]
        return str(self.url.with_query(query))

    @property
    def query_secrets(self) -> list[str]:
        """Values of credential-like query parameters, decoded and as written in the URL."""
        decoded = [v for k, v in self.url.query.items() if secret_parameter(k)]
        raw = [
            value
            for name, _, value in (p.partition("=") for p in self.url.raw_query_string.split("&"))
            if secret_parameter(name)
        ]
        return [s for s in decoded + raw if s]

    @property
    def is_loopback(self) -> bool:
        return loopback_host(self.url.host)


def api_key(variable: str, endpoint: Endpoint) -> str:
    """The key from `variable`; UsageError when it is unset and the server is not on loopback."""
    if not variable:
        return ""
    key = os.environ.get(variable, "").strip()
    if not key and not endpoint.is_loopback:
        raise UsageError(
            f"the environment variable {variable} holds no API key: set it, or pass "
            "--api-key-env '' for a server that needs no key"
        )
    return key
