"""Search a task with every strategy side by side, or rank it few-shot.

    python search.py --list-tasks [--task SPEC]
    python search.py --task SPEC --strategy meta,rea,random --budget 100 --seeds 20 --ckpt CKPT --out DIR
    python search.py --rank-only --task SPEC --ckpt CKPT --support 10 --seeds 20 --out DIR
"""

from __future__ import annotations

from nas_lightning.cli import run_main
from nas_lightning.search.cli import main

if __name__ == "__main__":
    run_main(main)
