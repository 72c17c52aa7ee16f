"""The catalogue of zyra's stages, commands and options, and the translation of a request into argv.

`catalogue.json` is generated from zyra's parsers by `catalogue_build`; nothing here imports zyra.
Everything a client sends is checked here before a run exists:

- stage, command and option names must be in the catalogue (errors list what is allowed);
- values must have the option's type and be one of its choices;
- no value may point outside the run's work directory (absolute paths, `..`, `~`, `file:` URLs);
- `file_id:<id>` values become `inputs/<name>` inside the work directory.

The result is an argv list for a child process; no value is ever interpreted by a shell.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "Catalogue", "Command", "ArgsError", "InputRef", "Invocation", "load", "check_value", "check_pipeline", "FILE_ID_RE",
]

FILE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")
MAX_VALUE_LENGTH = 4096
MAX_ARGV = 512


class ArgsError(ValueError):
    """A request's stage, command or arguments are not acceptable; the message says what is allowed."""

    def __init__(self, message: str, *, field: str | None = None, allowed: list[str] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.allowed = allowed


@dataclass(frozen=True)
class InputRef:
    """A stored upload that the runner copies to `inputs/<name>` in the work directory before the run."""

    file_id: str
    name: str

    @property
    def path(self) -> str:
        return f"inputs/{self.name}"


@dataclass
class Invocation:
    stage: str
    command: str
    argv: list[str]  # everything after `zyra`
    inputs: list[InputRef] = field(default_factory=list)


def check_value(value: str, where: str) -> None:
    """Refuse values that reach outside the work directory or could not be a single argument."""
    if len(value) > MAX_VALUE_LENGTH:
        raise ArgsError(f"{where}: value longer than {MAX_VALUE_LENGTH} characters", field=where)
    if "\x00" in value:
        raise ArgsError(f"{where}: value contains a NUL byte", field=where)
    if value.lower().startswith("file:"):
        raise ArgsError(f"{where}: file: URLs are not allowed; upload the file and pass file_id:<id>", field=where)
    path_part = value.split("://", 1)[1] if "://" in value else value
    if "://" not in value and (value.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", value)):
        raise ArgsError(
            f"{where}: absolute path {value!r} is not allowed; paths are relative to the run's work directory",
            field=where,
        )
    if ".." in re.split(r"[\\/]", path_part):
        raise ArgsError(f"{where}: '..' is not allowed in {value!r}; paths stay inside the run's work directory", field=where)
    if value.startswith("@") and len(value) > 1:  # zyra reads "@PATH" as that file's content (--data @body.json)
        check_value(value[1:], where)


_ENV_REFERENCE = re.compile(r"\$(\{|[A-Za-z_])")


def check_pipeline(data: bytes, where: str) -> None:
    """Check a `zyra run` pipeline or workflow file. zyra turns its strings into its stages' arguments and
    expands $VARS in them, out of the catalogue's sight; so every string in it is checked like an argument
    (each shell-like word, each `=`-separated part), and $VAR references and nested `run` stages (whose
    file nobody would check) are refused."""
    import shlex

    import yaml

    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ArgsError(f"{where}: not a YAML/JSON pipeline or workflow: {exc}", field=where) from None
    def words(text: str) -> list[str]:
        try:
            return shlex.split(text)
        except ValueError:
            return [text]

    nested = ArgsError(f"{where}: a pipeline may not `run` another pipeline; submit it as its own run", field=where)
    stack, seen = [document], set()
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            if id(node) in seen:  # YAML aliases share objects: visit each once
                continue
            seen.add(id(node))
        if isinstance(node, dict):
            if str(node.get("stage", "")).strip() == "run":
                raise nested
            stack += [*node.keys(), *node.values()]
        elif isinstance(node, list):
            # a workflow step: an argv list, or a command line string
            if node and (node[0] == "run" or any(isinstance(i, str) and words(i)[:1] == ["run"] for i in node)):
                raise nested
            stack += node
        elif isinstance(node, str):
            if _ENV_REFERENCE.search(node):
                raise ArgsError(
                    f"{where}: environment variables ({node!r}) are not expanded in pipelines run here", field=where
                )
            for word in words(node):
                for part in word.split("="):
                    check_value(part, where)


@dataclass(frozen=True)
class Command:
    stage: str
    name: str
    spec: dict[str, Any]

    @functools.cached_property
    def options(self) -> dict[str, dict[str, Any]]:
        """Every spelling a client may use for an option -> its entry."""
        found: dict[str, dict[str, Any]] = {}
        for opt in self.spec["options"]:
            for flag in opt["flags"]:
                found[flag.lstrip("-")] = opt
                found[flag] = opt
            found.setdefault(opt["dest"], opt)
        return found

    @functools.cached_property
    def positionals(self) -> dict[str, dict[str, Any]]:
        return {p["dest"]: p for p in self.spec["positionals"]}

    def allowed_names(self) -> list[str]:
        return sorted({o["name"].lstrip("-") for o in self.spec["options"]} | set(self.positionals))

    def describe(self) -> dict[str, Any]:
        return {"stage": self.stage, "command": self.name, **self.spec}


class Catalogue:
    def __init__(self, data: dict[str, Any]) -> None:
        self.zyra_version: str = data["zyra_version"]
        self.stages: dict[str, dict[str, Any]] = data["stages"]

    def command(self, stage: str, command: str | None) -> Command:
        stage_spec = self.stages.get(stage)
        if stage_spec is None:
            raise ArgsError(f"unknown stage {stage!r}", field="stage", allowed=sorted(self.stages))
        commands = stage_spec["commands"]
        name = command or ""
        if name not in commands:
            if "" in commands:
                raise ArgsError(f"stage {stage!r} takes no command", field="command", allowed=[])
            raise ArgsError(
                f"unknown command {command!r} for stage {stage!r}", field="command", allowed=sorted(commands)
            )
        return Command(stage, name, commands[name])

    def invocation(
        self,
        stage: str,
        command: str | None,
        *,
        args: dict[str, Any] | None = None,
        argv: list[str] | None = None,
        resolve_file: Callable[[str], str] | None = None,
    ) -> Invocation:
        """Validate a request and build its argv. `resolve_file(file_id)` returns the upload's file name
        (raising ArgsError when there is none)."""
        cmd = self.command(stage, command)
        builder = _ArgvBuilder(cmd, resolve_file)
        if args and argv:
            raise ArgsError("give either args or argv, not both", field="argv")
        body = builder.from_argv(argv) if argv is not None else builder.from_args(args or {})
        head = [stage, cmd.name] if cmd.name else [stage]
        full = head + body
        if len(full) > MAX_ARGV:
            raise ArgsError(f"too many arguments (at most {MAX_ARGV})", field="args")
        if stage == "run":  # `--set key=value` puts the value into the pipeline's stages: check it as well
            for token in body:
                for part in token.split("=")[1:]:
                    check_value(part, "args")
        return Invocation(stage=stage, command=cmd.name, argv=full, inputs=list(builder.inputs.values()))

    def public(self) -> dict[str, Any]:
        return {"zyra_version": self.zyra_version, "stages": self.stages}


class _ArgvBuilder:
    def __init__(self, cmd: Command, resolve_file: Callable[[str], str] | None) -> None:
        self.cmd = cmd
        self.resolve_file = resolve_file
        self.inputs: dict[str, InputRef] = {}

    def _value(self, raw: Any, spec: dict[str, Any], where: str) -> str:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ArgsError(f"{where}: expected a {spec['type']} value, got {type(raw).__name__}", field=where)
        text = str(raw)
        if spec["type"] == "int" and not re.fullmatch(r"-?\d+", text):
            raise ArgsError(f"{where}: expected an integer, got {raw!r}", field=where)
        if spec["type"] == "float" and not _NUMBER_RE.match(text):
            raise ArgsError(f"{where}: expected a number, got {raw!r}", field=where)
        if text.startswith("file_id:"):
            text = self._file(text.removeprefix("file_id:"), where)
        check_value(text, where)
        choices = spec.get("choices")
        if choices and text not in [str(c) for c in choices]:
            raise ArgsError(f"{where}: {text!r} is not one of {choices}", field=where, allowed=[str(c) for c in choices])
        return text

    def _file(self, file_id: str, where: str) -> str:
        if not FILE_ID_RE.match(file_id):
            raise ArgsError(f"{where}: malformed file id {file_id!r}", field=where)
        if self.resolve_file is None:
            raise ArgsError(f"{where}: file ids are not accepted here", field=where)
        name = self.resolve_file(file_id)
        ref = InputRef(file_id, name)
        clash = next((r for r in self.inputs.values() if r.name == name and r.file_id != file_id), None)
        if clash:
            raise ArgsError(f"{where}: two inputs named {name!r}; upload them under different names", field=where)
        self.inputs[file_id] = ref
        return ref.path

    def _positional_value(self, raw: Any, spec: dict[str, Any], where: str) -> str:
        text = self._value(raw, spec, where)
        if text.startswith("-") and not _NUMBER_RE.match(text):
            raise ArgsError(f"{where}: a positional value may not start with '-'", field=where)
        return text

    def from_args(self, args: dict[str, Any]) -> list[str]:
        if not isinstance(args, dict):
            raise ArgsError("args must be an object of option names to values", field="args")
        options: list[str] = []
        given_positionals: dict[str, Any] = {}
        seen: set[str] = set()
        for key, raw in args.items():
            name = key.lstrip("-")
            spec = self.cmd.positionals.get(name) or self.cmd.positionals.get(name.replace("-", "_"))
            if spec is not None and not key.startswith("-"):
                given_positionals[spec["dest"]] = raw
                continue
            spec = self.cmd.options.get(key) or self.cmd.options.get(name) or self.cmd.options.get(name.replace("_", "-"))
            if spec is None:
                raise ArgsError(
                    f"unknown option {key!r} for {self.cmd.stage} {self.cmd.name}".rstrip(),
                    field=f"args.{key}",
                    allowed=self.cmd.allowed_names(),
                )
            if spec["dest"] in seen and spec["kind"] not in ("flag",):
                raise ArgsError(f"option {spec['name']} given twice", field=f"args.{key}")
            seen.add(spec["dest"])
            options += self._option(spec, raw, f"args.{key}")
        missing = [o["name"] for o in self.cmd.spec["options"] if o["required"] and o["dest"] not in seen]
        if missing:
            raise ArgsError(f"missing required option(s): {', '.join(missing)}", field="args", allowed=missing)
        return self._positionals(given_positionals) + options

    def _option(self, spec: dict[str, Any], raw: Any, where: str) -> list[str]:
        flag = spec["name"]
        if spec["kind"] == "flag":
            if not isinstance(raw, bool):
                raise ArgsError(f"{where}: {flag} is a flag; give true or false", field=where)
            return [flag] if raw else []
        if spec["kind"] == "count":
            if isinstance(raw, bool):
                return [flag] if raw else []
            if not isinstance(raw, int) or not 0 <= raw <= 10:
                raise ArgsError(f"{where}: {flag} takes true or a small count", field=where)
            return [flag] * raw
        many = spec["kind"] in ("append", "extend") or spec.get("nargs") in ("+", "*") or isinstance(spec.get("nargs"), int)
        values = raw if isinstance(raw, list) else [raw]
        if isinstance(raw, list) and not many:
            raise ArgsError(f"{where}: {flag} takes one value, not a list", field=where)
        if not values:
            raise ArgsError(f"{where}: {flag} needs a value", field=where)
        texts = [self._value(v, spec, where) for v in values]
        if spec["kind"] in ("append", "extend") or not isinstance(raw, list):
            return [f"{flag}={t}" if flag.startswith("--") else f"{flag}{t}" for t in texts]
        # `--opt a b c` (nargs): a value starting with '-' would be read as the next option
        if any(t.startswith("-") and not _NUMBER_RE.match(t) for t in texts):
            raise ArgsError(f"{where}: list values may not start with '-'", field=where)
        return [flag, *texts]

    def _positionals(self, given: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for spec in self.cmd.spec["positionals"]:
            dest = spec["dest"]
            where = f"args.{dest}"
            if dest not in given:
                if spec["required"]:
                    raise ArgsError(f"missing required argument {dest!r}", field=where, allowed=[p for p in self.cmd.positionals])
                continue
            raw = given[dest]
            if isinstance(raw, list):
                if spec.get("nargs") not in ("+", "*") and not isinstance(spec.get("nargs"), int):
                    raise ArgsError(f"{where}: takes one value, not a list", field=where)
                out += [self._positional_value(v, spec, where) for v in raw]
            else:
                out.append(self._positional_value(raw, spec, where))
        # a positional after an omitted optional one would shift meaning: refuse rather than guess
        names = [p["dest"] for p in self.cmd.spec["positionals"]]
        present = [n in given for n in names]
        if any(not p and any(present[i + 1 :]) for i, p in enumerate(present)):
            raise ArgsError("optional positional arguments must be given in order", field="args", allowed=names)
        return out

    def from_argv(self, argv: list[str]) -> list[str]:
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ArgsError("argv must be a list of strings", field="argv")
        out: list[str] = []
        for i, token in enumerate(argv):
            where = f"argv[{i}]"
            if token.startswith("file_id:"):
                token = self._file(token.removeprefix("file_id:"), where)
            if token.startswith("-") and not _NUMBER_RE.match(token):
                name = token.split("=", 1)[0]
                if name not in self.cmd.options or not name.startswith("-"):
                    raise ArgsError(
                        f"{where}: unknown option {name!r} for {self.cmd.stage} {self.cmd.name}".rstrip(),
                        field=where,
                        allowed=self.cmd.allowed_names(),
                    )
                if "=" in token:
                    value = token.split("=", 1)[1]
                    if value.startswith("file_id:"):
                        value = self._file(value.removeprefix("file_id:"), where)
                        token = f"{name}={value}"
                    check_value(value, where)
            else:
                check_value(token, where)
            out.append(token)
        return out


@functools.lru_cache
def load(path: Path | None = None) -> Catalogue:
    source = path or Path(__file__).with_name("catalogue.json")
    return Catalogue(json.loads(source.read_text()))
