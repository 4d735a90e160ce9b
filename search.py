"""Search, rank few-shot, suggest what to measure, predict a whole space: ``python search.py --help``.

    python search.py tasks    [--task SPEC]
    python search.py compare  --task SPEC --strategy meta,rea,random --budget 100 --seeds 20 --ckpt CKPT --out DIR
    python search.py rank     --task SPEC --ckpt CKPT --support 10 --seeds 20 --out DIR
    python search.py suggest  --ckpt CKPT --k 10 [--task SPEC]
    python search.py predict  --task csv:FILE --ckpt CKPT --out FILE.csv
    python search.py constrained --accuracy nb201/cifar100/val_acc --latency csv:FILE --limit 20 --ckpt CKPT
    python search.py tabulate --task train:digits --cells 500 --out DIR
    python search.py compare  --task train:digits --strategy asha-meta,tune-asha,random --budget_epochs 300 --ckpt CKPT --out DIR
"""

from __future__ import annotations

from nas_lightning.cli import run_main
from nas_lightning.commands import main

if __name__ == "__main__":
    run_main(main)
