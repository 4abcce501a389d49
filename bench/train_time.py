"""Cold training time of the whole project (NLU pipeline + policies).

Runs `rasa train --domain domain --out <temp dir> --force` in the project
directory, with Rasa's component cache pointed at a fresh, empty temp directory
(`RASA_CACHE_DIRECTORY`; Rasa 3.6 otherwise caches component outputs under
./.rasa/cache and re-uses them, which would make a re-train look much faster).
The output also goes to a temp directory, so models/ is never touched.

Prints the wall time, the CPU time (user + sys) of the training process and its
peak RSS (`getrusage(RUSAGE_CHILDREN).ru_maxrss`: the largest resident set of
any waited-for child, i.e. the `rasa train` process), plus the model size.
Not a test: it only prints numbers.

    .venv/bin/python bench/train_time.py [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RASA = Path(sys.executable).parent / "rasa"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (model, cache, training log)")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds (default 3600)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kefu-bench-train-"))
    out, cache, log_path = tmp / "models", tmp / "rasa-cache", tmp / "train.log"
    cache.mkdir()
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "RASA_CACHE_DIRECTORY": str(cache),
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}
    command = [str(RASA), "train", "--domain", "domain", "--out", str(out), "--fixed-model-name", "kefu-bench",
               "--force"]
    print(f"# {' '.join(command)}  (cwd {PROJECT_ROOT}, RASA_CACHE_DIRECTORY={cache})", file=sys.stderr, flush=True)
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with log_path.open("w") as log:
            try:
                code = subprocess.run(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=args.timeout).returncode
            except subprocess.TimeoutExpired:
                code = None
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if code != 0:
            print(f"rasa train failed (exit {code}, {wall:.0f}s); tail of {log_path}:\n"
                  f"{log_path.read_text()[-3000:]}", file=sys.stderr)
            args.keep = True
            return 1
        model = next(out.glob("*.tar.gz"), None)
        result = {
            "wall_s": round(wall, 1),
            "cpu_user_s": round(after.ru_utime - before.ru_utime, 1),
            "cpu_sys_s": round(after.ru_stime - before.ru_stime, 1),
            "peak_rss_mb": round(after.ru_maxrss / 1024, 1),  # Linux: kilobytes
            "model_mb": round(model.stat().st_size / 2**20, 1) if model else None,
            "cache_mb": round(sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20, 1),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result))
        print(f"cold `rasa train`: {result['wall_s']} s wall, {result['cpu_user_s'] + result['cpu_sys_s']:.1f} s CPU, "
              f"peak RSS {result['peak_rss_mb']} MB, model {result['model_mb']} MB ({result['cpus']} CPUs)")
        return 0
    finally:
        if args.keep:
            print(f"# kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
