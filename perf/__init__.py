"""tritonnn's performance sweeps, installed as ``tritonnn.perf`` (the source folder is perf/).

One ``bench_<family>.py`` per kernel family, the shared machinery in ``common``, and the
driver ``sweep`` (also ``tritonnn sweep``). Every script runs on its own with
``python -m tritonnn.perf.bench_<family> [--device auto|cpu|cuda] [--quick] [--out DIR]``;
results go to ``--out``, by default ``./perf_results/<device>`` under the current folder.
Nothing is imported here, so ``python -m`` runs each module exactly once.
"""
