"""DIET's sparse input features, combined in one step.

For every parse, DIET asks the message for its text features (``Message.get_sparse_features``, once for the
sequence and once for the sentence features). Rasa's ``Message._combine_features`` deep-copies the first
featurizer's matrix and then ``scipy.sparse.hstack``-s the others onto it one at a time: a deep copy and two
``bmat`` calls, each with scipy's general block-matrix bookkeeping, for three small matrices (lexical-syntactic
and two count-vector featurizers) -- about a tenth of a parse's CPU (``bench/profile_turn.py``).

``combine_features`` builds the same COO matrix directly: the featurizers' entries in the same order, the column
indices shifted by the widths before them, the same shape and dtype. Anything else -- dense features, one
matrix, row counts that differ (Rasa raises) -- goes to Rasa's own code. ``tests/test_rasa_speedups.py`` compares
both on the trained model's messages.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

import numpy as np
import scipy.sparse

ORIGINAL: Dict[str, Any] = {}


def combine_features(features: List[Any], featurizers: List[Text]) -> Optional[Any]:
    """``Message._combine_features``: the features side by side, as one ``Features`` with origin `featurizers`."""
    from rasa.shared.nlu.training_data.features import Features

    matrices = [f.features for f in features]
    if len(matrices) < 2 or not all(scipy.sparse.isspmatrix(m) for m in matrices) \
            or len({m.shape[0] for m in matrices}) != 1:
        return ORIGINAL["combine_features"](features, featurizers)
    parts = [m.tocoo(copy=False) for m in matrices]
    offsets = np.cumsum([0] + [m.shape[1] for m in parts])
    dtype = np.result_type(*[m.dtype for m in parts])
    combined = scipy.sparse.coo_matrix(
        (np.concatenate([m.data for m in parts]).astype(dtype, copy=False),
         (np.concatenate([m.row for m in parts]),
          np.concatenate([m.col + offset for m, offset in zip(parts, offsets)]))),
        shape=(parts[0].shape[0], int(offsets[-1])))
    return Features(combined, features[0].type, features[0].attribute, featurizers)


def apply() -> None:
    from rasa.shared.nlu.training_data.message import Message

    if "combine_features" in ORIGINAL:
        return
    ORIGINAL["combine_features"] = Message._combine_features
    Message._combine_features = staticmethod(combine_features)
