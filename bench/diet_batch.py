"""What one NLU parse costs alone and inside a batch (kefu.nlu_batching): DIET's TensorFlow call, and the whole
NLU graph run, per message, for batches of 1, 2, 4, 8, 16 and 32 texts of the held-out test split. Then what the
entity decode costs as Rasa's compiled CRF layer and as kefu.crf_numpy's numpy decode, per call.

    .venv/bin/python bench/diet_batch.py [--model models/kefu.tar.gz] [--repeats 40]

Wall time and process CPU time per message are printed; nothing else should run on the machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

BATCHES = (1, 2, 4, 8, 16, 32)


def test_split_texts() -> list:
    from kefu.analytics.gaps import load_nlu_examples

    return [text for texts in load_nlu_examples(PROJECT_ROOT / "tests" / "nlu_test").values() for text in texts]


def per_message(run, size: int, repeats: int) -> tuple:
    run(size)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        run(size)
    count = repeats * size
    return (time.perf_counter() - wall) / count * 1000, (time.process_time() - cpu) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(PROJECT_ROOT / "models" / "kefu.tar.gz"))
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()

    from rasa.core.agent import Agent
    from rasa.core.channels.channel import UserMessage

    from kefu import nlu_batching, rasa_speedups

    rasa_speedups.apply()
    processor = Agent.load(args.model).processor
    batcher = nlu_batching.batcher_for(processor)
    runner = processor.graph_runner
    diet_node = next(name for name, node in runner._instantiated_nodes.items()
                     if type(node._component).__name__ == "DIETClassifier")
    diet = runner._instantiated_nodes[diet_node]._component
    featurized_by = runner._graph_schema.nodes[diet_node].needs["messages"]
    texts = test_split_texts()[: max(BATCHES)]
    messages = [UserMessage(text, sender_id=f"b{i}") for i, text in enumerate(texts)]
    from rasa.shared.core.trackers import DialogueStateTracker

    featurized = runner.run(inputs={"__message__": messages, "__tracker__": DialogueStateTracker.from_events("b", [])},
                            targets=[featurized_by])[featurized_by]

    def diet_call(size: int) -> None:
        diet.model.run_inference(diet._create_model_data(featurized[:size], training=False), batch_size=size)

    def graph_run(size: int) -> None:
        batcher._run_graph(messages[:size], [True] * size)

    print(f"{'batch':>5} | {'DIET call wall':>14} | {'CPU':>6} | {'NLU graph run wall':>18} | {'CPU':>6}  (ms per message)")
    for size in BATCHES:
        diet_wall, diet_cpu = per_message(diet_call, size, max(2, args.repeats * 4 // size))
        graph_wall, graph_cpu = per_message(graph_run, size, max(2, args.repeats * 4 // size))
        print(f"{size:>5} | {diet_wall:>14.2f} | {diet_cpu:>6.2f} | {graph_wall:>18.2f} | {graph_cpu:>6.2f}")
    crf_costs(diet, args.repeats)


def crf_costs(diet, repeats: int) -> None:
    import numpy as np
    import tensorflow as tf

    from kefu import crf_numpy

    layer = diet.model._tf_layers["crf.entity"]
    transitions = layer.transition_params.numpy()
    tags = transitions.shape[0]
    compiled = tf.function(lambda logits, lengths: layer(logits, lengths),
                           input_signature=[tf.TensorSpec([None, None, tags], tf.float32),
                                            tf.TensorSpec([None], tf.int32)])
    print(f"\n{'tokens':>6} | {'batch':>5} | {'Rasa CRF layer (compiled)':>25} | {'numpy decode':>12}  (ms per call)")
    generator = np.random.default_rng(1)
    for length in (3, 8, 20):
        for size in (1, 8):
            logits = generator.normal(size=(size, length, tags)).astype(np.float32)
            lengths = np.full(size, length, dtype=np.int32)
            tensors = tf.constant(logits), tf.constant(lengths)
            layer_ms, _ = per_message(lambda _: compiled(*tensors), 1, repeats * 5)
            numpy_ms, _ = per_message(lambda _: crf_numpy.crf_decode(logits, transitions, lengths), 1, repeats * 5)
            print(f"{length:>6} | {size:>5} | {layer_ms:>25.2f} | {numpy_ms:>12.2f}")


if __name__ == "__main__":
    main()
