"""Hybrid retrieval over KB entries: BM25 on jieba tokens (with synonyms) fused with
a character n-gram TF-IDF cosine.  Both run as sparse matrix products, so a query
costs a tokenisation and two products whatever the size of the KB.

Each entry is indexed through all its texts (standard question + paraphrases); an
entry's score is the best score of its texts.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Dict, Iterable, List, Optional, Sequence

import jieba
import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from kefu.kb.entries import Entry

PARTICLES = set("的了吗呢啊呀吧哦哈嘛么啦咧哇哎诶噢喔")
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    return _PUNCT.sub(" ", text).strip()


@dataclass(frozen=True)
class Hit:
    entry: Entry
    score: float  # fused score in [0, 1]
    bm25: float
    char: float


@dataclass(frozen=True)
class Weights:
    char: float = 0.55           # weight of the char n-gram cosine, the rest goes to BM25
    bm25_saturation: float = 6.0  # bm25 / (bm25 + s) maps raw BM25 into [0, 1)
    k1: float = 1.2
    b: float = 0.75
    answer: float = 0.9          # answers are indexed too, their scores scaled by this (0 = not indexed)


class HybridIndex:
    def __init__(self, entries: Sequence[Entry], synonyms: Optional[Dict[str, str]] = None,
                 weights: Weights = Weights()):
        self.entries = list(entries)
        self.synonyms = synonyms or {}
        self.weights = weights
        self.doc_entry: List[int] = []
        docs: List[str] = []
        doc_scale: List[float] = []
        for index, entry in enumerate(self.entries):
            texts = entry.texts() + ([entry.answer] if weights.answer > 0 else [])
            for position, text in enumerate(texts):
                docs.append(text)
                self.doc_entry.append(index)
                doc_scale.append(weights.answer if position == len(entry.texts()) else 1.0)
        self.doc_scale = np.array(doc_scale)
        self.docs = docs
        self._build_bm25([self.tokens(d) for d in docs])
        self.char_vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True,
                                               preprocessor=normalize)
        self.char_matrix = self.char_vectorizer.fit_transform(docs) if docs else None

    # --- tokens -----------------------------------------------------------------------------
    def tokens(self, text: str) -> List[str]:
        out = []
        for token in jieba.lcut(normalize(text)):
            token = token.strip()
            if not token or token in PARTICLES:
                continue
            out.append(self.synonyms.get(token, token))
        return out

    def _build_bm25(self, tokenized: List[List[str]]) -> None:
        vocab: Dict[str, int] = {}
        rows, cols, tfs = [], [], []
        lengths = []
        for row, toks in enumerate(tokenized):
            lengths.append(len(toks))
            for tok, tf in Counter(toks).items():
                rows.append(row)
                cols.append(vocab.setdefault(tok, len(vocab)))
                tfs.append(tf)
        self.vocab = vocab
        n_docs = max(len(tokenized), 1)
        avgdl = (sum(lengths) / n_docs) or 1.0
        df = Counter(cols)
        k1, b = self.weights.k1, self.weights.b
        data = []
        for row, col, tf in zip(rows, cols, tfs):
            idf = math.log(1 + (n_docs - df[col] + 0.5) / (df[col] + 0.5))
            norm = tf + k1 * (1 - b + b * lengths[row] / avgdl)
            data.append(idf * tf * (k1 + 1) / norm)
        self.bm25_matrix = sparse.csr_matrix((data, (rows, cols)), shape=(len(tokenized), max(len(vocab), 1)))

    # --- search -----------------------------------------------------------------------------
    def doc_scores(self, query: str):
        """Fused, BM25 and char scores for every indexed text."""
        n = len(self.docs)
        if not n:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        cols = [self.vocab[t] for t in set(self.tokens(query)) if t in self.vocab]
        if cols:
            q = sparse.csr_matrix((np.ones(len(cols)), ([0] * len(cols), cols)), shape=(1, self.bm25_matrix.shape[1]))
            bm25 = np.asarray((self.bm25_matrix @ q.T).todense()).ravel()
        else:
            bm25 = np.zeros(n)
        char = np.asarray((self.char_matrix @ self.char_vectorizer.transform([query]).T).todense()).ravel()
        s = self.weights.bm25_saturation
        fused = (self.weights.char * char + (1 - self.weights.char) * (bm25 / (bm25 + s))) * self.doc_scale
        return fused, bm25, char

    def search(self, query: str, k: int = 3, today: Optional[date] = None,
               exclude_docs: Iterable[int] = ()) -> List[Hit]:
        fused, bm25, char = self.doc_scores(query)
        if not len(fused):
            return []
        for doc in exclude_docs:
            fused[doc] = -1.0
        today = today or date.today()
        best: Dict[int, int] = {}
        for doc in np.argsort(-fused):
            entry_index = self.doc_entry[doc]
            if entry_index in best:
                continue
            if not self.entries[entry_index].is_valid_on(today):
                continue
            best[entry_index] = int(doc)
            if len(best) == k:
                break
        return [Hit(self.entries[e], float(max(fused[d], 0.0)), float(bm25[d]), float(char[d]))
                for e, d in best.items()]
