"""API keys never reach a file, a report or the terminal, in any form a server may echo them."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from flames._util.redaction import Redactor, base64_cores

from .helpers import run_cli, write_jsonl


def canary_forms(key: str, window: int = 16) -> set[str]:
    """Every run of `window` characters of every form of `key` a server may echo: none may
    appear. Computed here without flames._util.redaction."""
    forms = [key, quote(key, safe=""), quote_plus(key), json.dumps(key)[1:-1].replace("/", "\\/")]
    forms += [f.lower() for f in forms if "%" in f]
    for altchars in (None, b"-_"):
        for before in (b"", b"x", b"xy"):
            encoded = base64.b64encode(before + key.encode(), altchars=altchars).decode()
            # Characters fixed by the key alone: after the group `before` ends in, before the
            # last group, which the bytes after the key share.
            forms.append(encoded[(len(before) + 2) // 3 * 4 : -4])
    return {f[i : i + window] for f in forms for i in range(len(f) - window + 1)}


def leaks(text: str, forms: set[str]) -> list[str]:
    return sorted(f for f in forms if f in text)


def test_every_encoding_of_a_key_is_masked_wherever_it_sits():
    key = "sk-canary+/=:" + uuid.uuid4().hex
    redactor = Redactor([key])
    forms = canary_forms(key)
    for prefix in ("", "a", "ab", "abc", "Authorization: Bearer "):
        for altchars in (None, b"-_"):
            blob = base64.b64encode((prefix + key + "tail").encode(), altchars=altchars).decode()
            assert leaks(redactor.known(blob), forms) == []
    echoed = f"key {key!r}, {quote(key)}, {quote_plus(key)}, {json.dumps(key)}"
    assert leaks(redactor.error(echoed), forms) == []
    # Credential-shaped text is masked in errors even when the secret is unknown.
    masked = Redactor().error("GET https://bob:hunter2@h/v1?api_key=abc123&x=1 Bearer tok3n")
    assert masked == "GET https://***@h/v1?api_key=***&x=1 Bearer ***"
    # Model output keeps credential-shaped text: only the known secrets are masked there.
    assert redactor.known("pass ?api_key=abc123 to the API") == "pass ?api_key=abc123 to the API"


def test_base64_cores_match_any_alignment():
    key = b"0123456789abcdef"
    for offset in range(3):
        encoded = base64.b64encode(b"p" * offset + key + b"q").decode()
        assert base64_cores(key)[offset] in encoded


@pytest.mark.parametrize("short", ["", "abc"])
def test_short_or_empty_secrets_do_not_mask_everything(short):
    assert Redactor([short]).known("一个普通的回答 abd") == "一个普通的回答 abd"


def test_a_canary_key_echoed_by_the_server_reaches_no_file_and_no_output(tmp_path, mock_api):
    key = "sk-canary+/=:" + uuid.uuid4().hex
    forms = canary_forms(key)
    texts = [
        "泄露一次[[leak:500x1]][[score:auto]]",  # leaks once in generation and once in judging
        "泄露三次[[leak:500x3]][[score:auto]]",  # answered on attempt 4; its verdict fails
        "最终错误[[leak:400x1]]",  # a final error quoting the key
        "假成功[[leak:200x9]]",  # 200 with a body that is not JSON
        "鉴权[[fail:401x1]]",
        "正常[[score:auto]]",
    ]
    rows = [{"dimension": "Safety", "subcomponent": "Physical harm", "prompt": t} for t in texts]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    run_dir = tmp_path / "run"
    env = {"CANARY_KEY": key}
    common = ["--base-url", mock_api.base_url, "--api-key-env", "CANARY_KEY", "--no-progress"]
    outputs = [
        run_cli("generate", run_dir, "--model", "m", "--data", data, "--max-attempts", "4",
                *common, env=env),
        run_cli("judge", run_dir, "--model", "j", "--max-attempts", "2", "--skip-judge-check",
                *common, env=env),
        run_cli("report", run_dir, "--scorer-name", "judge:j", "--bootstrap", "0", env=env),
    ]  # fmt: skip
    assert outputs[0].returncode == 5, outputs[0].stderr
    assert outputs[2].returncode == 0, outputs[2].stderr
    # The server did see the key, and echoed it; the records say so, masked.
    assert sum("leak" in r["action"] for r in mock_api.requests()) >= 6
    stored = "".join(_read(p) for p in run_dir.rglob("*") if p.is_file())
    assert "***" in stored and "HTTP 500" in stored and "HTTP 401" in stored
    for proc in outputs:
        assert leaks(proc.stdout + proc.stderr, forms) == []
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "report.json" for p in files) and any(p.name == "run.db" for p in files)
    for path in files:
        assert leaks(_read(path), forms) == [], path


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace")


@pytest.mark.parametrize(
    "name",
    [
        "subscription-key",
        "Ocp-Apim-Subscription-Key",
        "access_key",
        "code",
        "x-api-key",
        "sig",
        "signature",
        "token",
        "password",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "apikey",
        "X-Amz-Security-Token",
        "accessToken",
        "client_secret",
        "api_key",
        "key",
        "auth",
    ],
)
def test_query_parameters_named_like_secrets_are_secret(name):
    from flames._util.redaction import secret_parameter

    assert secret_parameter(name)


@pytest.mark.parametrize("name", ["api-version", "model", "deployment", "keyword", "sv", "se"])
def test_other_query_parameters_stay_readable(name, monkeypatch):
    from flames._util.redaction import SECRET_PARAMS_ENV, secret_parameter

    assert not secret_parameter(name)
    monkeypatch.setenv(SECRET_PARAMS_ENV, f"other, {name.upper()}")
    assert secret_parameter(name)  # named by the user: secret too


def test_secret_query_values_reach_no_manifest_report_or_output(tmp_path, mock_api):
    values = {
        "subscription-key": "apim-" + uuid.uuid4().hex,
        "access_key": "ak-" + uuid.uuid4().hex,
        "code": "fn-" + uuid.uuid4().hex,
        "x-api-key": "xk-" + uuid.uuid4().hex,
        "tenant-pass": "tp-" + uuid.uuid4().hex,  # marked secret by the user
    }
    query = "&".join(f"{k}={v}" for k, v in values.items()) + "&api-version=2024-10-21"
    url = f"{mock_api.base_url}?{query}"
    rows = [{"dimension": "Safety", "subcomponent": "Physical harm", "prompt": "问[[score:auto]]"}]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    run_dir = tmp_path / "run"
    env = {"FLAMES_SECRET_PARAMS": "tenant-pass"}
    common = ["--base-url", url, "--no-progress"]
    outputs = [
        run_cli("generate", run_dir, "--model", "m", "--data", data, *common, env=env),
        run_cli("judge", run_dir, "--model", "j", "--skip-judge-check", *common, env=env),
        run_cli("report", run_dir, "--scorer-name", "judge:j", "--bootstrap", "0", env=env),
    ]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    stored = "".join(_read(p) for p in files) + "".join(p.stdout + p.stderr for p in outputs)
    assert "subscription-key=***" in stored and "api-version=2024-10-21" in stored
    assert {"report.json", "report.html", "run.db"} <= {p.name for p in files}
    for name, value in values.items():
        assert value not in stored, name
    # The server got the real values: masking is for what is shown and stored only.
    assert mock_api.requests()
