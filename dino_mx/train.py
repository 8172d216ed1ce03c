"""Train a ViT with DINO self-distillation from a Hydra config.

Launch it any of these ways (all take Hydra overrides):

    dino-mx train +experiment=smoke
    dino-mx train data=pneumoniamnist model=vit_tiny trainer.max_steps=300 paths.output_dir=runs/pn
    accelerate launch dino_mx/train.py +experiment=pathmnist data.root=/data/medmnist
    torchrun --nproc_per_node 2 dino_mx/train.py +experiment=smoke
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
from omegaconf import DictConfig  # noqa: E402

from dino_mx.config import config_dir, register_schemas  # noqa: E402

register_schemas()


def shared_run_dir(output_dir: str) -> Path:
    """The run directory as resolved by the main process, shared with every other process
    (``${now:...}`` differs between ranks that resolve it themselves)."""
    state = PartialState(cpu=not torch.cuda.is_available())
    holder = [str(Path(output_dir).expanduser().resolve())]
    if state.num_processes > 1:
        broadcast_object_list(holder, from_process=0)
    return Path(holder[0])


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> None:
    from dino_mx.engine.trainer import train

    run_dir = shared_run_dir(cfg.paths.output_dir)
    cfg.paths.output_dir = str(run_dir)
    train(cfg, run_dir)


if __name__ == "__main__":
    main()
