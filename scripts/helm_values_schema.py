#!/usr/bin/env python3
"""Keep helm/appliance/values.schema.json's `config` section equal to the appliance
settings schema (appliance/config.py), less every secret field: secrets reach the chart
only through secrets.existingSecret, so a secret under `config` fails validation.

    scripts/helm_values_schema.py          # rewrite the file
    scripts/helm_values_schema.py --check  # exit 1 if it is out of date (tests/deploy)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from appliance.config import Settings

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "helm/appliance/values.schema.json"


def _is_secret(prop: dict[str, Any]) -> bool:
    options = [prop, *prop.get("anyOf", [])]
    return any(o.get("format") == "password" and o.get("writeOnly") for o in options)


# Plain strings that carry credentials all the same: the database URL holds a password.
_CREDENTIAL_FIELDS = {"DatabaseSettings": {"url"}}


def _strip_secrets(schema: dict[str, Any], name: str = "") -> dict[str, Any]:
    props = schema.get("properties")
    if isinstance(props, dict):
        drop = [n for n, p in props.items() if _is_secret(p)]
        for field in [*drop, *_CREDENTIAL_FIELDS.get(name, ())]:
            props.pop(field, None)
    return schema


def settings_config_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The `config` schema and its `$defs`, from the pydantic settings model."""
    schema = copy.deepcopy(Settings.model_json_schema())
    defs = {
        f"settings{name}": _strip_secrets(d, name) for name, d in schema.pop("$defs", {}).items()
    }
    _strip_secrets(schema)
    schema.pop("title", None)
    schema["description"] = "appliance.yaml settings (appliance/config.py), secrets excluded"
    text = json.dumps([schema, defs]).replace('"#/$defs/', '"#/$defs/settings')
    config, defs = json.loads(text)
    return config, defs


def updated(current: dict[str, Any]) -> dict[str, Any]:
    config, defs = settings_config_schema()
    new = copy.deepcopy(current)
    new["properties"]["config"] = config
    kept = {k: v for k, v in new.get("$defs", {}).items() if not k.startswith("settings")}
    new["$defs"] = {**kept, **defs}
    return new


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = SCHEMA_FILE.read_text(encoding="utf-8")
    fresh = render(updated(json.loads(text)))
    if args.check:
        if fresh != text:
            print(
                f"{SCHEMA_FILE} is out of date: run scripts/helm_values_schema.py", file=sys.stderr
            )
            return 1
        return 0
    SCHEMA_FILE.write_text(fresh, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
