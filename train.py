"""Meta-train the predictor: ``python train.py`` runs configs/default.yaml.

Any ``--section.key value`` override, ``--config FILE`` and ``--print_config`` work;
``--ckpt_path last`` (or a path) resumes.
"""

from __future__ import annotations

from nas_lightning.cli import run_main
from nas_lightning.metatrain import build_cli, fit


def main() -> None:
    fit(build_cli())


if __name__ == "__main__":
    run_main(main)
