"""The Accelerate launch configs in configs/accelerate/ say what their comments say.

Each file goes through Accelerate's own code, as `accelerate launch --config_file` runs it: the
config loader, the launch-argument check and the environment handed to the training processes.
dino-mx's own FSDP sharding (dino_mx/engine/fsdp.py) is what an FSDP launch turns on; it runs
with real processes in tests/engine/test_fsdp.py. Nothing here starts a process group or needs
a GPU.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType
from accelerate.utils.launch import prepare_multi_gpu_env

from dino_mx.engine.fsdp import use_fsdp

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
FILES = ("ddp", "fsdp", "multinode")


def launch(name: str, *options: str):
    """What `accelerate launch --config_file NAME.yaml OPTIONS train.py` hands to torchrun and
    to the processes: the validated arguments and the environment."""
    argv = ["--config_file", str(CONFIGS / f"{name}.yaml"), *options, "train.py"]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    return args, prepare_multi_gpu_env(args)


@pytest.mark.parametrize("name", FILES)
def test_every_file_loads_as_a_local_bf16_config(name):
    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert config.compute_environment.value == "LOCAL_MACHINE"
    assert config.mixed_precision == "bf16"
    assert not config.use_cpu
    assert config.gpu_ids == "all"
    assert (CONFIGS / f"{name}.yaml").read_text().startswith("# Accelerate launch config")


def test_ddp_runs_one_process_per_gpu_given_on_the_command_line():
    config = load_config_from_file(str(CONFIGS / "ddp.yaml"))
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert config.num_machines == 1
    # No count in the file: Accelerate asks for it rather than guessing the GPU count.
    with pytest.raises(ValueError, match="--num_processes"):
        launch("ddp")
    args, env = launch("ddp", "--num_processes", "4")
    assert args.multi_gpu and args.nproc_per_node == "4"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert "ACCELERATE_USE_FSDP" not in env


def test_fsdp_is_fsdp2_full_sharding_and_turns_dino_mx_sharding_on():
    config = load_config_from_file(str(CONFIGS / "fsdp.yaml"))
    assert config.distributed_type == DistributedType.FSDP
    fsdp = config.fsdp_config
    # A mistyped key would be silently ignored by the loader: each must be a launch option.
    options = vars(launch_command_parser().parse_args(["train.py"]))
    assert set(fsdp) <= set(options), set(fsdp) - set(options)
    assert fsdp == {"fsdp_version": 2, "fsdp_reshard_after_forward": True}

    args, env = launch("fsdp", "--num_processes", "2")
    assert args.use_fsdp and args.nproc_per_node == "2"
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_VERSION"] == "2"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    # What the processes' Accelerator then reports turns dino-mx's own sharding on, with more
    # than one process (Accelerate offers FSDP on GPUs only; the CPU tests set trainer.fsdp).
    fsdp_launch = SimpleNamespace(distributed_type=DistributedType.FSDP, num_processes=2)
    assert use_fsdp(False, fsdp_launch)
    assert not use_fsdp(
        False, SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, num_processes=2)
    )
    assert use_fsdp(
        True, SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, num_processes=2)
    )
    assert not use_fsdp(True, SimpleNamespace(distributed_type=DistributedType.NO, num_processes=1))


def test_multinode_is_two_machines_with_the_rank_set_per_machine():
    config = load_config_from_file(str(CONFIGS / "multinode.yaml"))
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert config.num_machines == 2
    assert config.machine_rank == 0
    assert config.main_process_ip and config.main_process_port
    assert config.num_processes % config.num_machines == 0  # counted over all machines
    args, _ = launch("multinode", "--machine_rank", "1", "--main_process_ip", "192.0.2.7")
    assert (args.nnodes, args.node_rank) == ("2", 1)
    assert args.nproc_per_node == str(config.num_processes // 2)
    # torchrun's rendezvous point: machine 0's address and the file's port.
    assert args.rdzv_endpoint == f"192.0.2.7:{config.main_process_port}"
