"""The knowledge base as the bot and the agents use it: hot reload, decisions, rendering."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from kefu.db import PROJECT_ROOT
from kefu.kb.entries import Entry, KBValidationError, load_dir, load_synonyms
from kefu.kb.retrieval import Hit, HybridIndex

logger = logging.getLogger(__name__)

DEFAULT_DIR = PROJECT_ROOT / "data" / "kb"
HELP_URL = os.environ.get("KEFU_HELP_URL", "https://help.example.com")


@dataclass(frozen=True)
class Thresholds:
    # chosen on the dev half of tests/kb/heldout_queries.yml (bench/kb_eval.py --tune)
    answer: float = 0.5      # top score at or above: answer directly …
    margin: float = 0.05     # … if it also leads the next entry by this much
    clarify: float = 0.4     # otherwise, top score at or above: offer the top 3 as buttons


@dataclass(frozen=True)
class Decision:
    kind: str  # "answer" | "clarify" | "miss"
    hits: Tuple[Hit, ...]

    @property
    def best(self) -> Optional[Hit]:
        return self.hits[0] if self.hits else None


class KnowledgeBase:
    """Entries from a directory of YAML files, re-read within `check_interval` s of a change.

    A change that does not validate is logged and ignored: the previous entries stay
    in service, so a typo in one file never takes the knowledge base down.
    """

    def __init__(self, directory: Path = DEFAULT_DIR, thresholds: Thresholds = Thresholds(),
                 check_interval: float = 1.0):
        self.directory = Path(directory)
        self.thresholds = thresholds
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._signature: Tuple = ()
        self._checked_at = 0.0
        self.last_error: Optional[str] = None
        self.index = HybridIndex([])
        self._by_id: Dict[str, Entry] = {}
        self.reload(force=True)

    def _files_signature(self) -> Tuple:
        files = sorted(self.directory.glob("*.yml"))
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)

    def reload(self, force: bool = False) -> bool:
        """Re-read the files if they changed; True when new entries went live."""
        with self._lock:
            self._checked_at = time.monotonic()
            signature = self._files_signature()
            if signature == self._signature and not force:
                return False
            try:
                entries = load_dir(self.directory)
                synonyms = load_synonyms(self.directory)
            except KBValidationError as error:
                self.last_error = str(error)
                self._signature = signature  # do not re-parse the same broken files on every query
                logger.error("knowledge base not reloaded, keeping %d entries: %s", len(self._by_id), error)
                if force and not self._by_id:
                    raise
                return False
            self.index = HybridIndex(entries, synonyms)
            self._by_id = {e.id: e for e in entries}
            self._signature = signature
            self.last_error = None
            logger.info("knowledge base loaded: %d entries from %s", len(entries), self.directory)
            return True

    def _fresh(self) -> None:
        if time.monotonic() - self._checked_at >= self.check_interval:
            self.reload()

    def __len__(self) -> int:
        return len(self._by_id)

    def entry(self, entry_id: str) -> Optional[Entry]:
        self._fresh()
        return self._by_id.get(entry_id)

    def search(self, query: str, k: int = 3, today: Optional[date] = None) -> List[Hit]:
        self._fresh()
        return self.index.search(query, k=k, today=today)

    def decide(self, query: str, today: Optional[date] = None) -> Decision:
        hits = tuple(self.search(query, k=3, today=today))
        if not hits or hits[0].score < self.thresholds.clarify:
            return Decision("miss", hits)
        lead = hits[0].score - (hits[1].score if len(hits) > 1 else 0.0)
        if hits[0].score >= self.thresholds.answer and lead >= self.thresholds.margin:
            return Decision("answer", hits)
        return Decision("clarify", hits)


def render(entry: Entry, customer_name: Optional[str] = None) -> str:
    """The answer text with its variables filled in."""
    values = {"customer_name": customer_name or "您", "help_url": HELP_URL}
    return entry.answer.format_map(values)


_instances: Dict[Path, KnowledgeBase] = {}
_instances_lock = threading.Lock()


def get_kb(directory: Optional[Path] = None) -> KnowledgeBase:
    """The process-wide knowledge base (KEFU_KB_DIR or data/kb/)."""
    path = Path(directory or os.environ.get("KEFU_KB_DIR") or DEFAULT_DIR).resolve()
    with _instances_lock:
        if path not in _instances:
            _instances[path] = KnowledgeBase(path)
        return _instances[path]
