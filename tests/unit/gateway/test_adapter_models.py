"""appliance/gateway/adapter_models.py: adapters named as models."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.adapters import import_adapter
from appliance.config import Settings
from appliance.errors import InvalidRequest, ModelNotFound
from appliance.gateway.adapter_models import (
    AdapterCatalog,
    ServedAdapter,
    adapter_base,
    load_adapter_catalog,
    on_adapter,
)
from appliance.gateway.context import RequestContext
from appliance.gateway.schemas import ChatCompletionRequest
from tests.support.fake_adapters import DEV_BASE, write_adapter, write_base

SERVED = {"chat", "embed", "odd:name"}
LEGAL = ServedAdapter(
    model="chat:legal-v1", parent="chat", name="legal-v1",
    teams=frozenset({"legal"}), manifest_sha256="ab" * 32,
)  # fmt: skip
CATALOG = AdapterCatalog.of([LEGAL])


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("chat:legal-v1", "chat"),
        ("chat:unknown", "chat"),
        ("chat", None),  # a served model
        ("odd:name", None),  # a served model whose name holds ':'
        ("odd:name:x", "odd:name"),
        ("absent:legal-v1", None),  # not an adapter of anything served: a missing model
        ("chat:", None),
        ("plain", None),
    ],
)
def test_adapter_base(model: str, base: str | None) -> None:
    assert adapter_base(model, SERVED.__contains__) == base


def test_find_gives_the_adapter() -> None:
    assert CATALOG.find("chat:legal-v1") is LEGAL
    assert CATALOG.of_parent("chat") == [LEGAL]
    assert CATALOG.of_parent("embed") == []


def test_an_unknown_adapter_is_a_missing_model() -> None:
    with pytest.raises(ModelNotFound, match="no adapter 'tax' of 'chat'") as raised:
        CATALOG.find("chat:tax")
    assert raised.value.code == "model_not_found"


def test_an_unloaded_adapter_is_missing_and_says_so() -> None:
    catalog = AdapterCatalog.of([], unloaded=["chat:legal-v1"])
    with pytest.raises(ModelNotFound) as raised:
        catalog.find("chat:legal-v1")
    assert raised.value.code == "adapter_not_loaded" and "not loaded" in raised.value.message
    assert catalog.of_parent("chat") == []  # /v1/models does not list it


def test_an_adapter_of_another_base_names_its_base() -> None:
    with pytest.raises(InvalidRequest, match="trained for 'chat'") as raised:
        CATALOG.find("embed:legal-v1")
    assert (raised.value.code, raised.value.param) == ("adapter_base_mismatch", "model")


def test_audit_params_name_the_adapter_and_its_files() -> None:
    assert LEGAL.audit_params() == {
        "adapter": "legal-v1", "adapter_base": "chat", "adapter_manifest_sha256": "ab" * 32,
    }  # fmt: skip


def test_on_adapter_routes_to_the_parent_and_notes_the_adapter() -> None:
    context = RequestContext(request_id="r", params={"stream": False})
    parsed = ChatCompletionRequest.model_validate(
        {"model": "chat:legal-v1", "messages": [{"role": "user", "content": "hi"}]}
    )
    routed = on_adapter(context, parsed, LEGAL)
    assert isinstance(routed, ChatCompletionRequest) and routed.model == "chat"
    assert context.params == {"stream": False, **LEGAL.audit_params()}
    assert on_adapter(context, parsed, None) is parsed


def _store_with_adapter(tmp_path: Path) -> Path:
    store = tmp_path / "data" / "models"
    write_base(store)
    source = write_adapter(tmp_path / "src")
    import_adapter(source, store, "legal-v1", base=DEV_BASE, teams=["legal"], trust_source=True)
    return store


def test_the_local_engine_serves_its_model_directorys_adapters(tmp_path: Path) -> None:
    store = _store_with_adapter(tmp_path)
    settings = Settings(
        data_dir=tmp_path / "data",
        engine={"served_model_name": "dev", "model_dir": str(store / DEV_BASE)},
    )
    catalog = load_adapter_catalog(settings)
    (adapter,) = catalog.adapters.values()
    assert (adapter.model, adapter.parent, adapter.name) == ("dev:legal-v1", "dev", "legal-v1")
    assert adapter.teams == {"legal"} and len(adapter.manifest_sha256) == 64


def test_an_upstream_serves_the_adapters_of_its_model_name(tmp_path: Path) -> None:
    _store_with_adapter(tmp_path)
    settings = Settings(
        data_dir=tmp_path / "data", engine={"enabled": False},
        gateway={"upstreams": [{"model": DEV_BASE, "url": "http://127.0.0.1:1"},
                               {"model": "other", "url": "http://127.0.0.1:2"}]},
    )  # fmt: skip
    assert set(load_adapter_catalog(settings).adapters) == {f"{DEV_BASE}:legal-v1"}


def test_no_store_no_adapters(tmp_path: Path) -> None:
    assert load_adapter_catalog(Settings(data_dir=tmp_path / "none")).adapters == {}
