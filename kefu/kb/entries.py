"""KB entries and their validation: YAML files under data/kb/, one per category.

Every error names the file and the line, so an operator can fix it at once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from kefu.errors import FileProblem

ID_RE = re.compile(r"^[a-z][a-z0-9_]*-\d{3,}$")
ALLOWED_VARIABLES = {"customer_name", "help_url"}
ENTRY_KEYS = {"id", "question", "paraphrases", "answer", "tags", "valid_from", "valid_to"}


class KBValidationError(FileProblem):
    """A knowledge-base file or CSV that does not validate."""


@dataclass(frozen=True)
class Entry:
    id: str
    category: str
    question: str
    answer: str
    paraphrases: Tuple[str, ...] = ()
    tags: Tuple[str, ...] = ()
    valid_from: Optional[date] = None
    valid_to: Optional[date] = None
    source: str = field(default="", compare=False)

    def is_valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or day <= self.valid_to)

    def texts(self) -> List[str]:
        return [self.question, *self.paraphrases]


def _scalar(node: yaml.Node) -> Any:
    """The Python value of a composed node (dates become `date`, `~`/empty become None)."""
    if node is None:
        return None
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _mapping(node: yaml.Node, file: str, what: str) -> Dict[str, Tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise KBValidationError(file, node.start_mark.line + 1 if node else None, f"{what} must be a mapping")
    return {k.value: (k, v) for k, v in node.value}


def _text(node: yaml.Node, file: str, what: str, max_len: int = 500) -> str:
    value = _scalar(node)
    if not isinstance(value, str) or not value.strip():
        raise KBValidationError(file, node.start_mark.line + 1, f"{what} must be a non-empty text")
    if len(value) > max_len:
        raise KBValidationError(file, node.start_mark.line + 1, f"{what} is longer than {max_len} characters")
    return value.strip()


def _texts(node: yaml.Node, file: str, what: str) -> Tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise KBValidationError(file, node.start_mark.line + 1, f"{what} must be a list")
    return tuple(_text(item, file, f"{what} item") for item in node.value)


def _date(node: Optional[yaml.Node], file: str, what: str) -> Optional[date]:
    if node is None:
        return None
    value = _scalar(node)
    if value is None:
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise KBValidationError(file, node.start_mark.line + 1, f"{what} must be a date like 2026-11-30") from None


def check_answer_variables(answer: str, file: str, line: Optional[int]) -> None:
    for name in re.findall(r"\{([^{}]*)\}", answer):
        if name not in ALLOWED_VARIABLES:
            raise KBValidationError(file, line, f"answer uses unknown variable {{{name}}}; "
                                                f"allowed: {', '.join(sorted(ALLOWED_VARIABLES))}")


def parse_file(path: Path) -> List[Entry]:
    file = path.name
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else None
        raise KBValidationError(file, line, f"not valid YAML: {error.problem}") from None
    except UnicodeDecodeError:
        raise KBValidationError(file, None, "not UTF-8 text") from None
    if root is None:
        return []
    top = _mapping(root, file, "the file")
    if "category" not in top or "entries" not in top:
        raise KBValidationError(file, root.start_mark.line + 1, "needs the keys 'category' and 'entries'")
    category = _text(top["category"][1], file, "category", 32)
    entries_node = top["entries"][1]
    if not isinstance(entries_node, yaml.SequenceNode):
        raise KBValidationError(file, entries_node.start_mark.line + 1, "'entries' must be a list")
    entries = []
    for node in entries_node.value:
        line = node.start_mark.line + 1
        fields = _mapping(node, file, "an entry")
        unknown = [k for k in fields if k not in ENTRY_KEYS]
        if unknown:
            key_line = fields[unknown[0]][0].start_mark.line + 1
            raise KBValidationError(file, key_line, f"unknown key(s): {', '.join(unknown)}")
        for key in ("id", "question", "answer"):
            if key not in fields:
                raise KBValidationError(file, line, f"entry has no '{key}'")
        entry_id = _text(fields["id"][1], file, "id", 64)
        if not ID_RE.match(entry_id):
            raise KBValidationError(file, fields["id"][1].start_mark.line + 1,
                                    f"id {entry_id!r} must look like 'logistics-001'")
        answer = _text(fields["answer"][1], file, "answer", 1000)
        check_answer_variables(answer, file, fields["answer"][1].start_mark.line + 1)
        entry = Entry(
            id=entry_id, category=category, question=_text(fields["question"][1], file, "question"),
            answer=answer,
            paraphrases=_texts(fields["paraphrases"][1], file, "paraphrases") if "paraphrases" in fields else (),
            tags=_texts(fields["tags"][1], file, "tags") if "tags" in fields else (),
            valid_from=_date(fields.get("valid_from", (None, None))[1], file, "valid_from"),
            valid_to=_date(fields.get("valid_to", (None, None))[1], file, "valid_to"),
            source=f"{file}:{line}",
        )
        if entry.valid_from and entry.valid_to and entry.valid_from > entry.valid_to:
            raise KBValidationError(file, line, "valid_from is after valid_to")
        entries.append(entry)
    return entries


def load_dir(directory: Path) -> List[Entry]:
    """All entries of all category files; ids must be unique across files."""
    entries: List[Entry] = []
    seen: Dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.yml")):
        if path.name.startswith("_"):
            continue  # _synonyms.yml etc. are not categories
        for entry in parse_file(path):
            if entry.id in seen:
                file, line = entry.source.split(":")
                raise KBValidationError(file, int(line), f"id {entry.id!r} already used at {seen[entry.id]}")
            seen[entry.id] = entry.source
            entries.append(entry)
    return entries


def load_synonyms(directory: Path) -> Dict[str, str]:
    """word -> canonical word, from _synonyms.yml ({canonical: [variants]})."""
    path = Path(directory) / "_synonyms.yml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise KBValidationError(path.name, 1, "must map a word to a list of its variants")
    mapping = {}
    for canonical, variants in data.items():
        if not isinstance(variants, list):
            raise KBValidationError(path.name, None, f"variants of {canonical!r} must be a list")
        for variant in variants:
            mapping[str(variant).lower()] = str(canonical).lower()
    return mapping
