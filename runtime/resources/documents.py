"""Reading resource YAML files while remembering where each value came from.

Every error about a resource names the file, the line, the resource, the field and the
value; this module keeps the line of every path so later validation can do that.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class ResourceError(Exception):
    """A resource file that cannot be used, said precisely and with a way to fix it."""

    def __init__(
        self,
        file: Path | str,
        line: int | None,
        message: str,
        *,
        resource: str | None = None,
        field: str | None = None,
        value: object = None,
        hint: str | None = None,
    ) -> None:
        self.file, self.line, self.resource, self.field, self.value = file, line, resource, field, value
        where = f"{file}:{line}" if line else str(file)
        parts = [where + ":"]
        if resource:
            parts.append(f"{resource}:")
        if field:
            parts.append(f"field {field}:")
        parts.append(message)
        if value is not None:
            parts.append(f"(value: {value!r})")
        text = " ".join(parts)
        if hint:
            text += f". {hint[:1].upper()}{hint[1:]}"
        super().__init__(text)


@dataclass
class Document:
    """One YAML document of a resource file, with the line of every path in it."""

    file: Path
    data: dict[str, Any]
    lines: dict[Path_, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def name(self) -> str:
        meta = self.data.get("metadata")
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    @property
    def label(self) -> str:
        return f"{self.kind or 'resource'} {self.name!r}" if self.name else self.kind or "resource"

    def line_of(self, path: Path_) -> int | None:
        """The line of `path`, or of its closest enclosing value that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def error(
        self, path: Path_, message: str, value: object = None, hint: str | None = None
    ) -> ResourceError:
        return ResourceError(
            self.file,
            self.line_of(path),
            message,
            resource=self.label,
            field=dotted(path) or None,
            value=value,
            hint=hint,
        )


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def read_documents(file: Path) -> Iterator[Document]:
    """Each non-empty YAML document in `file`; bad YAML is a `ResourceError` with its line."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResourceError(file, None, f"cannot read the file: {exc.strerror}") from None
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise ResourceError(file, line, f"not valid YAML: {problem}", hint="fix the YAML syntax") from None
    constructor = yaml.SafeLoader("")
    for node in nodes:
        if node is None:
            continue
        lines: dict[Path_, int] = {}
        data = _convert(node, (), lines, constructor)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ResourceError(
                file, node.start_mark.line + 1, "a resource must be a YAML mapping", value=data
            )
        yield Document(file, data, lines)


def _convert(node: yaml.Node, path: Path_, lines: dict[Path_, int], ctor: yaml.SafeLoader) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(ctor.construct_object(key_node, deep=True))
            out[key] = _convert(value_node, (*path, key), lines, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, ctor) for i, item in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)
