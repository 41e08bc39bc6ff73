"""make bench: every benchmark in sequence (results printed and written to bench/results/), then the README's
performance section regenerated from the results (bench/report.py --write)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
for script in ("bench_corpus.py", "bench_sparse.py", "bench_train.py", "bench_prune.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE)
print("== report.py --write", flush=True)
subprocess.run([sys.executable, str(HERE / "report.py"), "--write"], check=True, cwd=HERE)
