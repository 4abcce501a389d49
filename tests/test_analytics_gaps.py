"""Knowledge-gap mining: a planted cluster among noise is found and ranked first; drafts are valid and masked."""
from __future__ import annotations

from datetime import datetime

import pytest
import yaml

from kefu import migrate
from kefu.analytics import gaps, ingest
from kefu.analytics.kpis import Event
from kefu.db import session_scope
from kefu.kb.entries import parse_file
from test_analytics_fixture import PHONE, action, bot, session_start, ts, user

NOW = datetime(2026, 11, 30)

PLANTED = [
    "能开专票吗", "专用发票怎么开", "可以开专票吗", "专票能开吗", "怎么开专用发票", "你们能开增值税专用发票吗",
    "公司要开专票", "我要开专用发票", "专票怎么申请", "能不能开专票", "开专票需要什么", "可以开增值税专票吗",
    "专用发票能开不", "专票可以开吗亲", "请问能开专用发票吗",
]
NOISE = [
    "你们老板是谁", "今天天气怎么样", "快递员态度很差", "商品有色差", "我想换个颜色", "会员积分怎么用",
    "小程序打不开", "优惠券过期了还能用吗", "能不能便宜点", "发错货了", "赠品没收到", "说明书丢了",
    "可以货到付款吗", "直播间的价格一样吗", "什么时候上新", "包装破了", "可以自提吗", "支持分期吗",
    "能寄到国外吗", "客服电话多少", "帮我推荐一款手机", "讲个笑话", "sdfsdf", "？？？", "在不在",
    f"我的手机号{PHONE}收不到验证码", "以旧换新怎么弄", "旧手机可以抵钱吗",
]


def _events():
    events = []
    for index, text in enumerate(PLANTED + NOISE):
        sender = f"g{index}"
        at = ts(8 + index // 20, index % 20 * 2)
        events += session_start(sender, at)
        if index % 3 == 0:  # some low-confidence rather than fallback
            events += [user(sender, at + 1, text, "ask_faq", 0.42, "rest"), action(sender, at + 2, "action_answer_faq")]
        else:
            events += [user(sender, at + 1, text, "nlu_fallback", 0.3, "socketio"),
                       action(sender, at + 2, "action_clarify")]
        events.append(bot(sender, at + 3, "您是想问以下问题吗？"))
    # a confident, understood message is not a candidate
    events += session_start("ok", ts(7)) + [user("ok", ts(7, 0, 1), "能开专票吗", "invoice", 0.97, "rest")]
    return events


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('gaps') / 'kefu.db'}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        stats = ingest.process_payloads(session, _events(), now=NOW)
        assert stats.quarantined == 0
    return url


@pytest.fixture(scope="module")
def clusters(store_url):
    with session_scope(store_url) as session:
        return gaps.mine(session, datetime(2026, 11, 16), datetime(2026, 11, 17))


def test_candidates_are_fallback_and_low_confidence_messages(store_url):
    with session_scope(store_url) as session:
        from kefu.analytics.kpis import load_events

        candidates = gaps.collect_candidates(load_events(session), datetime(2026, 11, 16), datetime(2026, 11, 17))
    assert len(candidates) == len(PLANTED) + len(NOISE)
    assert {c.source for c in candidates} == {"fallback", "low_confidence"}
    assert all(c.sender_id != "ok" for c in candidates)


def test_the_planted_cluster_is_found_and_ranked_first(clusters):
    first = clusters[0]
    texts = {c.text for c in first.candidates}
    planted = texts & set(PLANTED)
    assert len(planted) >= 13, texts
    assert not texts - set(PLANTED), f"noise in the planted cluster: {texts - set(PLANTED)}"
    assert first.rank == 1 and first.size == len(texts) and first.senders == len(texts)
    assert all(first.size >= c.size for c in clusters)
    assert any("专票" in term or "发票" in term for term in first.top_terms)
    # the KB already has invoice-type entries: the draft adds paraphrases to one of them
    assert first.suggestion.kind == "kb_existing"
    assert first.suggestion.target.startswith("payment_invoice-")


def test_noise_stays_out_of_big_clusters(clusters):
    assert all(c.size <= 3 for c in clusters[1:])


def test_drafts_are_valid_rasa_nlu_and_kb_yaml_and_masked(clusters, tmp_path):
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader

    gaps.suggest(clusters, draft="nlu")
    nlu_text = gaps.nlu_draft_yaml(clusters)
    data = RasaYAMLReader().reads(nlu_text)
    examples = {m.get("text") for m in data.training_examples}
    assert set(PLANTED) & examples
    assert yaml.safe_load(nlu_text)["version"] == "3.1"
    first_intent = yaml.safe_load(nlu_text)["nlu"][0]["intent"]
    assert first_intent == clusters[0].suggestion.target

    gaps.suggest(clusters, draft="kb")
    paths = gaps.export_drafts(clusters, tmp_path, stamp="test")
    kb_paths = [p for p in paths if p.name.startswith("kb_draft_")]
    assert kb_paths
    entries = [entry for path in kb_paths for entry in parse_file(path)]  # validates like data/kb files
    assert any(set(PLANTED) & set(entry.texts()) for entry in entries)
    for path in paths:
        assert PHONE not in path.read_text(encoding="utf-8")


def test_drafts_mask_even_unmasked_input(tmp_path):
    raw = [gaps.Candidate(text=f"手机{PHONE}换绑怎么弄", timestamp=datetime(2026, 11, 16, 9), sender_id=f"s{i}")
           for i in range(3)]
    clusters = gaps.cluster_candidates(raw)
    for cluster in clusters:
        cluster.examples = [(f"手机{PHONE}换绑怎么弄", 3)]  # bypass candidate masking on purpose
    gaps.suggest(clusters, draft="nlu")
    assert PHONE not in gaps.nlu_draft_yaml(clusters)
    gaps.suggest(clusters, draft="kb")
    assert all(PHONE not in text for text in gaps.kb_draft_yaml(clusters).values())
    assert PHONE not in gaps.describe(clusters)


def test_new_topic_gets_a_new_entry_or_intent():
    texts = ["支持以旧换新吗", "以旧换新怎么参加", "旧机以旧换新能抵多少", "以旧换新活动在哪", "有以旧换新吗"]
    candidates = [gaps.Candidate(text=t, timestamp=datetime(2026, 11, 16, 9), sender_id=f"n{i}")
                  for i, t in enumerate(texts)]
    clusters = gaps.cluster_candidates(candidates)
    assert len(clusters) == 1 and clusters[0].size == 5
    gaps.suggest(clusters, draft="nlu")
    assert clusters[0].suggestion.kind in ("nlu_new", "nlu_existing")
    draft = gaps.nlu_draft_yaml(clusters)
    assert "以旧换新" in draft


def test_kb_misses_count_once_with_the_fallback_they_repeat():
    at = datetime(2026, 11, 16, 9)
    events = [Event("action", at, "s1", action_name="action_session_start"),
              Event("user", at, "s1", text="能开专票吗", intent="nlu_fallback", confidence=0.3, channel="rest"),
              Event("kb_miss", at, "s1", source="kb", text="能开专票吗", channel="rest"),
              Event("kb_miss", at, "s2", source="kb", text="专票怎么开", channel="rest")]
    candidates = gaps.collect_candidates(events)
    assert sorted((c.sender_id, c.source) for c in candidates) == [("s1", "fallback"), ("s2", "kb_miss")]
