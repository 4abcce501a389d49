"""Knowledge-gap mining: cluster what the bot did not understand, rank by volume, draft fixes as YAML.

Input (*candidates*, all from the analytics store, texts already masked):

- fallback messages: customer messages classified ``nlu_fallback`` or answered by a fallback action
  (:data:`kefu.analytics.kpis.FALLBACK_ACTIONS`);
- low-confidence messages: customer messages whose top intent confidence is below ``low_confidence``
  (default 0.6);
- knowledge-base misses (``kb_miss`` events from ``kb_misses``).

Button payloads (``/intent…``) and empty texts are skipped; a KB miss of the same text in the same
conversation within two minutes of a fallback message is the same question and is counted once.

Clustering: features (:func:`features`) are jieba content words plus the characters and character
bigrams inside them, weighted by TF-IDF (sublinear tf, l2); distinct texts are clustered by average-linkage
agglomerative clustering on cosine distance, cut at ``threshold`` (default 0.85). Clusters are ranked by
volume (messages, duplicates included), then by distinct senders. Singletons are noise unless
``min_size=1``.

Suggestions: the knowledge base's own retrieval (:class:`kefu.kb.service.KnowledgeBase`) finds the entry
nearest to the cluster's examples; TF-IDF similarity to the NLU examples in ``data/nlu`` finds the nearest
intent. ``draft="auto"``: paraphrases for an existing KB entry if the KB score is at least
``KB_MATCH``; else examples for an existing (topical) intent if the intent score is at least
``NLU_MATCH``; else a new KB entry. ``draft="nlu"`` / ``"kb"`` force the kind (existing target if close
enough, otherwise new). Drafts are written as YAML for a designer to review and move into ``data/``.
"""
from __future__ import annotations

import inspect
import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from kefu.analytics.kpis import Event, analyze, load_events
from kefu.db import PROJECT_ROOT
from kefu.privacy import mask_pii

DEFAULT_LOW_CONFIDENCE = 0.6
DEFAULT_THRESHOLD = 0.85
KB_MATCH = 0.4  # the knowledge base's own clarify threshold (kefu.kb.service.Thresholds)
NLU_MATCH = 0.35
MAX_DISTINCT_TEXTS = 3000
NLU_DIR = PROJECT_ROOT / "data" / "nlu"
KB_DIR = PROJECT_ROOT / "data" / "kb"
NON_TARGET_INTENTS = frozenset({"nlu_fallback", "out_of_scope", "chitchat", "ask_faq", "inform", "affirm",
                                "deny", "greet", "goodbye", "thank"})
DRAFT_ANSWER = "待补充：请填写标准答案（草稿，需审核）"
UNCATEGORIZED = "待分类"
PARTICLES = set("的了吗呢啊呀吧哦哈嘛么啦咧哇哎诶噢喔")
# function words of customer messages: they say nothing about the topic
STOP_WORDS = frozenset("""
我 你 您 他 她 它 我们 你们 他们 咱们 这 那 这个 那个 这样 那样 哪 哪个 哪里 哪儿 什么 怎么 怎样 怎么样 咋 如何
为什么 为啥 吗 呢 吧 啊 呀 哦 嘛 么 了 的 地 得 是 在 有 没有 没 不 能 不能 能不能 可以 可不可以 可 要 我要 想 想要
请问 请 问 问下 一下 下 一 个 还 也 都 就 和 跟 与 或 或者 亲 好 好的 谢谢 麻烦 帮 帮我 给 把 被 让 会 还是 已经
现在 今天 一直 到底 多少 几 啥 嗯 哈 噢 喔 额 诶 哎 在吗 在不在 行 行不行 就是 需要
""".split())
STOP_CHARS = frozenset("我你您他她它这那哪吗呢吧啊呀哦嘛么了的地得是在有没不能可要想请问一下个还也都就和跟与或亲好给把被让会怎样什啥几嗯哈噢喔额诶哎行")
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")
DEDUPE_WINDOW = timedelta(minutes=2)


@dataclass
class Candidate:
    text: str
    timestamp: datetime
    sender_id: Optional[str] = None
    channel: Optional[str] = None
    source: str = "fallback"  # fallback | low_confidence | kb_miss
    intent: Optional[str] = None
    confidence: Optional[float] = None


@dataclass
class Suggestion:
    kind: str  # kb_existing | kb_new | nlu_existing | nlu_new
    target: Optional[str] = None  # KB entry id or intent name
    score: float = 0.0
    category: Optional[str] = None
    question: Optional[str] = None  # the existing KB entry's question


@dataclass
class GapCluster:
    rank: int
    candidates: List[Candidate]
    examples: List[Tuple[str, int]]  # distinct texts with their counts, most frequent / central first
    top_terms: List[str]
    suggestion: Optional[Suggestion] = None
    kb_hint: Optional[Suggestion] = None
    nlu_hint: Optional[Suggestion] = None
    sources: Dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.candidates)

    @property
    def senders(self) -> int:
        return len({c.sender_id for c in self.candidates if c.sender_id})


# -------------------------------------------------------------------------------------------------
# candidates

def collect_candidates(events: Iterable[Event], since: Optional[datetime] = None, until: Optional[datetime] = None,
                       *, channel: Optional[str] = None,
                       low_confidence: float = DEFAULT_LOW_CONFIDENCE) -> List[Candidate]:
    events = list(events)
    analysis = analyze(events)

    def wanted(moment: datetime, event_channel: Optional[str]) -> bool:
        return ((since is None or moment >= since) and (until is None or moment < until)
                and (channel is None or event_channel == channel))

    found: List[Candidate] = []
    for conversation in analysis.conversations:
        fallback_ids = {id(e) for e in conversation.fallback_messages}
        for message in conversation.user_messages:
            text = (message.text or "").strip()
            if not text or text.startswith("/") or not wanted(message.timestamp, conversation.channel):
                continue
            if id(message) in fallback_ids:
                source = "fallback"
            elif message.confidence is not None and message.confidence < low_confidence:
                source = "low_confidence"
            else:
                continue
            found.append(Candidate(text=text, timestamp=message.timestamp, sender_id=conversation.sender_id,
                                   channel=conversation.channel, source=source, intent=message.intent,
                                   confidence=message.confidence))
    seen: Dict[Tuple[Optional[str], str], List[datetime]] = defaultdict(list)
    for candidate in found:
        seen[(candidate.sender_id, _normalize(candidate.text))].append(candidate.timestamp)
    for event in events:
        if event.event_type != "kb_miss" or not (event.text or "").strip():
            continue
        if not wanted(event.timestamp, event.channel):
            continue
        key = (event.sender_id, _normalize(event.text))
        if any(abs(event.timestamp - moment) <= DEDUPE_WINDOW for moment in seen[key]):
            continue
        seen[key].append(event.timestamp)
        found.append(Candidate(text=event.text.strip(), timestamp=event.timestamp, sender_id=event.sender_id,
                               channel=event.channel, source="kb_miss", confidence=event.confidence))
    for candidate in found:  # stored texts are masked already; masking again is idempotent
        candidate.text = mask_pii(candidate.text)
    return sorted(found, key=lambda c: c.timestamp)


# -------------------------------------------------------------------------------------------------
# features and clustering

def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    return _PUNCT.sub(" ", text).strip()


@lru_cache(maxsize=1)
def _synonyms() -> Dict[str, str]:
    try:
        from kefu.kb.entries import load_synonyms
        return load_synonyms(KB_DIR)
    except Exception:  # noqa: BLE001 - synonyms only sharpen the features
        return {}


def features(text: str) -> List[str]:
    """Features of a short Chinese message: content words (``w:``, jieba, KB synonyms mapped, function words
    dropped), and of each content word of 2+ characters its characters (``c:``) and, for 3+ characters, its
    character bigrams (``b:``), so that 专票 / 专用发票 / 增值税专用发票 share features."""
    import jieba

    synonyms = _synonyms()
    out: List[str] = []
    for token in jieba.lcut(_normalize(text)):
        token = token.strip()
        if not token or token in STOP_WORDS or token in PARTICLES or token.isdigit() or set(token) <= {"*"}:
            continue
        token = synonyms.get(token, token)
        out.append("w:" + token)
        if len(token) >= 2:
            out += ["c:" + ch for ch in token if "\u4e00" <= ch <= "\u9fff" and ch not in STOP_CHARS]
        if len(token) >= 3:
            out += ["b:" + token[i:i + 2] for i in range(len(token) - 1)]
    return out


def _vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=features, sublinear_tf=True, norm="l2")


def _agglomerative(distance: np.ndarray, threshold: float) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    kwargs = dict(n_clusters=None, distance_threshold=threshold, linkage="average")
    params = inspect.signature(AgglomerativeClustering).parameters
    kwargs["metric" if "metric" in params else "affinity"] = "precomputed"
    return AgglomerativeClustering(**kwargs).fit_predict(distance)


def cluster_candidates(candidates: Sequence[Candidate], *, threshold: float = DEFAULT_THRESHOLD,
                       min_size: int = 2, max_distinct: int = MAX_DISTINCT_TEXTS) -> List[GapCluster]:
    """Group candidates by meaning; clusters ranked by volume (largest first)."""
    by_text: Dict[str, List[Candidate]] = defaultdict(list)
    for candidate in candidates:
        key = _normalize(candidate.text)
        if key:
            by_text[key].append(candidate)
    texts = sorted(by_text, key=lambda t: (-len(by_text[t]), t))[:max_distinct]
    if not texts:
        return []
    vectorizer = _vectorizer()
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # empty vocabulary
        return []
    if len(texts) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        similarity = (matrix @ matrix.T).toarray()
        distance = np.clip(1.0 - similarity, 0.0, 2.0)
        np.fill_diagonal(distance, 0.0)
        labels = _agglomerative(distance, threshold)
    names = np.array(vectorizer.get_feature_names_out())
    clusters: List[GapCluster] = []
    for label in set(labels.tolist()):
        rows = np.flatnonzero(labels == label)
        members = [c for row in rows for c in by_text[texts[row]]]
        if len(members) < min_size:
            continue
        centroid = np.asarray(matrix[rows].mean(axis=0)).ravel()
        closeness = np.asarray(matrix[rows] @ centroid).ravel()
        order = sorted(range(len(rows)), key=lambda i: (-len(by_text[texts[rows[i]]]), -closeness[i]))
        examples = []
        for i in order:
            group = by_text[texts[rows[i]]]
            examples.append((Counter(c.text for c in group).most_common(1)[0][0], len(group)))
        weights = np.asarray(matrix[rows].sum(axis=0)).ravel()
        terms = [names[i][2:] for i in np.argsort(-weights) if names[i].startswith("w:") and weights[i] > 0][:5]
        clusters.append(GapCluster(rank=0, candidates=members, examples=examples, top_terms=terms,
                                   sources=dict(Counter(c.source for c in members))))
    clusters.sort(key=lambda c: (-c.size, -c.senders, c.examples[0][0]))
    for rank, cluster in enumerate(clusters, start=1):
        cluster.rank = rank
    return clusters


# -------------------------------------------------------------------------------------------------
# suggestions

def load_nlu_examples(directory: Path = NLU_DIR) -> Dict[str, List[str]]:
    """intent -> example texts (entity annotations reduced to their text) from Rasa YAML NLU files."""
    examples: Dict[str, List[str]] = defaultdict(list)
    for path in sorted(Path(directory).glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for item in data.get("nlu") or []:
            if not isinstance(item, dict) or "intent" not in item:
                continue
            for line in str(item.get("examples") or "").splitlines():
                line = line.strip()
                if line.startswith("- "):
                    examples[item["intent"]].append(_ANNOTATION.sub(r"\1", line[2:]).strip())
    return dict(examples)


def _nlu_hint(cluster: GapCluster, nlu: Dict[str, List[str]]) -> Optional[Suggestion]:
    pairs = [(intent, text) for intent, texts in nlu.items() if intent not in NON_TARGET_INTENTS for text in texts]
    if not pairs:
        return None
    vectorizer = _vectorizer()
    texts = [text for text, _count in cluster.examples[:20]]
    matrix = vectorizer.fit_transform([t for _, t in pairs] + texts)
    examples, members = matrix[:len(pairs)], matrix[len(pairs):]
    centroid = np.asarray(members.mean(axis=0)).ravel()
    norm = np.linalg.norm(centroid)
    if not norm:
        return None
    scores = np.asarray(examples @ (centroid / norm)).ravel()
    per_intent: Dict[str, List[float]] = defaultdict(list)
    for (intent, _), score in zip(pairs, scores):
        per_intent[intent].append(float(score))
    ranked = {intent: float(np.mean(sorted(values, reverse=True)[:3])) for intent, values in per_intent.items()}
    best = max(ranked, key=ranked.get)
    return Suggestion(kind="nlu_existing", target=best, score=round(ranked[best], 3))


def _kb_hint(cluster: GapCluster, kb_dir: Path) -> Optional[Suggestion]:
    kb = _knowledge_base(str(kb_dir))
    if kb is None or not len(kb):
        return None
    # mean score of every entry over the cluster's examples (weighted by count; outside the top 5: 0)
    totals: Dict[str, float] = defaultdict(float)
    weight = 0
    for text, count in cluster.examples[:10]:
        weight += count
        for hit in kb.search(text, k=5):
            totals[hit.entry.id] += hit.score * count
    if not totals:
        return None
    best = max(totals, key=totals.get)
    entry = kb.entry(best)
    score = totals[best] / weight
    return Suggestion(kind="kb_existing", target=best, score=round(score, 3),
                      category=entry.category if entry else None, question=entry.question if entry else None)


@lru_cache(maxsize=4)
def _knowledge_base(kb_dir: str):
    from kefu.kb.service import KnowledgeBase

    try:
        return KnowledgeBase(Path(kb_dir), check_interval=3600.0)
    except Exception:  # noqa: BLE001 - without a KB every draft is a new entry
        return None


def suggest(clusters: Sequence[GapCluster], *, draft: str = "auto", nlu_dir: Path = NLU_DIR,
            kb_dir: Path = KB_DIR) -> None:
    """Attach a :class:`Suggestion` to every cluster (in place)."""
    if draft not in ("auto", "nlu", "kb"):
        raise ValueError("draft must be one of auto, nlu, kb")
    nlu = load_nlu_examples(nlu_dir) if Path(nlu_dir).exists() else {}
    for cluster in clusters:
        kb_hint = _kb_hint(cluster, Path(kb_dir)) if Path(kb_dir).exists() else None
        nlu_hint = _nlu_hint(cluster, nlu) if nlu else None
        cluster.kb_hint, cluster.nlu_hint = kb_hint, nlu_hint
        kb_close = kb_hint is not None and kb_hint.score >= KB_MATCH
        nlu_close = nlu_hint is not None and nlu_hint.score >= NLU_MATCH
        category = kb_hint.category if kb_hint is not None and kb_hint.score >= 0.2 else UNCATEGORIZED
        if draft == "kb" or (draft == "auto" and (kb_close or not nlu_close)):
            cluster.suggestion = kb_hint if kb_close else Suggestion(kind="kb_new", category=category)
        else:
            cluster.suggestion = nlu_hint if nlu_close else Suggestion(kind="nlu_new",
                                                                      target=f"new_intent_{cluster.rank}")


# -------------------------------------------------------------------------------------------------
# drafts

def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _example_line(text: str) -> str:
    # one line, no Rasa entity-annotation syntax
    return " ".join(mask_pii(text).split()).replace("[", "【").replace("]", "】")


def nlu_draft_yaml(clusters: Sequence[GapCluster], *, max_examples: int = 30) -> Optional[str]:
    chosen = [c for c in clusters if c.suggestion and c.suggestion.kind in ("nlu_existing", "nlu_new")]
    if not chosen:
        return None
    lines = ["# DRAFT generated by `kefu gaps` – review, edit and move into data/nlu/ (not loaded from here).",
             'version: "3.1"', "", "nlu:"]
    for cluster in chosen:
        s = cluster.suggestion
        what = (f"existing intent {s.target} (similarity {s.score:.2f})" if s.kind == "nlu_existing"
                else "NEW intent: rename it and add it to domain/core.yml and the rules")
        lines.append(f"# cluster {cluster.rank}: {cluster.size} messages from {cluster.senders} senders; "
                     f"terms: {', '.join(cluster.top_terms) or '-'}; {what}")
        lines.append(f"- intent: {s.target}")
        lines.append("  examples: |")
        for text, _count in cluster.examples[:max_examples]:
            line = _example_line(text)
            if line:
                lines.append(f"    - {line}")
    return "\n".join(lines) + "\n"


def kb_draft_yaml(clusters: Sequence[GapCluster], *, max_examples: int = 15) -> Dict[str, str]:
    """category -> YAML text in the format of data/kb/*.yml (one file per category)."""
    by_category: Dict[str, List[GapCluster]] = defaultdict(list)
    for cluster in clusters:
        if cluster.suggestion and cluster.suggestion.kind in ("kb_existing", "kb_new"):
            by_category[cluster.suggestion.category or UNCATEGORIZED].append(cluster)
    files: Dict[str, str] = {}
    for category, chosen in by_category.items():
        lines = ["# DRAFT generated by `kefu gaps` – review, write the answers, then merge into data/kb/ "
                 "(`kefu kb check`).", f"category: {_q(category)}", "entries:"]
        for cluster in chosen:
            s = cluster.suggestion
            texts = [_example_line(t) for t, _ in cluster.examples[:max_examples]]
            texts = [t for t in texts if t]
            lines.append(f"  # cluster {cluster.rank}: {cluster.size} messages from {cluster.senders} senders; "
                         f"terms: {', '.join(cluster.top_terms) or '-'}")
            if s.kind == "kb_existing":
                lines.append(f"  # existing entry {s.target} (score {s.score:.2f}): add these paraphrases to it")
                lines.append(f"  - id: {s.target}")
                lines.append(f"    question: {_q(s.question or texts[0])}")
                paraphrases = texts
                answer = "（沿用现有答案）"
            else:
                lines.append("  # NEW entry: give it the next free id of its category file and write the answer")
                lines.append(f"  - id: draft-{cluster.rank:03d}")
                lines.append(f"    question: {_q(texts[0])}")
                paraphrases = texts[1:]
                answer = DRAFT_ANSWER
            if paraphrases:
                lines.append("    paraphrases:")
                lines.extend(f"      - {_q(t)}" for t in paraphrases)
            lines.append(f"    answer: {_q(answer)}")
            if cluster.top_terms:
                lines.append(f"    tags: [{', '.join(_q(t) for t in cluster.top_terms[:3])}]")
            lines.append("")
        files[category] = "\n".join(lines).rstrip() + "\n"
    return files


def export_drafts(clusters: Sequence[GapCluster], out_dir: Path, *, stamp: Optional[str] = None) -> List[Path]:
    """Write the NLU draft and one KB draft per category under ``out_dir/gaps-<stamp>/``."""
    target = Path(out_dir) / f"gaps-{stamp or datetime.now().strftime('%Y%m%d-%H%M%S')}"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    nlu = nlu_draft_yaml(clusters)
    if nlu:
        path = target / "nlu_draft.yml"
        path.write_text(nlu, encoding="utf-8")
        written.append(path)
    for index, (_category, text) in enumerate(sorted(kb_draft_yaml(clusters).items()), start=1):
        path = target / f"kb_draft_{index}.yml"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def describe(clusters: Sequence[GapCluster], *, top: int = 10, examples: int = 3) -> str:
    """A plain-text ranking for the terminal (masked)."""
    if not clusters:
        return "no knowledge gaps found (no fallback / low-confidence / KB-miss clusters in the period)"
    lines = []
    for cluster in clusters[:top]:
        s = cluster.suggestion
        target = ""
        if s is not None:
            target = {"kb_existing": f"add paraphrases to KB entry {s.target} ({s.category})",
                      "kb_new": f"new KB entry in category {s.category}",
                      "nlu_existing": f"NLU examples for intent {s.target}",
                      "nlu_new": "NLU examples for a new intent"}[s.kind]
        sources = ", ".join(f"{k} {v}" for k, v in sorted(cluster.sources.items()))
        lines.append(f"#{cluster.rank}  {cluster.size} messages, {cluster.senders} senders ({sources})"
                     f"  terms: {', '.join(cluster.top_terms) or '-'}")
        if target:
            lines.append(f"    suggestion: {target}")
        for text, count in cluster.examples[:examples]:
            lines.append(f"    - {mask_pii(text)}" + (f"  ×{count}" if count > 1 else ""))
    return "\n".join(lines)


def mine(session, since: Optional[datetime] = None, until: Optional[datetime] = None, *,
         channel: Optional[str] = None, low_confidence: float = DEFAULT_LOW_CONFIDENCE,
         threshold: float = DEFAULT_THRESHOLD, min_size: int = 2, draft: str = "auto",
         nlu_dir: Path = NLU_DIR, kb_dir: Path = KB_DIR, suggestions: bool = True) -> List[GapCluster]:
    """Candidates of the period from the store, clustered, ranked and (optionally) with suggestions."""
    candidates = collect_candidates(load_events(session, since, until), since, until, channel=channel,
                                    low_confidence=low_confidence)
    clusters = cluster_candidates(candidates, threshold=threshold, min_size=min_size)
    if suggestions:
        suggest(clusters, draft=draft, nlu_dir=nlu_dir, kb_dir=kb_dir)
    return clusters
