"""OCSF events checked against the OCSF JSON schema (package ``ocsf-json-schema``,
which ships the schemas of every OCSF release as data: no schema server needed).

The schema is the one for the event's own class, version and profiles, as the event
names them (``class_uid``, ``metadata.version``, ``metadata.profiles``), so an event
that claims another class or version is checked against that one."""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema, get_packaged_versions

__all__ = ["ocsf_problems", "ocsf_schema_versions"]


def ocsf_schema_versions() -> set[str]:
    return set(get_packaged_versions())


@cache
def _schemas(version: str) -> OcsfJsonSchemaEmbedded:
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))


@cache
def _validator(version: str, class_uid: int, profiles: tuple[str, ...]) -> Draft202012Validator:
    schemas = _schemas(version)
    name = schemas.lookup_class_name_from_uid(class_uid=class_uid)
    schema = schemas.get_class_schema(class_name=name, profiles=list(profiles))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def ocsf_problems(event: dict[str, Any]) -> list[str]:
    """Every way ``event`` breaks the OCSF schema of its class: "path: message"."""
    version = event["metadata"]["version"]
    profiles = tuple(sorted(event["metadata"].get("profiles", [])))
    validator = _validator(version, event["class_uid"], profiles)
    return sorted(
        f"{'/'.join(str(p) for p in error.absolute_path) or '(event)'}: {error.message}"
        for error in validator.iter_errors(event)
    )
