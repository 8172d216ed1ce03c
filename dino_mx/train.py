"""Train a ViT with DINO self-distillation from a Hydra config.

Launch it any of these ways (all take Hydra overrides):

    dino-mx train +experiment=smoke
    dino-mx train data=pneumoniamnist model=vit_tiny trainer.max_steps=300 paths.output_dir=runs/pn
    accelerate launch dino_mx/train.py +experiment=pathmnist data.root=/data/medmnist
    torchrun --nproc_per_node 2 dino_mx/train.py +experiment=smoke

A user error (bad value, unknown key, missing file, a checkpoint that does not fit) is one line
on stderr and exit status 2; ``--debug`` or ``HYDRA_FULL_ERROR=1`` shows the traceback. Hydra's
own options work as usual: ``--help``, ``--cfg job``.
"""

from __future__ import annotations

import os
import sys

if (
    __name__ == "__main__"
    and sys.path
    and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__))
):
    # Run as a script: drop the package folder from sys.path so that dino_mx/data etc. cannot
    # shadow top-level modules, and import dino_mx from the installed package.
    sys.path.pop(0)

from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from accelerate.utils import broadcast_object_list  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from dino_mx.config import config_dir, register_schemas  # noqa: E402
from dino_mx.errors import FULL_ERROR, pop_debug, reports_errors  # noqa: E402

register_schemas()


def shared_run_dir(output_dir: str) -> Path:
    """The run directory as resolved by the main process, shared with every other process
    (``${now:...}`` differs between ranks that resolve it themselves)."""
    state = PartialState(cpu=not torch.cuda.is_available())
    holder = [str(Path(output_dir).expanduser().resolve())]
    if state.num_processes > 1:
        broadcast_object_list(holder, from_process=0)
    return Path(holder[0])


_failures: list[Exception] = []  # what hydra_main raised, for main() to report


def train(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Run (or resume) the DINO training ``cfg`` describes in ``run_dir``, with its periodic
    evaluation (``trainer.eval_every``); returns the last logged scalars."""
    from dino_mx.engine.run import run
    from dino_mx.eval.monitor import build_monitor

    return run(cfg, run_dir, build_monitor)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def hydra_main(cfg: DictConfig) -> None:
    """Hydra's entry: ``cfg`` composed from ``configs/train.yaml`` and the overrides."""
    run_dir = shared_run_dir(cfg.paths.output_dir)
    cfg.paths.output_dir = str(run_dir)
    try:
        train(cfg, run_dir)
    except Exception as error:  # main() re-raises it: Hydra would add a line of its own
        _failures.append(error)


@reports_errors("dino-mx train")
def main(argv: list[str] | None = None) -> int:
    """Train with the Hydra overrides ``argv`` (default: the command line); returns the status."""
    args = pop_debug(list(sys.argv[1:] if argv is None else argv))
    saved_argv, saved_full_error = sys.argv, os.environ.get(FULL_ERROR)
    sys.argv = [sys.argv[0] if argv is None else "dino-mx train", *args]
    # Hydra then re-raises instead of printing its own traceback, so errors reach
    # reports_errors, which prints one line or (--debug) the traceback.
    os.environ[FULL_ERROR] = "1"
    try:
        hydra_main()
        if _failures:
            raise _failures.pop()
    finally:
        sys.argv = saved_argv
        if saved_full_error is None:
            del os.environ[FULL_ERROR]
        else:
            os.environ[FULL_ERROR] = saved_full_error
        GlobalHydra.instance().clear()  # a later compose / main in this process starts afresh
    return 0


if __name__ == "__main__":
    sys.exit(main())
