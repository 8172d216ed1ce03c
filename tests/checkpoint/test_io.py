"""The safetensors/JSON codec of training state: exact round trips, nothing pickled."""

import random

import numpy as np
import torch

from dino_mx.checkpoint.io import (
    flatten_optimizer,
    get_rng_state,
    read_json,
    read_tensors,
    set_rng_state,
    unflatten_optimizer,
    write_json,
    write_tensors,
)


def test_an_adamw_state_round_trips_through_files_and_steps_identically(tmp_path):
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        groups = [
            {"params": [model.weight], "lr_scale": 0.5},
            {"params": [model.bias], "lr_scale": 1.0},
        ]
        return model, torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.99))

    def step(model, opt):
        model(torch.ones(4, 3)).square().sum().backward()
        opt.step()
        opt.zero_grad()

    model, opt = make()
    step(model, opt)
    tensors, rest = flatten_optimizer(opt.state_dict())
    assert set(tensors) == {
        f"state.{i}.{n}" for i in (0, 1) for n in ("step", "exp_avg", "exp_avg_sq")
    }
    write_tensors(tmp_path / "o.safetensors", tensors)
    write_json(tmp_path / "o.json", rest)
    copy, copy_opt = make()
    copy.load_state_dict(model.state_dict())
    copy_opt.load_state_dict(
        unflatten_optimizer(
            read_tensors(tmp_path / "o.safetensors"), read_json(tmp_path / "o.json")
        )
    )
    assert copy_opt.param_groups[0]["betas"] == (0.9, 0.99)
    assert copy_opt.param_groups[0]["lr_scale"] == 0.5
    step(model, opt)
    step(copy, copy_opt)
    for a, b in zip(model.parameters(), copy.parameters()):
        assert torch.equal(a, b)


def test_random_generators_round_trip_through_files(tmp_path):
    tensors, rest = get_rng_state()
    write_tensors(tmp_path / "r.safetensors", tensors)
    write_json(tmp_path / "r.json", rest)
    first = (torch.rand(3), random.random(), np.random.rand(), np.random.randn())
    set_rng_state(read_tensors(tmp_path / "r.safetensors"), read_json(tmp_path / "r.json"))
    again = (torch.rand(3), random.random(), np.random.rand(), np.random.randn())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]
