"""Benchmarks: ``python -m nas_lightning.bench {maml,scoring,growth,search,train,report}``.

Each benchmark prints its table, writes ``<out>/<name>.json`` and a Markdown section
``<out>/<name>.md``; ``report`` assembles the sections into ``BENCHMARKS.md``. Every figure is
measured in the same run as what it is compared with.
"""
