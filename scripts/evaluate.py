"""`rasa data validate`, the story tests and both NLU evaluations in one process, loading the model once.

Each step is the Rasa CLI command scripts/test.sh used to start on its own -- same arguments, same code path,
same reports -- run through ``rasa.__main__.main``. Only ``Agent.load`` is memoised per model path: a Rasa command
starts by importing TensorFlow and loading the model, about a minute on a slow 2-core machine, and three commands
load the same model.

    .venv/bin/python scripts/evaluate.py MODEL

The output of every step goes to results/evaluate.log; on a failure its tail is printed and the exit code is 1.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

LOG = Path("results/evaluate.log")


def steps(model: str) -> List[tuple]:
    """(title, rasa arguments, extra environment)."""
    return [
        ("rasa data validate", ["data", "validate", "--domain", "domain"], {}),
        ("story tests (tests/stories)",
         ["test", "core", "--model", model, "--stories", "tests/stories", "--out", "results/core",
          "--fail-on-prediction-errors"],
         {"KEFU_EVALUATING_STORIES": "1"}),  # kefu.policies: see there
        ("NLU test split (tests/nlu_test: written apart from the training data, never trained or tuned on)",
         ["test", "nlu", "--model", model, "--nlu", "tests/nlu_test", "--out", "results/nlu_test"], {}),
        ("NLU dev split (tests/nlu_dev: never trained on, but used for error analysis and tuning)",
         ["test", "nlu", "--model", model, "--nlu", "tests/nlu_dev", "--out", "results/nlu_dev"], {}),
    ]


def memoise_agent_load() -> None:
    from rasa.core.agent import Agent

    load = Agent.load.__func__
    loaded: Dict[str, Any] = {}

    def load_once(cls: type, model_path: str, **kwargs: Any) -> Agent:
        if kwargs:  # anything but the plain load of a model file is loaded as asked
            return load(cls, model_path, **kwargs)
        key = os.path.abspath(model_path)
        if key not in loaded:
            loaded[key] = load(cls, model_path)
        return loaded[key]

    Agent.load = classmethod(load_once)


@contextlib.contextmanager
def environment(extra: Dict[str, str]):
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(arguments: List[str]) -> int:
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", *arguments]
    try:
        rasa_main()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    model = sys.argv[1]
    LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOG.open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        memoise_agent_load()
        for title, arguments, extra in steps(model):
            print(f"== {title}", file=sys.__stdout__, flush=True)
            print(f"== rasa {' '.join(arguments)}", flush=True)
            with environment(extra):
                code = run(arguments)
            if code:
                log.flush()
                tail = LOG.read_text(errors="replace").splitlines()[-50:]
                print("\n".join(tail), file=sys.__stdout__)
                print(f"FAILED: rasa {' '.join(arguments)} (exit {code})", file=sys.__stdout__)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
