"""Build the command catalogue from zyra's own argparse parsers.

    python -m zyrak8s_core.catalogue_build [OUTPUT]

Run where zyra is installed. The result is committed as `catalogue.json` beside this module, so the API
(which may run without zyra, as on a cluster) validates exactly what the runner's zyra accepts;
a test rebuilds it and fails when it no longer matches the installed zyra.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["build", "main"]

_PATH_NAMES = ("--input", "--output", "--frames", "--manifest", "--config", "--log-dir", "--log-file", "--state-file")


def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "flag"
    if isinstance(action, argparse._StoreFalseAction):
        return "flag"
    if isinstance(action, argparse._CountAction):
        return "count"
    if isinstance(action, argparse._ExtendAction):
        return "extend"
    if isinstance(action, argparse._AppendAction):
        return "append"
    if isinstance(action, argparse._StoreConstAction):
        return "flag"
    return "value"


def _type(action: argparse.Action) -> str:
    if action.type is int:
        return "int"
    if action.type is float:
        return "float"
    return "str"


def _is_path(action: argparse.Action) -> bool:
    names = action.option_strings or [action.dest]
    meta = action.metavar.lower() if isinstance(action.metavar, str) else ""
    return (
        any(n.startswith(_PATH_NAMES) or n in ("-i", "-o") for n in names)
        or any(k in meta for k in ("path", "file", "dir"))
        or any(k in action.dest for k in ("file", "path", "dir"))
    )


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


def _argument(action: argparse.Action) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "dest": action.dest,
        "kind": _kind(action),
        "type": _type(action),
        "required": bool(action.required) if action.option_strings else action.nargs not in ("?", "*"),
        "help": (action.help or "").strip() if action.help != argparse.SUPPRESS else "",
    }
    if action.option_strings:
        longs = [s for s in action.option_strings if s.startswith("--")]
        entry["name"] = longs[0] if longs else action.option_strings[0]
        entry["flags"] = list(action.option_strings)
    else:
        entry["name"] = action.dest
    if action.choices:
        entry["choices"] = [_json_safe(c) for c in action.choices]
    if action.nargs is not None and entry["kind"] not in ("flag", "count"):
        entry["nargs"] = action.nargs
    if action.default not in (None, argparse.SUPPRESS) and entry["kind"] != "flag":
        entry["default"] = _json_safe(action.default)
    if _is_path(action):
        entry["path"] = True
    return entry


def _command(parser: argparse.ArgumentParser) -> dict[str, Any]:
    options, positionals = [], []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        (options if action.option_strings else positionals).append(_argument(action))
    return {"help": (parser.description or "").strip(), "options": options, "positionals": positionals}


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def build() -> dict[str, Any]:
    from zyra import cli as zyra_cli
    from zyra.wizard import manifest as zyra_manifest

    root = argparse.ArgumentParser(prog="zyra")
    sub = root.add_subparsers(dest="cmd", required=True)
    zyra_manifest._safe_register_all(sub)  # zyra's own "register every group" used for its manifest

    helps = {a.dest: a.help for a in sub._choices_actions}
    stages: dict[str, Any] = {}
    for stage, parser in sorted(sub.choices.items()):
        if stage in zyra_manifest.EXCLUDED_ROOT_COMMANDS:
            continue
        canonical = zyra_cli._normalize_group_name(stage)
        nested = _subparsers(parser)
        commands = (
            {name: _command(p) for name, p in sorted(nested.choices.items())} if nested else {"": _command(parser)}
        )
        if nested:
            for choice in nested._choices_actions:
                commands[choice.dest]["help"] = commands[choice.dest]["help"] or (choice.help or "").strip()
        stages[stage] = {
            "help": (helps.get(stage) or "").strip(),
            "alias_of": canonical if canonical != stage and canonical in sub.choices else None,
            "commands": commands,
        }
    return {"zyra_version": metadata.version("zyra"), "stages": stages}


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    out = Path(args[0]) if args else Path(__file__).with_name("catalogue.json")
    out.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
    print(f"catalogue written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
