"""kefu.spacy_model: the blank zh pipeline with an entity ruler built from project data."""
from __future__ import annotations

import json

import pytest
import spacy

from kefu import spacy_model
from kefu.demo_data import PRODUCTS

CATALOGUE = [
    "波司登 轻薄羽绒服",
    "华为 Mate 60 Pro 手机 12GB+512GB 雅川青",
    "戴森 V12 Detect Slim 无绳吸尘器",
    "  ",  # blank names are ignored
]


@pytest.fixture(scope="module")
def nlp(tmp_path_factory):
    path = spacy_model.build(tmp_path_factory.mktemp("spacy") / "sp", product_names=CATALOGUE)
    assert (path / "config.cfg").exists() and (path / "meta.json").exists()
    return spacy.load(path)


def ents(nlp, text):
    return [(e.text, e.label_) for e in nlp(text).ents]


def test_pipeline_shape(nlp):
    assert nlp.lang == "zh"
    assert nlp.pipe_names == ["entity_ruler"]
    assert nlp.tokenizer.segmenter == "jieba"
    labels = set(nlp.get_pipe("entity_ruler").labels)
    assert labels == {"phone", "tracking_number", "order_id", "product"}


@pytest.mark.parametrize("text,expected", [
    ("我的手机13800138000", [("13800138000", "phone")]),
    ("手机号：13800138000。", [("13800138000", "phone")]),
    ("我的手机是 19100000002 谢谢", [("19100000002", "phone")]),
    ("订单202411010001到哪了", [("202411010001", "order_id")]),
    ("查一下20241201000101这个订单", [("20241201000101", "order_id")]),
    ("单号SF100000000001", [("SF100000000001", "tracking_number")]),
    ("sf100000000001到哪了", [("sf100000000001", "tracking_number")]),
    ("Sf100000000001到哪了", [("Sf100000000001", "tracking_number")]),
    ("京东 JD0000000000003 还没到", [("JD0000000000003", "tracking_number")]),
    ("jd0000000000003", [("jd0000000000003", "tracking_number")]),
    ("YT0000000000005 怎么还没到", [("YT0000000000005", "tracking_number")]),
    ("yt0000000000005", [("yt0000000000005", "tracking_number")]),
    ("我的手机是 13800138000 订单是202411010001",
     [("13800138000", "phone"), ("202411010001", "order_id")]),
])
def test_identifiers(nlp, text, expected):
    # product words ("手机" in "我的手机1380…") are covered by the product tests below
    assert [e for e in ents(nlp, text) if e[1] != "product"] == expected


@pytest.mark.parametrize("text", [
    "我的手机13800138000",
    "13800138000",
    "电话 13900139000 的订单",
    "+8613800138000",        # jieba splits off the "+"; "86…" is still a phone
    "8613800138000",
])
def test_a_phone_is_never_an_order_id(nlp, text):
    found = [e for e in ents(nlp, text) if e[1] != "product"]
    assert [label for _, label in found] == ["phone"], found


@pytest.mark.parametrize("text", [
    "编号123456789",           # 9 digits
    "1" * 21,                 # 21 digits
    "SF10000000001",          # SF + 11
    "JD000000000003",         # JD + 12
    "ZT100000000001",         # unknown carrier prefix
    "尾号8000",
    "你好，我想退货",
])
def test_no_identifier(nlp, text):
    assert [e for e in ents(nlp, text) if e[1] != "product"] == []


@pytest.mark.parametrize("text,expected", [
    ("我买的波司登 轻薄羽绒服想退", [("波司登 轻薄羽绒服", "product")]),
    ("羽绒服能退吗", [("羽绒服", "product")]),         # the generic tail word of "波司登 轻薄羽绒服"
    ("这件羽绒服掉毛", [("羽绒服", "product")]),
    ("华为 Mate 60 Pro 手机 12GB+512GB 雅川青什么时候发货",
     [("华为 Mate 60 Pro 手机 12GB+512GB 雅川青", "product")]),
    ("戴森 v12 detect slim 无绳吸尘器坏了", [("戴森 v12 detect slim 无绳吸尘器", "product")]),  # lower-case
    ("吸尘器坏了", [("吸尘器", "product")]),
])
def test_products_from_the_given_catalogue(nlp, text, expected):
    assert ents(nlp, text) == expected


def test_products_not_in_the_catalogue_are_not_tagged(nlp):
    assert ents(nlp, "我的空调坏了") == []
    assert ents(nlp, "冰箱不制冷") == []


def test_product_and_identifiers_together(nlp):
    assert ents(nlp, "订单202411010001的羽绒服，快递SF100000000001") == [
        ("202411010001", "order_id"), ("羽绒服", "product"), ("SF100000000001", "tracking_number")]


def test_product_patterns():
    patterns = spacy_model.product_patterns(["波司登 轻薄羽绒服", "戴森 无绳吸尘器", "", "苹果 iPad Air"])
    phrases = {p["pattern"] for p in patterns}
    assert {"波司登 轻薄羽绒服", "羽绒服", "戴森 无绳吸尘器", "吸尘器", "苹果 iPad Air"} == phrases
    assert {p["label"] for p in patterns} == {"product"}


def test_catalogue_names_from_a_seeded_database(fresh_db_url, tmp_path):
    names = spacy_model.catalogue_names(fresh_db_url)
    assert sorted(names) == sorted(name for _, name, *_ in PRODUCTS)
    assert len(names) == len(set(names)) == len(PRODUCTS)
    assert "华为 Mate 60 Pro 手机 12GB+512GB 雅川青" in names  # the showcase order's phone

    # and a pipeline built from them knows every catalogue name
    path = spacy_model.build(tmp_path / "sp", product_names=names)
    nlp = spacy.load(path)
    name = next(n for n in names if n.startswith("戴森"))
    assert ents(nlp, f"我买的{name}坏了") == [(name, "product")]
    patterns = [json.loads(line) for line in (path / "entity_ruler" / "patterns.jsonl").read_text().splitlines()]
    assert {p["pattern"] for p in patterns if p["label"] == "product"} >= set(names)
