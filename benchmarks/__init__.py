"""Benchmarks: ``python -m benchmarks {maml,scoring,growth,search,train,report}``.

Each benchmark prints its table, writes ``<out>/<name>.json`` and a Markdown section
``<out>/<name>.md``; ``report`` assembles the sections into ``BENCHMARKS.md``. Every figure is
measured in the same run as what it is compared with.
"""

import os

# Threads that sleep rather than spin while they wait: on a shared (oversubscribed) machine a
# spinning OpenMP team makes every parallel region wait for a descheduled thread, which slowed
# small-operator code such as the per-task loop by 40x here. Set before torch starts OpenMP; an
# explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
