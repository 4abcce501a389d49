"""DIET's entity tags decoded with numpy after its TensorFlow call, instead of by the CRF layer inside it.

Rasa's ``CRF`` layer decodes with a Keras RNN (a ``while`` loop over the tokens) and two ``tf.scan`` loops; in
the compiled prediction function those loops cost 1.3 ms per call for a three-token message and 3.2 ms for twenty
tokens (``bench/diet_batch.py`` prints it), while the arithmetic -- a Viterbi pass over about 25 tags -- is a few
microseconds of numpy per token. So DIET's traced prediction now ends at the entity logits: it outputs them,
the sequence lengths and the transition matrix, and ``crf_decode`` below turns them into the ``e_entity_ids`` and
``e_entity_scores`` Rasa's CRF layer would have output, in the same shapes and dtypes, before anything reads them.

``crf_decode`` reproduces ``rasa.utils.tensorflow.crf.crf_decode`` and ``CRF.call`` exactly, including one quirk:
Rasa's backward scan of the *scores* carries the previous score (a probability) as the index of the next one, so
every position but the last gets the score at tag index 0 (or 1, after a score of exactly 1.0). The tags are
computed with the same float32 additions and maxima, so they are identical; the scores go through a softmax
whose last bit may differ. Where a maximum is within that bit of 1.0, the bit picks the quirk's index: TensorFlow's
own kernels give 0.99999994 on some CPUs (an AMD EPYC machine) and exactly 1.0 on others, so from there to the
start of the row Rasa's own scores depend on the machine. ``tests/test_crf_numpy.py`` compares both on random
potentials (every score up to such a position) and on DIET's outputs for the NLU test split.

Only DIET models with entity recognition and no roles or groups (one CRF) take this path; anything else keeps
Rasa's layer. ``apply()`` runs from ``kefu.rasa_speedups.apply()``, before any model is loaded and traced.
"""
from __future__ import annotations

from typing import Any, Dict, Text, Tuple

import numpy as np

LOGITS = "kefu_entity_logits"
LENGTHS = "kefu_entity_lengths"
TRANSITIONS = "kefu_entity_transitions"
ORIGINAL: Dict[str, Any] = {}
_applied = False


def _softmax(values: np.ndarray, axis: int) -> np.ndarray:
    exp = np.exp(values - values.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def crf_decode(potentials: np.ndarray, transitions: np.ndarray, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Tag ids (int32) and scores (float32), both [batch, max_len] and zero past each row's length: what Rasa's
    ``CRF.call(potentials, lengths)`` returns."""
    potentials = np.asarray(potentials, dtype=np.float32)
    transitions = np.asarray(transitions, dtype=np.float32)
    batch, max_len, tags = potentials.shape
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64).reshape(batch), max_len)
    ids = np.zeros((batch, max_len), dtype=np.int32)
    scores = np.zeros((batch, max_len), dtype=np.float32)
    # forward (Viterbi) pass for all rows at once; a row's state stops changing after its last token
    state = potentials[:, 0]
    backpointers = np.zeros((batch, max(max_len - 1, 0), tags), dtype=np.int64)
    step_scores = np.zeros((batch, max(max_len - 1, 0), tags), dtype=np.float32)
    for position in range(1, int(lengths.max(initial=0))):
        transition_scores = state[:, :, None] + transitions[None]  # [row, previous tag, next tag]
        backpointers[:, position - 1] = transition_scores.argmax(axis=1)
        step_scores[:, position - 1] = _softmax(transition_scores, axis=1).max(axis=1)
        advanced = potentials[:, position] + transition_scores.max(axis=1)
        state = np.where((position < lengths)[:, None], advanced, state)
    last_scores = _softmax(state, axis=1).max(axis=1)
    # backtracking, per row
    for row in range(batch):
        length = int(lengths[row])
        if length <= 0:
            continue
        tag = int(state[row].argmax())
        row_tags, row_scores = [tag], [last_scores[row]]
        carried = float(tag)  # Rasa's score scan: the carried value is the index of the next gather
        for step in range(length - 2, -1, -1):
            tag = int(backpointers[row, step, tag])
            row_tags.append(tag)
            carried = step_scores[row, step, int(carried)]
            row_scores.append(carried)
        ids[row, :length] = row_tags[::-1]
        scores[row, :length] = row_scores[::-1]
    return ids, scores


def decode_outputs(outputs: Dict[Text, Any]) -> Dict[Text, Any]:
    """A DIET batch output with the logits replaced by Rasa's entity ids and scores (in place)."""
    if LOGITS not in outputs:
        return outputs
    from rasa.shared.nlu.constants import ENTITY_ATTRIBUTE_TYPE

    ids, scores = crf_decode(outputs.pop(LOGITS), outputs.pop(TRANSITIONS), outputs.pop(LENGTHS))
    outputs[f"e_{ENTITY_ATTRIBUTE_TYPE}_ids"] = ids
    outputs[f"e_{ENTITY_ATTRIBUTE_TYPE}_scores"] = scores
    return outputs


def _patch_diet_entities() -> None:
    from rasa.nlu.classifiers.diet_classifier import DIET
    from rasa.shared.nlu.constants import ENTITY_ATTRIBUTE_TYPE

    original = DIET._batch_predict_entities
    ORIGINAL["batch_predict_entities"] = original

    def _batch_predict_entities(self: Any, sequence_feature_lengths: Any, text_transformed: Any) -> Dict[Text, Any]:
        trained = [spec for spec in self._entity_tag_specs if spec.num_tags > 0]
        if [spec.tag_name for spec in trained] != [ENTITY_ATTRIBUTE_TYPE]:
            return original(self, sequence_feature_lengths, text_transformed)
        name = ENTITY_ATTRIBUTE_TYPE
        return {LOGITS: self._tf_layers[f"embed.{name}.logits"](text_transformed),
                LENGTHS: sequence_feature_lengths,
                TRANSITIONS: self._tf_layers[f"crf.{name}"].transition_params}

    DIET._batch_predict_entities = _batch_predict_entities


def _patch_batch_merge() -> None:
    """Every batch output passes ``RasaModel._merge_batch_outputs`` in ``run_inference``, whichever way the
    compiled function was called: the entity logits are decoded there, per batch."""
    from rasa.utils.tensorflow.models import RasaModel

    merge = RasaModel._merge_batch_outputs
    ORIGINAL["merge_batch_outputs"] = merge

    def _merge_batch_outputs(all_outputs: Dict[Text, Any], batch_output: Dict[Text, Any]) -> Dict[Text, Any]:
        return merge(all_outputs, decode_outputs(batch_output))

    RasaModel._merge_batch_outputs = staticmethod(_merge_batch_outputs)


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    _patch_diet_entities()
    _patch_batch_merge()
