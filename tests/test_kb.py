"""Knowledge base: file validation, CSV round trip, ranking, decisions, hot reload."""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from kefu.kb import csvio
from kefu.kb.entries import KBValidationError, load_dir
from kefu.kb.service import KnowledgeBase, Thresholds, render

LOGISTICS = """\
category: 物流配送
entries:
  - id: logistics-001
    question: 一般下单后几天能送到？
    paraphrases:
      - 多久能到货
      - kd一般几天到
      - 快递要走几天
    answer: 一般地区付款后48小时内发货，发货后1-3天送达。
    tags: [配送时效]
  - id: logistics-002
    question: 运费怎么算？
    paraphrases:
      - 包邮吗
      - 邮费多少钱
      - 满多少免运费
    answer: 订单满99元包邮，不满收取6元运费。详见 {help_url}
    tags: [运费]
"""
AFTERSALES = """\
category: 售后保障
entries:
  - id: aftersales-001
    question: 支持七天无理由退货吗？
    paraphrases:
      - 能不能7天无理由退
      - 不喜欢可以退吗
    answer: 签收后7天内、商品完好即可申请七天无理由退货。
    tags: [退货]
  - id: aftersales-002
    question: 双十一活动规则是什么？
    paraphrases:
      - 双十一有什么优惠
    answer: 活动已结束。
    tags: [活动]
    valid_from: 2026-11-01
    valid_to: 2026-11-11
"""


@pytest.fixture
def kb_dir(tmp_path) -> Path:
    directory = tmp_path / "kb"
    directory.mkdir()
    (directory / "logistics.yml").write_text(LOGISTICS, encoding="utf-8")
    (directory / "aftersales.yml").write_text(AFTERSALES, encoding="utf-8")
    (directory / "_synonyms.yml").write_text("快递: [kd, 物流, wl]\n", encoding="utf-8")
    return directory


def test_load(kb_dir):
    entries = load_dir(kb_dir)
    assert [e.id for e in entries] == ["aftersales-001", "aftersales-002", "logistics-001", "logistics-002"]
    assert entries[2].category == "物流配送" and len(entries[2].paraphrases) == 3


@pytest.mark.parametrize("broken,line,words", [
    (LOGISTICS.replace("    answer: 一般地区", "    answr: 一般地区"), 9, "unknown key"),
    (LOGISTICS.replace("  - id: logistics-002", "  - id: logistics_two"), 11, "must look like"),
    (LOGISTICS.replace("详见 {help_url}", "详见 {url}"), 17, "unknown variable {url}"),
    (LOGISTICS.replace("    paraphrases:\n      - 包邮吗", "    paraphrases: [包邮吗"), 16, "not valid YAML"),
    (LOGISTICS.replace("      - 多久能到货\n", "      - \n"), 6, "non-empty text"),
])
def test_bad_files_name_file_and_line(kb_dir, broken, line, words):
    (kb_dir / "logistics.yml").write_text(broken, encoding="utf-8")
    with pytest.raises(KBValidationError) as error:
        load_dir(kb_dir)
    assert error.value.file == "logistics.yml" and error.value.line == line
    assert words in str(error.value)


def test_duplicate_ids_across_files(kb_dir):
    (kb_dir / "more.yml").write_text(LOGISTICS.replace("物流配送", "其他"), encoding="utf-8")
    with pytest.raises(KBValidationError, match="already used at logistics.yml"):
        load_dir(kb_dir)


def test_ranking_uses_paraphrases_and_synonyms(kb_dir):
    kb = KnowledgeBase(kb_dir)
    assert kb.search("快递一般几天能到啊")[0].entry.id == "logistics-001"
    assert kb.search("wl要走几天")[0].entry.id == "logistics-001"
    assert kb.search("满多少包邮")[0].entry.id == "logistics-002"
    assert kb.search("收到不喜欢能退不")[0].entry.id == "aftersales-001"


def test_decisions(kb_dir):
    kb = KnowledgeBase(kb_dir, Thresholds(answer=0.5, clarify=0.2, margin=0.04))
    assert kb.decide("运费怎么算").kind == "answer"
    assert kb.decide("今天股票行情").kind == "miss"
    clarify = KnowledgeBase(kb_dir, Thresholds(answer=0.99, clarify=0.2, margin=0.0)).decide("运费怎么算")
    assert clarify.kind == "clarify" and clarify.best.entry.id == "logistics-002"


def test_entries_outside_their_validity_are_not_answered(kb_dir):
    kb = KnowledgeBase(kb_dir)
    assert kb.search("双十一有什么优惠", today=date(2026, 11, 5))[0].entry.id == "aftersales-002"
    assert all(h.entry.id != "aftersales-002" for h in kb.search("双十一有什么优惠", today=date(2026, 11, 24)))


def test_render_fills_variables(kb_dir):
    entry = {e.id: e for e in load_dir(kb_dir)}["logistics-002"]
    assert "{help_url}" not in render(entry) and render(entry).startswith("订单满99元包邮")


def test_hot_reload_within_seconds_and_broken_edits_keep_the_old_entries(kb_dir):
    kb = KnowledgeBase(kb_dir, check_interval=0.5)
    assert kb.search("运费怎么算")[0].entry.answer.startswith("订单满99元包邮")
    (kb_dir / "logistics.yml").write_text(LOGISTICS.replace("订单满99元包邮", "订单满59元包邮"), encoding="utf-8")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not kb.search("运费怎么算")[0].entry.answer.startswith("订单满59元"):
        time.sleep(0.2)
    assert kb.search("运费怎么算")[0].entry.answer.startswith("订单满59元包邮")
    (kb_dir / "logistics.yml").write_text("category: [broken", encoding="utf-8")
    time.sleep(0.6)
    assert kb.search("运费怎么算")[0].entry.answer.startswith("订单满59元包邮")
    assert kb.last_error and "logistics.yml" in kb.last_error


def test_csv_round_trip(kb_dir, tmp_path):
    target = tmp_path / "kb.csv"
    assert csvio.export_csv(kb_dir, target) == 4
    text = target.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0] == ",".join(csvio.COLUMNS)
    edited = text.replace("订单满99元包邮", "订单满88元包邮")
    target.write_text(edited, encoding="utf-8-sig")
    assert csvio.import_csv(target, kb_dir) == 4
    entries = {e.id: e for e in load_dir(kb_dir)}
    assert entries["logistics-002"].answer.startswith("订单满88元包邮")
    assert entries["logistics-001"].paraphrases == ("多久能到货", "kd一般几天到", "快递要走几天")
    assert entries["aftersales-002"].valid_to == date(2026, 11, 11)


@pytest.mark.parametrize("change,line,words", [
    (lambda rows: rows.__setitem__(3, rows[3].replace("logistics-001", "bad id")), 4, "must look like"),
    (lambda rows: rows.__setitem__(2, rows[2].replace("2026-11-11", "2026-13-40")), 3, "valid_to"),
    (lambda rows: rows.append(rows[1]), 6, "already used on line 2"),
])
def test_bad_csv_rows_change_nothing(kb_dir, tmp_path, change, line, words):
    target = tmp_path / "kb.csv"
    csvio.export_csv(kb_dir, target)
    before = {p.name: p.read_text(encoding="utf-8") for p in kb_dir.glob("*.yml")}
    rows = target.read_text(encoding="utf-8-sig").splitlines()
    change(rows)
    target.write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    with pytest.raises(KBValidationError) as error:
        csvio.import_csv(target, kb_dir)
    assert (error.value.file, error.value.line) == ("kb.csv", line) and words in str(error.value)
    assert {p.name: p.read_text(encoding="utf-8") for p in kb_dir.glob("*.yml")} == before
    assert not [p for p in kb_dir.iterdir() if p.name.startswith(".")]


def test_cli_check_and_bad_import(kb_dir, tmp_path):
    kefu = [str(Path(sys.executable).parent / "kefu"), "kb", "--kb-dir", str(kb_dir)]
    ok = subprocess.run(kefu + ["check"], capture_output=True, text=True)
    assert ok.returncode == 0 and "4 entries" in ok.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("id,category,question,answer\nx,物流配送,问,答\n", encoding="utf-8")
    result = subprocess.run(kefu + ["import", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "bad.csv, line 2" in result.stderr
    search = subprocess.run(kefu + ["search", "邮费多少"], capture_output=True, text=True)
    assert "logistics-002" in search.stdout.splitlines()[1]


def test_the_shipped_knowledge_base():
    entries = load_dir(Path(__file__).resolve().parent.parent / "data" / "kb")
    categories = {e.category for e in entries}
    assert len(entries) >= 150
    assert categories == {"产品咨询", "订单服务", "物流配送", "售后保障", "支付与发票", "账户管理", "活动优惠"}
    assert all(len(e.paraphrases) >= 4 for e in entries)
