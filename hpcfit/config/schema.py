"""Declared configuration keys: each job states its keys once (type, default, allowed values, doc).

A ``Section`` maps key names to ``Field``s or nested ``Section``s. ``validate`` walks a parsed YAML tree against
it, converts every value, fills defaults, and collects *every* problem (with the YAML line) instead of stopping
at the first. The same declarations produce the config reference in the docs (``hpcfit schema JOB``).

Relative paths in a file are resolved against the directory of that file (so a config and its data can move
together); paths given with ``--set`` on the command line are resolved against the current directory.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from hpcfit.config.errors import ConfigError, ConfigIssue
from hpcfit.config.yamlsource import OVERRIDE_SOURCE, KeyPath, YamlSource


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


class Invalid(Exception):
    """A value that does not convert; ``allowed`` says what would have."""

    def __init__(self, message: str, allowed: str | None = None, subpath: KeyPath = ()):
        super().__init__(message)
        self.message = message
        self.allowed = allowed
        self.subpath = subpath
        self.more: list[Invalid] = []  # further problems of the same value (other entries of a list or mapping)

    def every(self) -> list["Invalid"]:
        """This problem and the further ones."""
        return [self] + [m for more in self.more for m in more.every()]

    def under(self, prefix: KeyPath) -> "Invalid":
        """The same problems, one level down (``prefix`` + their sub-paths)."""
        first = Invalid(self.message, self.allowed, tuple(prefix) + self.subpath)
        first.more = [m.under(prefix) for m in self.more]
        return first


def _raise_all(problems: list[Invalid]) -> None:
    """Raise the first of ``problems`` carrying the others (so that every entry's problem is reported)."""
    if problems:
        first = problems[0]
        first.more = first.more + problems[1:]
        raise first


@dataclass
class Context:
    """What conversions need to know: where relative paths start."""

    base_dir: Path
    cwd: Path


class Type:
    """A value type: converts a YAML value or raises ``Invalid``."""

    def convert(self, value: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Any_(Type):
    def convert(self, value: Any, ctx: Context) -> Any:
        return value

    def describe(self) -> str:
        return "any value"


class Bool(Type):
    def convert(self, value: Any, ctx: Context) -> bool:
        if isinstance(value, bool):
            return value
        raise Invalid(f"expected true or false, got {_show(value)}", "true, false")

    def describe(self) -> str:
        return "boolean"


class Int(Type):
    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max

    def convert(self, value: Any, ctx: Context) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise Invalid(f"expected an integer, got {_show(value)}", self._range())
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise Invalid(f"{value} is out of range", self._range())
        return value

    def _range(self) -> str | None:
        return _range_text(self.min, self.max, "integer")

    def describe(self) -> str:
        return self._range() or "integer"


class Float(Type):
    def __init__(self, min: float | None = None, max: float | None = None, min_exclusive: bool = False):
        self.min, self.max, self.min_exclusive = min, max, min_exclusive

    def convert(self, value: Any, ctx: Context) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"expected a number, got {_show(value)}", self._range())
        value = float(value)
        low_bad = self.min is not None and (value <= self.min if self.min_exclusive else value < self.min)
        if low_bad or (self.max is not None and value > self.max) or value != value:
            raise Invalid(f"{value:g} is out of range", self._range())
        return value

    def _range(self) -> str | None:
        if self.min_exclusive and self.min is not None:
            return f"number > {self.min:g}" + (f" and <= {self.max:g}" if self.max is not None else "")
        return _range_text(self.min, self.max, "number")

    def describe(self) -> str:
        return self._range() or "number"


class Str(Type):
    def __init__(self, nonempty: bool = True):
        self.nonempty = nonempty

    def convert(self, value: Any, ctx: Context) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {_show(value)}")
        if self.nonempty and not value.strip():
            raise Invalid("must not be empty")
        return value

    def describe(self) -> str:
        return "string"


class Choice(Type):
    def __init__(self, *values: Any):
        self.values = values

    def convert(self, value: Any, ctx: Context) -> Any:
        # `true == 1` in Python: compare booleans only with booleans.
        if any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in self.values):
            return value
        # YAML reads a bare `none` as a string but `null` as None: accept either spelling of "none".
        if value is None and "none" in self.values:
            return "none"
        close = difflib.get_close_matches(str(value), [str(v) for v in self.values], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise Invalid(f"{_show(value)} is not one of the choices{hint}", ", ".join(str(v) for v in self.values))

    def describe(self) -> str:
        return "one of: " + ", ".join(f"`{v}`" for v in self.values)


class PathT(Type):
    """A filesystem path; ``exists`` checks a file or directory is there at validation time."""

    def __init__(self, exists: bool = False, kind: str = "file"):
        self.exists, self.kind = exists, kind

    def convert(self, value: Any, ctx: Context) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"expected a path, got {_show(value)}")
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = ctx.base_dir / path
        if self.exists:
            if self.kind == "dir" and not path.is_dir():
                raise Invalid(f"directory '{path}' does not exist")
            if self.kind == "file" and not path.is_file():
                raise Invalid(f"file '{path}' does not exist")
        return str(path)

    def describe(self) -> str:
        return f"path to an existing {self.kind}" if self.exists else "path"


class ListOf(Type):
    def __init__(self, item: Type, min_len: int = 0, max_len: int | None = None, scalar_ok: bool = False):
        self.item, self.min_len, self.max_len, self.scalar_ok = item, min_len, max_len, scalar_ok

    def convert(self, value: Any, ctx: Context) -> list[Any]:
        if not isinstance(value, list):
            if self.scalar_ok and value is not None and not isinstance(value, dict):
                value = [value]
            else:
                raise Invalid(f"expected a list, got {_show(value)}")
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            raise Invalid(f"has {len(value)} item(s)", _range_text(self.min_len, self.max_len, "items", count=True))
        out, problems = [], []
        for index, item in enumerate(value):
            try:
                out.append(self.item.convert(item, ctx))
            except Invalid as exc:
                problems.append(exc.under((index,)))
        _raise_all(problems)
        return out

    def describe(self) -> str:
        return f"list of {self.item.describe()}" + (" (or a single value)" if self.scalar_ok else "")


class MapOf(Type):
    """A mapping with user-chosen keys (e.g. parameter names) and values of one type."""

    def __init__(self, value: Type, key_check: Callable[[str], None] | None = None, min_len: int = 0):
        self.value, self.key_check, self.min_len = value, key_check, min_len

    def convert(self, value: Any, ctx: Context) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(f"expected a mapping, got {_show(value)}")
        if len(value) < self.min_len:
            raise Invalid(f"needs at least {self.min_len} entr{'y' if self.min_len == 1 else 'ies'}")
        out, problems = {}, []
        for key, item in value.items():
            try:
                if self.key_check:
                    self.key_check(key)
                out[key] = self.value.convert(item, ctx)
            except Invalid as exc:
                problems.append(exc.under((key,)))
        _raise_all(problems)
        return out

    def describe(self) -> str:
        return f"mapping of name to {self.value.describe()}"


class OneOf(Type):
    """The first alternative that accepts the value wins."""

    def __init__(self, *types: Type):
        self.types = types

    def convert(self, value: Any, ctx: Context) -> Any:
        errors = []
        for kind in self.types:
            try:
                return kind.convert(value, ctx)
            except Invalid as exc:
                errors.append(exc)
        deepest = max(errors, key=lambda e: len(e.subpath))
        if deepest.subpath:
            raise deepest
        meaningful = [e for kind, e in zip(self.types, errors) if not isinstance(kind, Null)]
        if len(meaningful) == 1:  # "null or X": the problem is X's
            raise meaningful[0]
        raise Invalid(f"{_show(value)} is not valid", " | ".join(t.describe() for t in self.types))

    def describe(self) -> str:
        return " or ".join(t.describe() for t in self.types)


class Null(Type):
    def convert(self, value: Any, ctx: Context) -> None:
        if value is not None:
            raise Invalid(f"expected null, got {_show(value)}")
        return None

    def describe(self) -> str:
        return "null"


class Record(Type):
    """A mapping with declared keys used inside lists or name maps (e.g. one model parameter's settings)."""

    def __init__(self, fields: dict[str, "Field"], shorthand: str | None = None):
        # shorthand: the field a bare scalar stands for, e.g. `amplitude: 1.0` meaning {value: 1.0}
        self.fields, self.shorthand = fields, shorthand

    def convert(self, value: Any, ctx: Context) -> "Settings":
        if self.shorthand is not None and not isinstance(value, (dict, list)):
            value = {self.shorthand: value}
        if not isinstance(value, dict):
            raise Invalid(f"expected a mapping with keys {', '.join(self.fields)}, got {_show(value)}")
        problems = []
        for key in value:
            if key not in self.fields:
                close = difflib.get_close_matches(str(key), list(self.fields), n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(Invalid(f"unknown key{hint}", ", ".join(self.fields), (key,)))
        out = Settings()
        for name, spec in self.fields.items():
            if name not in value:
                if spec.default is REQUIRED:
                    problems.append(Invalid(f"missing required key ({spec.type.describe()})", None, (name,)))
                out[name] = spec.default
                continue
            try:
                out[name] = spec.type.convert(value[name], ctx)
                if spec.check is not None:
                    spec.check(out[name])
            except Invalid as exc:
                problems.append(exc.under((name,)))
        _raise_all(problems)
        return out

    def describe(self) -> str:
        keys = ", ".join(self.fields)
        return f"mapping ({keys})" + (f" or a bare {self.shorthand}" if self.shorthand else "")


def Optional(kind: Type) -> Type:  # noqa: N802 - reads like a type
    """``kind`` or null."""
    return OneOf(Null(), kind)


@dataclass
class Field:
    """One configuration key."""

    type: Type
    default: Any = REQUIRED
    doc: str = ""
    check: Callable[[Any], None] | None = None  # extra validation of the converted value; raise Invalid


@dataclass
class Section:
    """A mapping of declared keys. ``required``: the section itself must be present."""

    fields: dict[str, "Field | Section"]
    doc: str = ""
    required: bool = False

    def merged(self, other: "Section") -> "Section":
        """This section plus another's keys (a job's sections added to the engine's)."""
        clash = set(self.fields) & set(other.fields)
        if clash:
            raise ValueError(f"keys declared twice: {sorted(clash)}")
        return Section({**self.fields, **other.fields}, self.doc, self.required)


class Settings(dict):
    """Validated configuration values: a dict that also allows attribute access (``cfg.output``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Reporter:
    """Collects configuration problems with their YAML locations."""

    def __init__(self, source: YamlSource):
        self.source = source
        self.issues: list[ConfigIssue] = []

    def __call__(self, path: str | KeyPath, message: str, allowed: str | Iterable[Any] | None = None) -> None:
        key_path = tuple(_split(path)) if isinstance(path, str) else tuple(path)
        where, line = self.source.where(key_path)
        if allowed is not None and not isinstance(allowed, str):
            allowed = ", ".join(str(a) for a in allowed)
        self.issues.append(ConfigIssue(where, line, _dotted(key_path), message, allowed))

    def raise_if_any(self) -> None:
        if self.issues:
            raise ConfigError(list(self.issues))


def validate(section: Section, source: YamlSource, reporter: Reporter | None = None) -> Settings:
    """Convert ``source.values`` against ``section``; raise ConfigError with every problem found."""
    reporter = reporter or Reporter(source)
    # a file's relative paths start at its folder; a config given as text or a dict ("<string>", "<dict>"):
    # at the working directory
    in_memory = source.source.startswith("<") or source.source == OVERRIDE_SOURCE
    base = Path.cwd() if in_memory else Path(source.source).resolve().parent
    settings = _validate_section(section, source.values, (), source, reporter, Context(base, Path.cwd()))
    reporter.raise_if_any()
    return settings


def _validate_section(section: Section, values: Any, path: KeyPath, source: YamlSource, report: Reporter,
                      ctx: Context) -> Settings:
    out = Settings()
    if values is None:
        values = {}
    if not isinstance(values, dict):
        report(path, f"expected a mapping of keys, got {_show(values)}", ", ".join(section.fields))
        values = {}
    for key in values:
        if key not in section.fields:
            close = difflib.get_close_matches(str(key), list(section.fields), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            report(path + (key,), f"unknown key{hint}", ", ".join(section.fields))
    for name, spec in section.fields.items():
        child = path + (name,)
        present = name in values
        if isinstance(spec, Section):
            if not present and spec.required:
                report(child, "missing required section")
            out[name] = _validate_section(spec, values.get(name), child, source, report, ctx)
            continue
        if not present:
            if spec.default is REQUIRED:
                report(child, f"missing required key ({spec.type.describe()})")
                out[name] = None
            else:
                out[name] = spec.default
            continue
        local_ctx = Context(ctx.cwd, ctx.cwd) if source.where(child)[0] == OVERRIDE_SOURCE else ctx
        try:
            value = spec.type.convert(values[name], local_ctx)
            if spec.check is not None:
                spec.check(value)
            out[name] = value
        except Invalid as exc:
            for problem in exc.every():
                report(child + problem.subpath, problem.message, problem.allowed)
            out[name] = None
    return out


def describe_section(section: Section, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows (key path, type, default, doc) for the config reference, nested records expanded."""
    rows = []
    for name, spec in section.fields.items():
        key = f"{prefix}{name}"
        if isinstance(spec, Section):
            rows.append((key, "section", "required" if spec.required else "", spec.doc))
            rows.extend(describe_section(spec, key + "."))
            continue
        default = "required" if spec.default is REQUIRED else _show(spec.default)
        nested = _record_in(spec.type)
        if nested is not None:
            record, suffix = nested
            rows.append((key, spec.type.describe(), "see below" if isinstance(spec.default, dict) else default,
                         spec.doc))
            rows.extend(describe_section(Section(record.fields), f"{key}{suffix}."))
        else:
            rows.append((key, spec.type.describe(), default, spec.doc))
    return rows


def _record_in(kind: Type) -> tuple["Record", str] | None:
    """The Record a type holds (directly, as an alternative, or as list items / map values) and the key suffix."""
    if isinstance(kind, Record):
        return kind, ""
    if isinstance(kind, OneOf):
        for alternative in kind.types:
            found = _record_in(alternative)
            if found is not None:
                return found
    if isinstance(kind, ListOf):
        found = _record_in(kind.item)
        return (found[0], "[]" + found[1]) if found else None
    if isinstance(kind, MapOf):
        found = _record_in(kind.value)
        return (found[0], ".<name>" + found[1]) if found else None
    return None


def _range_text(low: Any, high: Any, noun: str, count: bool = False) -> str | None:
    if low is None and high is None:
        return None
    if count:
        if high is None:
            return f"at least {low} {noun}"
        return f"{low} to {high} {noun}" if low != high else f"exactly {low} {noun}"
    if high is None:
        return f"{noun} >= {low}"
    if low is None:
        return f"{noun} <= {high}"
    return f"{noun} from {low} to {high}"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, (list, dict)):
        return type(value).__name__ if len(str(value)) > 40 else str(value)
    return str(value)


def _split(dotted: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in dotted.split(".") if p]


def _dotted(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path)


def lookup(values: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """Follow a dotted key path through nested mappings; ``default`` when a key is missing (a key present with
    the value None gives None)."""
    node: Any = values
    for part in _split(dotted):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return default
    return node
