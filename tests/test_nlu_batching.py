"""kefu.nlu_batching: a batched parse must give each message what a parse of that message alone gives."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.shared.core.trackers import DialogueStateTracker

from kefu import nlu_batching, rasa_speedups

ROOT = Path(__file__).resolve().parent.parent

rasa_speedups.apply()


@pytest.fixture(scope="module")
def processor():
    return Agent.load(str(ROOT / "models" / "kefu.tar.gz")).processor


def _alone(processor, text):
    """Rasa's own single-message parse (one graph run of one message)."""
    return processor._parse_message_with_graph(UserMessage(text, sender_id="alone"),
                                               DialogueStateTracker.from_events("alone", []))


def _assert_same_parse(batched, alone):
    assert batched["text"] == alone["text"]
    assert batched["intent"]["name"] == alone["intent"]["name"], batched["text"]
    assert batched["intent"]["confidence"] == pytest.approx(alone["intent"]["confidence"], abs=1e-4)
    mine = {r["name"]: r["confidence"] for r in batched["intent_ranking"]}
    theirs = {r["name"]: r["confidence"] for r in alone["intent_ranking"]}
    assert mine.keys() == theirs.keys() and mine == pytest.approx(theirs, abs=1e-4)
    strip = [({k: v for k, v in e.items() if k != "confidence_entity"}) for e in batched["entities"]]
    assert strip == [({k: v for k, v in e.items() if k != "confidence_entity"}) for e in alone["entities"]]
    assert [e.get("confidence_entity") for e in batched["entities"]] == pytest.approx(
        [e.get("confidence_entity") for e in alone["entities"]], abs=1e-4)


def test_the_nlu_graph_reads_no_tracker_so_parses_can_share_a_run(processor):
    assert not nlu_batching.batcher_for(processor).reads_tracker


def test_batched_diet_gives_every_message_of_the_test_split_its_own_parse(processor, monkeypatch, test_split_texts):
    from rasa.utils.tensorflow.models import RasaModel

    inference_batches = []
    run_inference = RasaModel.run_inference

    def spied(self, model_data, batch_size=1, **kwargs):
        inference_batches.append(batch_size)
        return run_inference(self, model_data, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(RasaModel, "run_inference", spied)
    texts = list(test_split_texts)
    # messages of very different lengths in one batch: the padding must not reach any message's parse
    texts += ["订单", "我上周在你们店买的那个蓝牙耳机订单号是202411010001到现在物流一直没更新能不能帮我查一下谢谢",
              "13800138000", "SF1234567890123 到哪了", "dd202411010001 退款"]
    assert len(texts) >= 150
    batcher = nlu_batching.batcher_for(processor)
    calls = []
    original = processor.graph_runner.run

    def counted(*args, **kwargs):
        calls.append(len(kwargs["inputs"]["__message__"]))
        return original(*args, **kwargs)

    processor.graph_runner.run = counted
    try:
        batched = []
        for start in range(0, len(texts), 9):
            chunk = texts[start:start + 9]
            batched += batcher._run_graph([UserMessage(text, sender_id=f"s{i}") for i, text in enumerate(chunk)],
                                          [True] * len(chunk))
    finally:
        del processor.graph_runner.run
    assert max(calls) == 9 and len(calls) == (len(texts) + 8) // 9  # one graph run per batch
    assert inference_batches.count(9) == len(texts) // 9  # and one TensorFlow call for each
    for text, parse in zip(texts, batched):
        _assert_same_parse(parse, _alone(processor, text))
    assert sum(1 for parse in batched if parse["entities"]) >= 10  # the comparison covered entities too


def test_concurrent_parses_share_graph_runs_and_each_gets_its_own_result(processor):
    texts = ["你好", "查一下订单202411010001", "我要退货", "转人工", "发票怎么开", "快递到哪了 SF1234567890123",
             "13800138000", "太差了我要投诉"] * 3
    batcher = nlu_batching.batcher_for(processor)

    async def parse_all():
        runs = batcher.runs
        results = await asyncio.gather(*(processor.parse_message(UserMessage(text, sender_id=f"c{i}"))
                                         for i, text in enumerate(texts)))
        return results, batcher.runs - runs

    results, runs = asyncio.run(parse_all())
    assert runs < len(texts) / 2  # the first parse runs alone; the others waited for it and shared runs
    for text, parse in zip(texts, results):
        _assert_same_parse(parse, _alone(processor, text))


def test_a_message_that_breaks_its_batch_fails_alone(processor, monkeypatch):
    batcher = nlu_batching.batcher_for(processor)
    original = batcher._run_graph

    def breaks_on_poison(messages, only_output):
        if any(message.text == "poison" for message in messages):
            raise ValueError("component failed")
        return original(messages, only_output)

    monkeypatch.setattr(batcher, "_run_graph", breaks_on_poison)
    texts = ["你好", "我要退货", "poison", "转人工", "发票怎么开"]

    async def parse_all():
        return await asyncio.gather(*(processor.parse_message(UserMessage(text, sender_id=f"p{i}"))
                                      for i, text in enumerate(texts)), return_exceptions=True)

    results = asyncio.run(parse_all())
    assert isinstance(results[2], ValueError)
    for text, parse in zip(texts, results):
        if text != "poison":
            _assert_same_parse(parse, _alone(processor, text))


def test_a_parse_left_waiting_by_a_closed_event_loop_does_not_stop_the_others(processor):
    batcher = nlu_batching.batcher_for(processor)
    closed = asyncio.new_event_loop()
    stale = closed.create_future()
    stale.add_done_callback(lambda future: None)  # setting its result would schedule this on the closed loop
    closed.close()
    batcher.pending.append((UserMessage("你好", sender_id="stale"), True, stale))

    async def parse():
        return await asyncio.wait_for(processor.parse_message(UserMessage("转人工", sender_id="fresh")), 60)

    _assert_same_parse(asyncio.run(parse()), _alone(processor, "转人工"))
    assert not batcher.pending and not batcher.draining


def test_rasa_still_validates_the_training_graph_with_the_batched_components():
    """``rasa train`` validates every component's ``process`` signature; a replaced method must keep Rasa's."""
    import rasa.engine.validation
    from rasa.engine.recipes.recipe import Recipe
    from rasa.shared.importers.importer import TrainingDataImporter
    from rasa.shared.data import TrainingType

    importer = TrainingDataImporter.load_from_config(str(ROOT / "config.yml"), str(ROOT / "domain"),
                                                     [str(ROOT / "data")])
    config = importer.get_config()
    recipe = Recipe.recipe_for_name(config.get("recipe"))
    config, _, _ = recipe.auto_configure(importer.get_config_file_for_auto_config(), config, TrainingType.BOTH)
    rasa.engine.validation.validate(recipe.graph_config_for_recipe(config, {}, training_type=TrainingType.BOTH))
