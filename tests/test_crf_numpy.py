"""kefu.crf_numpy: the numpy decode must give what Rasa's CRF layer gives, on random input and inside DIET."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.nlu.classifiers.diet_classifier import DIET
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.tensorflow import crf as rasa_crf

from kefu import crf_numpy, rasa_speedups

ROOT = Path(__file__).resolve().parent.parent

rasa_speedups.apply()


def rasa_layer(potentials, transitions, lengths):
    """``rasa.utils.tensorflow.layers.CRF.call``: Rasa's decode, zeroed past each length."""
    ids, scores, _ = rasa_crf.crf_decode(tf.constant(potentials), tf.constant(transitions), tf.constant(lengths))
    mask = tf.sequence_mask(lengths, maxlen=tf.shape(ids)[1], dtype=ids.dtype)
    return (ids * mask).numpy(), (scores * tf.cast(mask, tf.float32)).numpy()


NEARLY_ONE = 1.0 - 2.5e-7  # two float32 steps below 1.0


def assert_scores_match(scores, expected, lengths) -> int:
    """Rasa's backward scan takes each score (a probability) as the tag index of the one before it: 1 after a score
    of exactly 1.0, else 0. Whether a softmax maximum rounds to exactly 1.0 or to 0.99999994 depends on the CPU's
    TensorFlow kernels, so from a position where the two sides differ only in that last bit, Rasa's own scores
    differ between machines, and the rest of the row is not compared. Up to there every score must match.
    Returns how many scores were compared."""
    compared = 0
    for row, length in enumerate(lengths):
        for position in range(int(length) - 1, -1, -1):
            if position < length - 1:
                ours, theirs = float(scores[row, position + 1]), float(expected[row, position + 1])
                if int(ours) != int(theirs):
                    assert {ours == 1.0, theirs == 1.0} == {True, False} and min(ours, theirs) >= NEARLY_ONE, \
                        (row, position, ours, theirs)
                    break
            np.testing.assert_allclose(scores[row, position], expected[row, position], atol=1e-6)
            compared += 1
    return compared


@pytest.mark.parametrize("scale", [1.0, 60.0])  # 60: softmax maxima of (nearly) 1.0 (Rasa's score-scan quirk)
def test_numpy_decode_matches_rasas_crf_layer_on_random_input(scale):
    compared = total = 0
    generator = np.random.default_rng(7)
    tags = 25
    for max_len in (1, 2, 3, 8, 17):
        for _ in range(6):
            batch = int(generator.integers(1, 6))
            lengths = generator.integers(0 if max_len > 1 else 1, max_len + 1, size=batch).astype(np.int32)
            lengths[0] = max_len
            potentials = (generator.normal(size=(batch, max_len, tags)) * scale).astype(np.float32)
            transitions = (generator.normal(size=(tags, tags)) * scale / 4).astype(np.float32)
            ids, scores = crf_numpy.crf_decode(potentials, transitions, lengths)
            expected_ids, expected_scores = rasa_layer(potentials, transitions, lengths)
            assert ids.dtype == expected_ids.dtype and scores.dtype == expected_scores.dtype
            np.testing.assert_array_equal(ids, expected_ids)
            padding = np.arange(max_len)[None, :] >= lengths[:, None]
            assert not scores[padding].any() and not expected_scores[padding].any()
            compared += assert_scores_match(scores, expected_scores, lengths)
            total += int(lengths.sum())
    # scale 1: no maximum comes near 1.0, every score is compared; scale 60: the quirk cuts rows short
    assert compared == total if scale == 1.0 else compared >= total // 4, (compared, total)


@pytest.fixture(scope="module")
def diet():
    processor = Agent.load(str(ROOT / "models" / "kefu.tar.gz")).processor
    runner = processor.graph_runner
    name = next(name for name, node in runner._instantiated_nodes.items()
                if type(node._component).__name__ == "DIETClassifier")
    featurized_by = runner._graph_schema.nodes[name].needs["messages"]

    def featurize(texts):
        messages = [UserMessage(text, sender_id="crf") for text in texts]
        return runner.run(inputs={"__message__": messages, "__tracker__": DialogueStateTracker.from_events("c", [])},
                          targets=[featurized_by])[featurized_by]

    return runner._instantiated_nodes[name]._component, featurize


def _retrace(model):
    model._tf_predict_step = None
    model.__dict__.pop("_kefu_concrete", None)


def test_diet_entities_match_rasas_crf_layer_on_the_test_split(diet, monkeypatch, test_split_texts):
    classifier, featurize = diet
    texts = list(test_split_texts)[::2] + ["订单202411010001到哪了", "手机号13800138000 查一下", "SF1234567890123"]
    messages = featurize(texts)

    def predict_each():
        return [classifier.model.run_inference(classifier._create_model_data([message], training=False))
                for message in messages]

    def predict_batches():
        out = []
        for start in range(0, len(messages), 7):
            chunk = messages[start:start + 7]
            batch = classifier.model.run_inference(classifier._create_model_data(chunk, training=False),
                                                   batch_size=len(chunk))
            out += [{key: value[index:index + 1] for key, value in batch.items() if key.startswith("e_")}
                    for index in range(len(chunk))]
        return out

    traced_crf = []
    decode = rasa_crf.crf_decode
    monkeypatch.setattr(rasa_crf, "crf_decode", lambda *args: traced_crf.append(1) or decode(*args))
    _retrace(classifier.model)
    mine, mine_batched = predict_each(), predict_batches()
    assert not traced_crf and "e_entity_ids" in mine[0] and crf_numpy.LOGITS not in mine[0]
    with monkeypatch.context() as patch:
        patch.setattr(DIET, "_batch_predict_entities", crf_numpy.ORIGINAL["batch_predict_entities"])
        _retrace(classifier.model)
        rasas, rasas_batched = predict_each(), predict_batches()
    _retrace(classifier.model)
    assert traced_crf  # Rasa's CRF layer was in the function that gave the expected values
    tagged = 0
    for ours, theirs in list(zip(mine, rasas)) + list(zip(mine_batched, rasas_batched)):
        np.testing.assert_array_equal(ours["e_entity_ids"], theirs["e_entity_ids"])
        np.testing.assert_allclose(ours["e_entity_scores"], theirs["e_entity_scores"], atol=1e-5)
        if "i_scores" in ours:
            np.testing.assert_allclose(ours["i_scores"], theirs["i_scores"], atol=1e-6)
        tagged += bool(np.any(ours["e_entity_ids"]))
    assert tagged >= 10  # messages with entities were among them
