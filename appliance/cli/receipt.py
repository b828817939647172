"""``appliance receipt verify``: check an answer's receipt offline.

Thin: the checks are the standalone verifier's (``appliance/audit/bundle_verifier.py``,
``verify_bundle.py receipt``), so the CLI and the file a caller runs without the
appliance installed cannot disagree. ``--fetch`` only downloads the proof first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from appliance.audit import bundle_verifier
from appliance.errors import InvalidRequest, VerificationError

__all__ = ["app", "fetch_proof", "gateway_base"]

app = typer.Typer(
    help="Receipts: prove later what the appliance answered you.", no_args_is_help=True
)


def gateway_base(url: str) -> str:
    """The gateway's root from what a caller holds: its URL, or the ``/v1`` base URL
    an OpenAI client is configured with."""
    base = url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _refusal(response: httpx.Response) -> str:
    """The gateway's OpenAI-shaped error as one line (code: message)."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def fetch_proof(
    client: httpx.Client,
    base_url: str,
    request_id: str,
    *,
    completion_index: int,
    since: int | None = None,
) -> dict[str, Any]:
    """``GET /audit/receipts/<request id>/proof`` from the gateway at ``base_url``."""
    params: dict[str, int] = {"index": completion_index}
    if since is not None:
        params["since"] = since
    url = f"{gateway_base(base_url)}/audit/receipts/{quote(request_id, safe='')}/proof"
    try:
        response = client.get(url, params=params)
    except httpx.HTTPError as exc:
        raise InvalidRequest(f"cannot fetch the proof from {base_url}: {exc}") from exc
    if response.status_code != 200:
        raise InvalidRequest(
            f"the gateway refused the proof ({response.status_code} {_refusal(response)})"
        )
    document: dict[str, Any] = response.json()
    return document


def _text(path: Path | None) -> str | None:
    # Bytes, then UTF-8: text mode would turn an answer's "\r\n" into "\n".
    return path.read_bytes().decode("utf-8") if path is not None else None


def _checkpoint_size(note: str) -> int:
    lines = note.split("\n")
    if len(lines) < 2 or not lines[1].isdigit():
        raise InvalidRequest("--old is not a checkpoint (its second line is no tree size)")
    return int(lines[1])


@app.command("verify")
def verify(
    receipt: Annotated[
        str,
        typer.Argument(
            help="The X-Audit-Receipt value (or the stream's ': receipt ...' line), "
            "or a file holding it"
        ),
    ],
    key: Annotated[
        list[str],
        typer.Option(
            "--key",
            help="The log's public key, text or file, obtained independently "
            "(`appliance audit public-key` on the appliance); again for each earlier key "
            "the log used (GET /audit/keys)",
        ),
    ],
    proof: Annotated[
        Path | None, typer.Option("--proof", help="JSON from GET /audit/receipts/ID/proof")
    ] = None,
    answer: Annotated[
        Path | None,
        typer.Option("--answer", help="The answer: its text, or the saved JSON body or stream"),
    ] = None,
    old: Annotated[
        Path | None,
        typer.Option("--old", help="A checkpoint you kept: the log must extend it"),
    ] = None,
    fetch: Annotated[
        str | None,
        typer.Option("--fetch", help="Fetch the proof from this gateway URL instead of --proof"),
    ] = None,
    since: Annotated[
        int | None,
        typer.Option(
            "--since", help="With --fetch: prove consistency from this tree size (default: --old's)"
        ),
    ] = None,
    save_proof: Annotated[
        Path | None, typer.Option("--save-proof", help="With --fetch: keep the proof here")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="OPENAI_API_KEY",
            show_default=False,
            help="With --fetch: your API key (default: $OPENAI_API_KEY)",
        ),
    ] = None,
) -> None:
    """Check a receipt: its signature, both records' inclusion in the log, the log's
    consistency with a checkpoint you hold, and that the answer text is the one sealed."""
    if fetch is not None and proof is not None:
        raise InvalidRequest("give --proof or --fetch, not both")
    try:
        value = bundle_verifier.receipt_value(receipt)
        key_text = "\n".join((_text(Path(k)) or "") if Path(k).is_file() else k for k in key)
        old_note, answer_text, proof_text = _text(old), _text(answer), _text(proof)
    except (OSError, UnicodeError) as exc:
        raise InvalidRequest(
            f"cannot read {getattr(exc, 'filename', None) or 'a file'}: {exc}"
        ) from exc
    try:
        document = json.loads(proof_text) if proof_text is not None else None
    except ValueError as exc:
        raise InvalidRequest(f"--proof is not JSON: {exc}") from exc
    try:
        if fetch is not None:
            document = _fetched(value, key_text, fetch, since, old_note, api_key)
            if save_proof is not None:
                save_proof.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        result = bundle_verifier.verify_receipt(value, key_text, document, answer_text, old_note)
    except bundle_verifier.BundleError as exc:
        raise VerificationError(str(exc)) from exc
    typer.echo(f"OK: {bundle_verifier.receipt_summary(result)}")


def _fetched(
    value: str,
    key_text: str,
    url: str,
    since: int | None,
    old_note: str | None,
    api_key: str | None,
) -> dict[str, Any]:
    """The proof for the receipt ``value`` from the gateway at ``url`` (the receipt's
    signature is checked first: no request goes out for a forged one)."""
    fields = bundle_verifier.open_receipt(value, bundle_verifier.parse_keys(key_text))
    if since is None and old_note is not None:
        since = _checkpoint_size(old_note)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(headers=headers, timeout=30.0, trust_env=False) as client:
        return fetch_proof(
            client, url, fields["request_id"],
            completion_index=fields["completion"][0], since=since,
        )  # fmt: skip
