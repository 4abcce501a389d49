"""CSV export/import of the knowledge base for business users (Excel-friendly UTF-8 with BOM).

Import is all-or-nothing: every row is validated first (errors name the file and line);
only then are the category files rewritten, each atomically.
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections import OrderedDict
from datetime import date
from pathlib import Path
from typing import Dict, List

import yaml

from kefu.kb.entries import ID_RE, Entry, KBValidationError, check_answer_variables, load_dir

COLUMNS = ["id", "category", "question", "paraphrases", "answer", "tags", "valid_from", "valid_to"]
LIST_SEPARATOR = "|"


def export_csv(directory: Path, target: Path) -> int:
    entries = load_dir(directory)
    with open(target, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for e in entries:
            writer.writerow([e.id, e.category, e.question, LIST_SEPARATOR.join(e.paraphrases), e.answer,
                             LIST_SEPARATOR.join(e.tags), e.valid_from or "", e.valid_to or ""])
    return len(entries)


def _split(value: str) -> tuple:
    return tuple(part.strip() for part in (value or "").split(LIST_SEPARATOR) if part.strip())


def _date(value: str, file: str, line: int, column: str):
    if not (value or "").strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise KBValidationError(file, line, f"column {column!r} must be a date like 2026-11-30") from None


def read_csv(path: Path) -> List[Entry]:
    file = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise KBValidationError(file, None, "not UTF-8 text (save as 'CSV UTF-8')") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in ("id", "category", "question", "answer") if c not in (reader.fieldnames or [])]
    if missing:
        raise KBValidationError(file, 1, f"missing column(s): {', '.join(missing)}")
    entries, seen = [], {}
    for line, row in enumerate(reader, start=2):
        for column in ("id", "category", "question", "answer"):
            if not (row.get(column) or "").strip():
                raise KBValidationError(file, line, f"column {column!r} is empty")
        entry_id = row["id"].strip()
        if not ID_RE.match(entry_id):
            raise KBValidationError(file, line, f"id {entry_id!r} must look like 'logistics-001'")
        if entry_id in seen:
            raise KBValidationError(file, line, f"id {entry_id!r} already used on line {seen[entry_id]}")
        seen[entry_id] = line
        check_answer_variables(row["answer"], file, line)
        entry = Entry(id=entry_id, category=row["category"].strip(), question=row["question"].strip(),
                      answer=row["answer"].strip(), paraphrases=_split(row.get("paraphrases", "")),
                      tags=_split(row.get("tags", "")),
                      valid_from=_date(row.get("valid_from", ""), file, line, "valid_from"),
                      valid_to=_date(row.get("valid_to", ""), file, line, "valid_to"), source=f"{file}:{line}")
        if entry.valid_from and entry.valid_to and entry.valid_from > entry.valid_to:
            raise KBValidationError(file, line, "valid_from is after valid_to")
        entries.append(entry)
    return entries


def _file_for(category: str, existing: Dict[str, Path], directory: Path, entries: List[Entry]) -> Path:
    if category in existing:
        return existing[category]
    stem = entries[0].id.rsplit("-", 1)[0]
    return directory / f"{stem}.yml"


def import_csv(path: Path, directory: Path) -> int:
    """Replace the knowledge base with the CSV's entries (validated first, nothing half-written)."""
    entries = read_csv(path)
    directory = Path(directory)
    existing = {}
    for file in sorted(directory.glob("*.yml")):
        if not file.name.startswith("_"):
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            existing[data.get("category")] = file
    by_category: "OrderedDict[str, List[Entry]]" = OrderedDict()
    for entry in entries:
        by_category.setdefault(entry.category, []).append(entry)
    # write every category file into a staging folder beside the KB, check the whole
    # set, and only then move the files into place
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".import-"))
    try:
        targets = []
        for category, items in by_category.items():
            target = _file_for(category, existing, directory, items)
            document = {"category": category, "entries": [_as_yaml(e) for e in items]}
            with open(staging / target.name, "w", encoding="utf-8") as handle:
                yaml.safe_dump(document, handle, allow_unicode=True, sort_keys=False, width=1000)
            targets.append(target)
        load_dir(staging)
        for target in targets:
            os.replace(staging / target.name, target)
        for category, file in existing.items():
            if category not in by_category:
                file.unlink()  # the CSV is the whole knowledge base: categories it drops go away
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(entries)


def _as_yaml(entry: Entry) -> dict:
    data = {"id": entry.id, "question": entry.question, "paraphrases": list(entry.paraphrases),
            "answer": entry.answer, "tags": list(entry.tags)}
    if entry.valid_from:
        data["valid_from"] = entry.valid_from.isoformat()
    if entry.valid_to:
        data["valid_to"] = entry.valid_to.isoformat()
    return data
