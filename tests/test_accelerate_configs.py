"""The Accelerate launch configs in configs/accelerate/ say what their comments say.

Each file goes through Accelerate's own code, as `accelerate launch --config_file` runs it: the
config loader, the launch-argument check and the environment handed to the training processes.
The FSDP wrap policy is then built from that environment on a real (tiny) dino-mx student.
Nothing here starts a process group or needs a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import transformers.models.dinov2.modeling_dinov2 as modeling_dinov2
import transformers.models.vit.modeling_vit as modeling_vit
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
from accelerate.utils.launch import prepare_multi_gpu_env

from dino_mx.models import Backbone, DINOHead, MultiCropModel, random_init_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
FILES = ("ddp", "fsdp", "multinode")


def launch(name: str, *options: str):
    """What `accelerate launch --config_file NAME.yaml OPTIONS train.py` hands to torchrun and
    to the processes: the validated arguments and the environment."""
    argv = ["--config_file", str(CONFIGS / f"{name}.yaml"), *options, "train.py"]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    return args, prepare_multi_gpu_env(args)


def tiny_student(arch: str) -> MultiCropModel:
    model = random_init_model(
        arch, num_channels=3, image_size=28, patch_size=4, hidden_size=48, depth=2, num_heads=2
    )
    return MultiCropModel(Backbone(model), DINOHead(48, 64, 64, 32))


def wrapped(env: dict[str, str], student: MultiCropModel, monkeypatch) -> list[str]:
    """Names of the modules Accelerate's FSDP2 auto-wrap policy makes units of."""
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    policy = fsdp2_prepare_auto_wrap_policy(FullyShardedDataParallelPlugin(), student)
    return [name for name, module in student.named_modules() if policy(module)]


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


def test_fsdp_is_fsdp2_full_sharding_per_transformer_block():
    config = load_config_from_file(str(CONFIGS / "fsdp.yaml"))
    assert config.distributed_type == DistributedType.FSDP
    fsdp = config.fsdp_config
    # A mistyped key would be silently ignored by the loader: each must be a launch option.
    options = vars(launch_command_parser().parse_args(["train.py"]))
    assert set(fsdp) <= set(options), set(fsdp) - set(options)
    assert fsdp["fsdp_version"] == 2
    assert fsdp["fsdp_reshard_after_forward"] is True
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    classes = fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",")
    assert all(hasattr(modeling_vit, name) for name in classes), classes
    assert hasattr(modeling_dinov2, "Dinov2Layer")  # the documented command-line override

    args, env = launch("fsdp", "--num_processes", "2")
    assert args.use_fsdp and args.nproc_per_node == "2"
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_VERSION"] == "2"
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "true"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_fsdp_wraps_each_block_of_a_vit_and_with_the_override_of_a_dinov2(monkeypatch):
    _, env = launch("fsdp", "--num_processes", "2")
    assert wrapped(env, tiny_student("vit"), monkeypatch) == [
        "backbone.model.layers.0",
        "backbone.model.layers.1",
    ]
    # The file's class is missing from a DINOv2 model: Accelerate refuses rather than not
    # sharding, and the command-line option documented in the file fixes it.
    with pytest.raises(ValueError, match="ViTLayer"):
        wrapped(env, tiny_student("dinov2"), monkeypatch)
    _, env = launch(
        "fsdp", "--num_processes", "2", "--fsdp_transformer_layer_cls_to_wrap", "Dinov2Layer"
    )
    assert wrapped(env, tiny_student("dinov2"), monkeypatch) == [
        "backbone.model.encoder.layer.0",
        "backbone.model.encoder.layer.1",
    ]


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
