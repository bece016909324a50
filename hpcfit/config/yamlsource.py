"""Load YAML safely into plain Python values while remembering the line of every key and list item.

Errors must say ``FILE:LINE: key.path: ...``, so the loader keeps a map from key paths (tuples of dict keys
and list indices) to 1-based line numbers. Duplicate keys, which plain ``yaml.safe_load`` silently merges,
are reported as errors. Command-line overrides (``--set a.b=value``) are applied to the same tree and
remember that they came from the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpcfit.config.errors import ConfigError, ConfigIssue

KeyPath = tuple[Any, ...]
OVERRIDE_SOURCE = "--set"


@dataclass
class YamlSource:
    """A parsed configuration: the values, where each key came from, and the original text."""

    values: dict[str, Any]
    source: str
    text: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    overridden: set[KeyPath] = field(default_factory=set)

    def where(self, path: KeyPath) -> tuple[str, int | None]:
        """(source, line) for a key path, falling back to its nearest located ancestor."""
        for cut in range(len(path), -1, -1):
            prefix = tuple(path[:cut])
            if prefix in self.overridden:
                return OVERRIDE_SOURCE, None
            if prefix in self.lines:
                return self.source, self.lines[prefix]
        return self.source, None

    def apply_override(self, assignment: str) -> None:
        """Apply one ``key.path=value`` override (the value is parsed as YAML)."""
        if "=" not in assignment:
            raise ConfigError([ConfigIssue(OVERRIDE_SOURCE, None, "", f"'{assignment}' is not of the form key.path=value")])
        key, _, raw = assignment.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError([ConfigIssue(OVERRIDE_SOURCE, None, "", f"'{assignment}' has an empty key")])
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError([ConfigIssue(OVERRIDE_SOURCE, None, key, f"value is not valid YAML: {exc}")]) from exc
        self.set_value(key, value)

    def set_value(self, key: str, value: Any) -> None:
        """Set one dotted key to a value, as an override (``hpcfit.run(..., overrides={key: value})``; the value
        as YAML would give it)."""
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError([ConfigIssue(OVERRIDE_SOURCE, None, "", f"'{key}' is an empty key")])
        value = _plain(value)
        node: Any = self.values
        for depth, part in enumerate(parts[:-1]):
            index: Any = int(part) if isinstance(node, list) and part.isdigit() else part
            if isinstance(node, dict):
                if not isinstance(node.get(index), (dict, list)):
                    node[index] = {}
                node = node[index]
            elif isinstance(node, list) and isinstance(index, int) and index < len(node):
                node = node[index]
            else:
                path = ".".join(parts[: depth + 1])
                raise ConfigError([ConfigIssue(OVERRIDE_SOURCE, None, path, "cannot descend into a non-mapping value")])
        last: Any = parts[-1]
        if isinstance(node, list):
            if not (last.isdigit() and int(last) < len(node)):
                raise ConfigError([ConfigIssue(OVERRIDE_SOURCE, None, key, f"list index out of range (length {len(node)})")])
            last = int(last)
        node[last] = value
        self.overridden.add(tuple(int(p) if p.isdigit() else p for p in parts))


def load_yaml_text(text: str, source: str) -> YamlSource:
    """Parse YAML text; the top level must be a mapping."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([syntax_issue(exc, text, source)]) from exc
    if root is None:
        raise ConfigError([ConfigIssue(source, 1, "", "the file is empty")])
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([ConfigIssue(source, root.start_mark.line + 1, "", "the top level must be a mapping of keys")])
    lines: dict[KeyPath, int] = {(): 1}
    issues: list[ConfigIssue] = []
    values = _convert(root, (), lines, issues, source)
    if issues:
        raise ConfigError(issues)
    return YamlSource(values=values, source=source, text=text, lines=lines)


# What pyyaml's "while parsing/scanning ..." context means to a reader of the file: the construct that starts at the
# context mark and was never finished.
_UNCLOSED = {
    "while parsing a flow sequence": "the flow sequence started here ('[') is never closed",
    "while parsing a flow mapping": "the flow mapping started here ('{') is never closed",
    "while scanning a quoted scalar": "the quoted string started here is never closed",
}


def syntax_issue(exc: yaml.YAMLError, text: str, source: str) -> ConfigIssue:
    """One issue for a YAML syntax error: the line where the unfinished construct starts (pyyaml's context mark),
    the line where the parser stopped (its problem mark), and the key on the first of them when it can be told."""
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if problem_mark is None:
        return ConfigIssue(source, None, "", f"not valid YAML: {problem}")
    stop_line = problem_mark.line + 1
    if "'\\t'" in problem:  # pyyaml spells the tab as '\t' in "found character '\t' that cannot start any token"
        return ConfigIssue(source, stop_line, _key_at(text, stop_line, problem_mark.column),
                           _tab_message(text, stop_line, problem_mark.column))
    context = getattr(exc, "context", None)
    if context_mark is None or context is None:
        return ConfigIssue(source, stop_line, _key_at(text, stop_line, problem_mark.column),
                           f"not valid YAML: {problem}")
    start_line = context_mark.line + 1
    started = _UNCLOSED.get(context, f"{context.removeprefix('while ')}, started here, is never finished")
    stopped = f"the parser stopped at line {stop_line}" if stop_line != start_line else "the parser stopped"
    return ConfigIssue(source, start_line, _key_at(text, start_line, context_mark.column),
                       f"not valid YAML: {started}; {stopped}: {problem}")


def _tab_message(text: str, line: int, column: int) -> str:
    """Why a tab is refused, naming its column and whether it indents the line."""
    content = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    indent = len(content) - len(content.lstrip(" \t"))
    where = "indents this line" if column < indent else "separates the tokens of this line"
    return (f"not valid YAML: a tab character (column {column + 1}) {where}; YAML allows only spaces for "
            "indentation and between keys and values: replace the tab with spaces")


def _key_at(text: str, line: int, column: int) -> str:
    """The dotted key path of the entry on ``line`` of a file that does not parse, or "" when it cannot be told.

    The lines before ``line`` parse (the parser got past them), so parse them plus ``line`` cut where the problem
    starts (a tab in the indentation is taken as the indentation of a sibling or first child of the previous key)
    and look for the key on it.
    """
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ""
    head, current = lines[:line - 1], lines[line - 1]
    indent = len(current) - len(current.lstrip(" \t"))
    if "\t" in current[:indent]:
        previous = next((h for h in reversed(head) if h.strip() and not h.lstrip().startswith("#")), "")
        # a sibling of the previous key, or its first child when that key opens a block
        opens = previous.split(" #")[0].rstrip().endswith(":")
        width = len(previous) - len(previous.lstrip(" ")) + (2 if opens else 0)
        current = " " * width + current.lstrip(" \t")
    else:
        current = current[:column].rstrip()
        if not current.endswith(":"):
            return ""
        current += " ~"  # the value that did not parse, replaced by null
    try:
        root = yaml.compose("\n".join(head + [current]), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return ""
    if root is None:
        return ""
    found: dict[KeyPath, int] = {}
    _convert(root, (), found, [], "")
    on_line = [path for path, at in found.items() if at == line]
    return _dotted(max(on_line, key=len)) if on_line else ""


def load_yaml_file(path: str | Path) -> YamlSource:
    """Read and parse a YAML configuration file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), None, "", f"cannot read the configuration: {exc.strerror or exc}")]) from exc
    return load_yaml_text(text, str(path))


MAPPING_SOURCE = "<dict>"


def load_mapping(values: Any, source: str = MAPPING_SOURCE) -> YamlSource:
    """A config given as a Python mapping (``hpcfit.run(dict)``), validated like a file: the same values YAML
    would give (tuples as lists, paths and numpy scalars as plain values; a deep copy, so overrides leave the
    caller's dict alone). Its problems name the key path without a line (``<dict>: gridfit.x: unknown key``);
    relative paths are relative to the working directory."""
    if not isinstance(values, dict):
        raise ConfigError([ConfigIssue(source, None, "", f"the configuration must be a mapping of keys, got "
                                                         f"{type(values).__name__}")])
    plain = _plain(values)
    try:
        text = yaml.safe_dump(plain, sort_keys=False)
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(source, None, "", f"cannot be written as YAML: {exc}")]) from exc
    return YamlSource(values=plain, source=source, text=text)


def _plain(value: Any) -> Any:
    """YAML's own types for a Python value: mappings with str keys, lists, scalars."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()  # numpy scalars and 0-d arrays
    if hasattr(value, "tolist") and callable(value.tolist):
        return _plain(value.tolist())  # numpy arrays
    return value


_constructor = yaml.constructor.SafeConstructor()


def _convert(node: yaml.Node, path: KeyPath, lines: dict, issues: list, source: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(ConfigIssue(source, key_node.start_mark.line + 1, _dotted(path), "keys must be plain scalars"))
                continue
            key = _constructor.construct_object(key_node)
            key = key if isinstance(key, str) else str(key)
            child = path + (key,)
            if key in result:
                issues.append(ConfigIssue(source, key_node.start_mark.line + 1, _dotted(child),
                                          f"duplicate key (first given on line {lines[child]})"))
                continue
            lines[child] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, child, lines, issues, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            items.append(_convert(item, path + (index,), lines, issues, source))
        return items
    return _constructor.construct_object(node, deep=True)


def _dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)
