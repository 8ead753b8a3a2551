"""Write docs/configuration.md from the typed config (grpo_server.config.Config), so the docs always match
the code. Usage: python tools/genconfigdoc.py [OUT]   (default docs/configuration.md)
tests/unit/test_config_doc.py fails when the committed file is stale. The Helm chart's schema of
`trainer.config` comes from the same model: run tools/genhelmschema.py after a config change too."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent

HEADER = """# Configuration

`grpo-server --config FILE` reads one YAML document with the sections below; every field has a default
that works on a laptop, unknown fields are rejected naming the closest known one (`algorithm.group_sise:
unknown field: did you mean 'group_size'?`) or else the section's fields, and a bad value stops the server
with a message naming the field (`algorithm.group_size: Input should be greater than or equal to 2`). Numbers must be
finite; a whole-number field takes only a whole number (`true` or `2.0` is refused) and a true/false field
only `true` or `false`; an empty path is refused (leave the field out instead); settings that contradict
each other are refused naming both. Flags override the file (before it is checked): `--listen`,
`--metrics-listen`, `--store-dir`, `--reward-backend NAME=HOST:PORT`.
Shipped examples: `examples/tiny.yaml` (a tiny model built from a config, for tests),
`examples/demo.yaml` (SmolLM2-135M-Instruct, what `make demo` runs) and `examples/sdpo-code.yaml`
(SDPO on coding problems with the code sandbox's feedback, docs/variants.md).

This page is generated from `grpo_server/config.py` by `tools/genconfigdoc.py`.
"""


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
        if isinstance(value, list):
            value = [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
        return f"`{value!r}`"
    if field.is_required():
        return "required"
    return f"`{field.default!r}`"


def _type_text(ann: Any) -> str:
    """A type as the doc shows it: `int`, `str or None`, "one of `torch`, `deepspeed`" for a Literal
    (its allowed values, also inside a union), `list` for list[str]."""
    if get_origin(ann) is Annotated:  # a constrained type (a path: a non-empty str) shows as its base
        return _type_text(get_args(ann)[0])
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in get_args(ann))
    if get_origin(ann) in (Union, UnionType):
        return " or ".join(_type_text(a) for a in get_args(ann))
    if ann is type(None):
        return "None"
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def render() -> str:
    from grpo_server.config import Config

    out = [HEADER]
    for name, field in Config.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.append(f"\n## `{name}`\n\n{inspect.cleandoc(ann.__doc__ or '')}\n")
            out.append("| field | type | default | meaning |\n|---|---|---|---|")
            for sub, f in ann.model_fields.items():
                desc = (f.description or "").replace("|", "/")
                out.append(f"| `{name}.{sub}` | {_type_text(f.annotation).replace('|', '/')} | {_default(f).replace('|', '/')} | {desc} |")
        else:
            out.append(f"\n## `{name}`\n\n{field.description or ''} Default: {_default(field)}.\n")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write docs/configuration.md from the typed config.")
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "docs" / "configuration.md",
                        help="where to write it (default: docs/configuration.md)")
    target = parser.parse_args().out
    target.write_text(render())
    print(f"wrote {target}")
