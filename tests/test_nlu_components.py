"""kefu.nlu_components: reconcile() and the EntityReconciler graph component."""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from kefu.nlu_components import EntityReconciler, reconcile

DIET = "DIETClassifier"
SPACY = "SpacyEntityExtractor"


def ent(entity: str, text: str, value: str, extractor: str, *, start: Optional[int] = None,
        confidence: Optional[float] = 0.9) -> Dict[str, Any]:
    """An entity as Rasa's extractors produce it; the span is located in `text`."""
    if start is None:
        start = text.index(value)
    out = {"entity": entity, "start": start, "end": start + len(value), "value": value, "extractor": extractor}
    if extractor == DIET:
        out["confidence_entity"] = confidence
    else:
        out["confidence"] = None
    return out


def component(**config) -> EntityReconciler:
    return EntityReconciler({"preferred_extractor": DIET, "drop_malformed": True, **config})


def run(text: str, entities, **config):
    message = Message(data={TEXT: text, ENTITIES: copy.deepcopy(entities)})
    [out] = component(**config).process([message])
    assert out is message
    return out.get(ENTITIES)


def summary(entities):
    return [(e["entity"], e["value"], e["extractor"]) for e in entities]


# ------------------------------------------------------------------ reconcile()


def test_same_span_from_two_extractors_gives_one_entity():
    text = "查一下订单202411010001"
    diet = ent("order_id", text, "202411010001", DIET)
    spacy = ent("order_id", text, "202411010001", SPACY)
    for entities in ([diet, spacy], [spacy, diet]):
        result = reconcile(entities)
        assert summary(result) == [("order_id", "202411010001", DIET)]


def test_preferred_extractor_is_configurable():
    text = "查一下订单202411010001"
    entities = [ent("order_id", text, "202411010001", DIET), ent("order_id", text, "202411010001", SPACY)]
    assert summary(reconcile(entities, preferred=SPACY)) == [("order_id", "202411010001", SPACY)]


def test_plain_digits_diet_tracking_number_beats_spacy_order_id():
    # 12 plain digits are both a valid order number and a valid tracking number: context decides
    text = "快递单号751000000000到哪了"
    diet = ent("tracking_number", text, "751000000000", DIET)
    spacy = ent("order_id", text, "751000000000", SPACY)
    assert summary(reconcile([spacy, diet])) == [("tracking_number", "751000000000", DIET)]


def test_partially_overlapping_spans_keep_one():
    text = "快递单号75100000000004"
    diet = ent("tracking_number", text, "75100000000004", DIET)
    spacy_short = ent("order_id", text, "7510000000", SPACY, start=text.index("7510000000") + 2)
    assert summary(reconcile([spacy_short, diet])) == [("tracking_number", "75100000000004", DIET)]


def test_malformed_diet_phone_loses_to_spacy_order_id():
    text = "我的订单202411010001怎么样了"
    diet = ent("phone", text, "202411010001", DIET)  # 12 digits: not a phone
    spacy = ent("order_id", text, "202411010001", SPACY)
    assert summary(reconcile([diet, spacy])) == [("order_id", "202411010001", SPACY)]


def test_well_formed_beats_preferred_even_when_longer_span_is_malformed():
    text = "手机13800138000"
    diet = ent("order_id", text, "手机13800138000", DIET, start=0)  # not an order number
    spacy = ent("phone", text, "13800138000", SPACY)
    assert summary(reconcile([diet, spacy])) == [("phone", "13800138000", SPACY)]


def test_reconcile_keeps_non_overlapping_entities_sorted_by_start():
    text = "订单202411010001的手机13800138000尾号8000买的羽绒服"
    entities = [
        ent("product", text, "羽绒服", SPACY),
        ent("phone_last4", text, "8000", DIET, start=text.index("尾号") + 2),
        ent("phone", text, "13800138000", SPACY),
        ent("order_id", text, "202411010001", DIET),
    ]
    result = reconcile(entities)
    assert [e["start"] for e in result] == sorted(e["start"] for e in result)
    assert summary(result) == [("order_id", "202411010001", DIET), ("phone", "13800138000", SPACY),
                               ("phone_last4", "8000", DIET), ("product", "羽绒服", SPACY)]


def test_reconcile_keeps_malformed_entities_without_overlap():
    # reconcile() only resolves overlaps; dropping is the component's job (drop_malformed)
    text = "电话12345"
    entities = [ent("phone", text, "12345", DIET)]
    assert summary(reconcile(entities)) == [("phone", "12345", DIET)]


def test_reconcile_empty():
    assert reconcile([]) == []


# ------------------------------------------------------------------ the graph component


def test_component_merges_and_sorts():
    text = "订单202411010001，快递SF100000000001，手机13800138000"
    entities = [
        ent("phone", text, "13800138000", SPACY),
        ent("tracking_number", text, "SF100000000001", SPACY),
        ent("tracking_number", text, "SF100000000001", DIET),
        ent("order_id", text, "202411010001", SPACY),
        ent("phone", text, "202411010001", DIET),  # malformed, overlapping
    ]
    result = run(text, entities)
    assert summary(result) == [("order_id", "202411010001", SPACY),
                               ("tracking_number", "SF100000000001", DIET),
                               ("phone", "13800138000", SPACY)]
    assert [e["start"] for e in result] == [2, 17, 34]
    for e in result:
        assert text[e["start"]:e["end"]] == e["value"]


def test_component_plain_digits_prefers_diet():
    text = "751000000000这个快递到哪了"
    result = run(text, [ent("order_id", text, "751000000000", SPACY),
                        ent("tracking_number", text, "751000000000", DIET)])
    assert summary(result) == [("tracking_number", "751000000000", DIET)]


def test_component_malformed_phone_vs_spacy_order_id():
    text = "202411010001"
    result = run(text, [ent("phone", text, "202411010001", DIET), ent("order_id", text, "202411010001", SPACY)])
    assert summary(result) == [("order_id", "202411010001", SPACY)]


def test_component_drops_malformed_entity_without_overlap():
    text = "电话是12345，订单202411010001，快递SF123"
    entities = [ent("phone", text, "12345", DIET), ent("order_id", text, "202411010001", DIET),
                ent("tracking_number", text, "SF123", DIET)]
    assert summary(run(text, entities)) == [("order_id", "202411010001", DIET)]
    # with drop_malformed off they stay (they do not overlap anything)
    kept = run(text, entities, drop_malformed=False)
    assert sorted(summary(kept)) == sorted(summary(entities))
    assert [e["start"] for e in kept] == sorted(e["start"] for e in kept)


def test_component_keeps_unchecked_labels():
    text = "羽绒服能退吗"
    entities = [ent("product", text, "羽绒服", SPACY)]
    assert run(text, entities) == entities


def test_component_leaves_messages_without_entities_alone():
    message = Message(data={TEXT: "你好"})
    [out] = component().process([message])
    assert out.get(ENTITIES) in (None, [])


def test_component_processes_every_message():
    texts = ["订单202411010001", "手机13800138000", "你好"]
    messages = [
        Message(data={TEXT: texts[0], ENTITIES: [ent("order_id", texts[0], "202411010001", SPACY),
                                                  ent("order_id", texts[0], "202411010001", DIET)]}),
        Message(data={TEXT: texts[1], ENTITIES: [ent("phone", texts[1], "13800138000", SPACY),
                                                  ent("phone", texts[1], "13800138000", DIET)]}),
        Message(data={TEXT: texts[2], ENTITIES: []}),
    ]
    out = component().process(messages)
    assert [summary(m.get(ENTITIES)) for m in out] == [
        [("order_id", "202411010001", DIET)],
        [("phone", "13800138000", DIET)],
        [],
    ]


def test_create_uses_the_default_config(tmp_path):
    config = EntityReconciler.get_default_config()
    assert config == {"preferred_extractor": DIET, "drop_malformed": True}
    reconciler = EntityReconciler.create(config, LocalModelStorage(tmp_path), Resource("reconciler"),
                                         ExecutionContext(GraphSchema({}), "test"))
    assert isinstance(reconciler, EntityReconciler)
    text = "电话12345"
    message = Message(data={TEXT: text, ENTITIES: [ent("phone", text, "12345", DIET)]})
    assert reconciler.process([message])[0].get(ENTITIES) == []


@pytest.mark.parametrize("label,value,ok", [
    ("order_id", "202411010001", True), ("order_id", "SF100000000001", False),
    ("phone", "13800138000", True), ("phone", "+86 138 0013 8000", True), ("phone", "1380013800", False),
    ("phone_last4", "8000", True), ("phone_last4", "800", False),
    ("tracking_number", "sf100000000001", True), ("tracking_number", "SF1000", False),
])
def test_format_checks_decide_what_is_dropped(label, value, ok):
    text = f"x{value}"
    result = run(text, [ent(label, text, value, DIET)])
    assert (result == [ent(label, text, value, DIET)]) is ok
