"""Fleet files: many cameras at once, as CSV or YAML.

CSV columns are the ``Camera`` field names (``id,name,region,main_url,...``).
YAML is either a list of camera mappings or ``{cameras: [...]}``. Parsing never
stops at the first bad row: every row is checked and every error is reported,
so an operator fixes the file once.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from config.cameras import Camera


@dataclass(frozen=True)
class RowError:
    """What is wrong with one row of a fleet file (rows count from 1)."""

    row: int
    camera_id: str | None
    message: str

    def __str__(self) -> str:
        who = f" ({self.camera_id})" if self.camera_id else ""
        return f"row {self.row}{who}: {self.message}"


class FleetFileError(ValueError):
    """A fleet file with one or more bad rows; nothing from it was applied."""

    def __init__(self, errors: list[RowError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "row"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


# A fleet file's error answer lists at most this many rows (then says how many more).
MAX_ERRORS = 100


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: a fleet file has no use for them, and a few hundred
    bytes of nested aliases expand to gigabytes (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a fleet file: "
                                              "write each camera out", event.start_mark)
        return super().compose_node(parent, index)


def parse_camera_rows(rows: Iterable[dict[str, Any]], max_rows: int | None = None) -> list[Camera]:
    """Validate raw rows into cameras; raise ``FleetFileError`` listing every bad row."""
    cameras: list[Camera] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(rows, start=1):
        if max_rows is not None and number > max_rows:
            raise FleetFileError([RowError(number, None, f"more than {max_rows} rows: split the file "
                                                         "(setting import_max_rows)")])
        if len(errors) >= MAX_ERRORS:
            errors.append(RowError(number, None, "too many bad rows; fix these first"))
            break
        if not isinstance(raw, dict):
            errors.append(RowError(number, None, "expected a mapping of camera fields"))
            continue
        # (A CSV row's surplus fields come under the key None: ignored, as before.)
        bad = [k for k, v in raw.items()
               if k is not None and (not isinstance(k, str) or isinstance(v, (dict, list, set)))]
        if bad:
            errors.append(RowError(number, None, "every field must be a name with a plain value (no lists or "
                                                 f"mappings): check {str(bad[0])[:40]!r}"))
            continue
        row = {k.strip(): v for k, v in raw.items() if k is not None and v not in ("", None)}
        camera_id = str(row.get("id", ""))[:64] or None
        try:
            camera = Camera.model_validate(row)
        except ValidationError as exc:
            errors.append(RowError(number, camera_id, _validation_message(exc)[:500]))
            continue
        if camera.id in seen:
            errors.append(RowError(number, camera.id, f"duplicate id, first seen in row {seen[camera.id]}"))
            continue
        seen[camera.id] = number
        cameras.append(camera)
    if errors:
        raise FleetFileError(errors)
    return cameras


def _coerce_bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    return value


def read_fleet_text(text: str, fmt: str, max_rows: int | None = None) -> list[Camera]:
    """Parse fleet text in ``fmt`` ("csv" or "yaml"); more than ``max_rows`` rows is an error."""
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        rows = ({k: _coerce_bool(v) if k == "enabled" else v for k, v in r.items()} for r in reader)
        try:
            return parse_camera_rows(rows, max_rows)
        except csv.Error as exc:
            raise FleetFileError([RowError(reader.line_num, None, f"not valid CSV: {exc}")]) from exc
    if fmt == "yaml":
        try:
            data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader, without aliases
        except yaml.YAMLError as exc:
            raise FleetFileError([RowError(0, None, f"not valid YAML: {str(exc)[:500]}")]) from exc
        if isinstance(data, dict) and "cameras" in data:
            data = data["cameras"]
        if not isinstance(data, list):
            raise FleetFileError([RowError(0, None, "expected a list of cameras or {cameras: [...]}")])
        return parse_camera_rows(data, max_rows)
    raise ValueError(f"unknown fleet format {fmt!r}: use csv or yaml")


def read_fleet_file(path: Path) -> list[Camera]:
    """Parse a ``.csv``, ``.yaml`` or ``.yml`` fleet file."""
    suffix = path.suffix.lower()
    fmt = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}.get(suffix)
    if fmt is None:
        raise ValueError(f"{path}: unknown file type {suffix!r}; use .csv, .yaml or .yml")
    return read_fleet_text(path.read_text(encoding="utf-8-sig"), fmt)


CSV_COLUMNS = list(Camera.model_fields)


def write_fleet_csv(cameras: Iterable[Camera]) -> str:
    """Cameras as CSV text with the same columns ``read_fleet_text`` takes."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for camera in cameras:
        writer.writerow({k: ("" if v is None else v) for k, v in camera.model_dump().items()})
    return out.getvalue()
