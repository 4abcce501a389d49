"""Builds the spaCy pipeline Rasa loads (SpacyNLP + SpacyEntityExtractor).

A blank ``zh`` pipeline with the jieba segmenter and an ``entity_ruler`` whose
patterns come from project data: identifier shapes from :mod:`kefu.id_formats`
and product names from the catalogue in the business database.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List

import spacy
from sqlalchemy import select

from kefu import id_formats
from kefu.db import PROJECT_ROOT, session_scope
from kefu.models import Product

DEFAULT_OUTPUT = PROJECT_ROOT / "models" / "spacy_zh"
USER_DICT_DIR = PROJECT_ROOT / "data" / "dict"


def identifier_patterns() -> List[Dict]:
    prefixed = "|".join(f"{p}\\d{{{n}}}" for p, n in id_formats.TRACKING_PREFIXED.items())
    return [
        {"label": "phone", "id": "phone", "pattern": [{"TEXT": {"REGEX": rf"^(?:\+?86)?{id_formats.PHONE}$"}}]},
        {"label": "tracking_number", "id": "tracking_prefixed",
         "pattern": [{"TEXT": {"REGEX": rf"(?i)^(?:{prefixed})$"}}]},
        # any other 10-20 digit number is an order reference; phones are excluded, and a
        # plain-digit tracking number is resolved against the database by the forms
        {"label": "order_id", "id": "order_id",
         "pattern": [{"TEXT": {"REGEX": rf"^(?!(?:\+?86)?{id_formats.PHONE}$){id_formats.ORDER_ID}$"}}]},
    ]


def product_kinds() -> List[str]:
    """Generic product words (手机, 羽绒服, 空调 …): the `nprod` entries of the jieba dictionaries."""
    kinds = []
    for path in sorted(USER_DICT_DIR.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == "nprod":
                kinds.append(parts[0])
    return kinds


def product_patterns(names: Iterable[str], kinds: Iterable[str] | None = None) -> List[Dict]:
    """Catalogue names, plus each generic product word that names something in the catalogue."""
    names = [n.strip() for n in names if n and n.strip()]
    kinds = product_kinds() if kinds is None else list(kinds)
    phrases = set(names) | {kind for kind in kinds if any(kind in name for name in names)}
    return [{"label": "product", "id": "product", "pattern": p} for p in sorted(phrases)]


def catalogue_names(url: str | None = None) -> List[str]:
    with session_scope(url) as session:
        return list(session.execute(select(Product.name)).scalars())


def load_user_dict() -> None:
    import jieba

    for path in sorted(USER_DICT_DIR.glob("*.txt")):
        jieba.load_userdict(str(path))


def build(output: Path = DEFAULT_OUTPUT, product_names: Iterable[str] | None = None) -> Path:
    load_user_dict()
    nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    names = catalogue_names() if product_names is None else list(product_names)
    ruler.add_patterns(identifier_patterns() + product_patterns(names))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    return output
