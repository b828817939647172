#!/usr/bin/env python3
"""Write ocsf-1.8.0-api-activity.json: what OCSF 1.8.0 says about the API Activity class
(6003) and the objects the appliance's OCSF events use, resolved (inheritance,
profiles, dictionary types and enums), so tests/unit/audit/test_siem.py can check
events against the schema without the schema server.

    git clone --branch 1.8.0 https://github.com/ocsf/ocsf-schema /tmp/ocsf-1.8.0
    python tests/vectors/siem/generate_ocsf.py /tmp/ocsf-1.8.0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CLASS = "events/application/api_activity.json"
OBJECTS = [
    "metadata", "product", "actor", "user", "group", "network_endpoint", "api", "request",
    "response", "service", "http_request", "http_response", "url", "ai_model",
    "message_context",
]  # fmt: skip
BASE_KINDS = {"string_t", "integer_t", "long_t", "float_t", "boolean_t", "json_t"}
OUT = Path(__file__).with_name("ocsf-1.8.0-api-activity.json")


def main(root: Path) -> None:
    version = json.loads((root / "version.json").read_text())["version"]
    dictionary = json.loads((root / "dictionary.json").read_text())
    words, types = dictionary["attributes"], dictionary["types"]["attributes"]

    def kind(type_name: str) -> str:
        while type_name not in BASE_KINDS and type_name in types and "type" in types[type_name]:
            type_name = types[type_name]["type"]
        return type_name

    def chain(path: Path, folder: Path) -> list[dict[str, Any]]:
        """The definition and its ancestors, nearest first."""
        items = [json.loads(path.read_text())]
        while items[-1].get("extends") not in (None, "object"):
            parent = items[-1]["extends"]
            found = next(folder.rglob(f"{parent}.json"), None) or root / f"events/{parent}.json"
            items.append(json.loads(found.read_text()))
        return items

    def resolve(items: list[dict[str, Any]]) -> dict[str, Any]:
        attributes: dict[str, dict[str, Any]] = {}
        for item in reversed(items):  # ancestors first, the nearest overrides
            for include in item.get("attributes", {}).get("$include", []):
                profile = json.loads((root / include).read_text())
                for name, spec in profile["attributes"].items():
                    attributes.setdefault(name, {}).update({**spec, "profile": profile["name"]})
            for name, spec in item.get("attributes", {}).items():
                if name != "$include":
                    merged = attributes.setdefault(name, {})
                    enum = {**merged.get("enum", {}), **spec.get("enum", {})}
                    merged.update(spec)
                    if enum:
                        merged["enum"] = enum
        result = {}
        for name, spec in sorted(attributes.items()):
            word = words[name]
            declared = spec.get("type", word["type"])
            enum = {**word.get("enum", {}), **spec.get("enum", {})}
            entry: dict[str, Any] = {
                "requirement": spec.get("requirement", word.get("requirement", "optional")),
                "is_array": bool(word.get("is_array")),
            }
            if declared.endswith("_t") or declared == "object":
                entry["kind"] = "object" if declared == "object" else kind(declared)
            else:
                entry["object"] = declared
            if enum:
                entry["enum"] = sorted(int(k) if k.lstrip("-").isdigit() else k for k in enum)
            if spec.get("profile"):  # only required where the event applies the profile
                entry["profile"] = spec["profile"]
            result[name] = entry
        constraints = next((i["constraints"] for i in items if i.get("constraints")), {})
        return {"attributes": result, "constraints": constraints}

    categories = json.loads((root / "categories.json").read_text())["attributes"]
    definition = chain(root / CLASS, root / "events")
    category = categories[definition[0].get("category") or definition[1]["category"]]["uid"]
    document = {
        "ocsf_version": version,
        "source": f"https://github.com/ocsf/ocsf-schema/tree/{version}",
        "class": {
            "name": definition[0]["name"],
            "uid": category * 1000 + definition[0]["uid"],
            "category_uid": category,
            **resolve(definition),
        },
        "objects": {
            name: resolve(chain(root / f"objects/{name}.json", root / "objects"))
            for name in OBJECTS
        },
    }
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
