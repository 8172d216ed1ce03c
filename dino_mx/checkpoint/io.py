"""Training state as data: tensors in safetensors, everything else in JSON, nothing pickled.

A checkpoint folder is something users share and download, so reading one must never run code.
This module turns each piece of training state into (tensors, JSON) and back:

- an ``nn.Module``-like state dict: a safetensors file as is;
- an optimiser's ``state_dict()``: its tensors flattened to ``state.{param_index}.{name}`` in
  safetensors, its ``param_groups`` and any non-tensor per-parameter values in JSON;
- the random generators of one process: torch's CPU (and CUDA) states, ``uint8`` tensors, in
  safetensors; Python's ``random`` and NumPy's Mersenne-Twister states in JSON.

Every writer flushes the file to disk (``fsync``) before returning, so a folder that is renamed
into place afterwards holds complete files even after a power cut.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_tensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    """Save ``tensors`` (any device, dtype or layout) to a safetensors file and fsync it.

    Raises:
        ValueError: Two names alias the same storage (safetensors stores no aliases).
    """
    plain = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(plain, str(path), metadata={"format": "pt"})
    fsync_path(path)


def read_tensors(path: Path) -> dict[str, Tensor]:
    """Tensors of a safetensors file, on the CPU."""
    return load_file(str(path))


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a hidden temporary file, fsynced, renamed into
    place, then the folder fsynced, so a crash leaves the old or the new file, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON (exact floats, ``Infinity``/``NaN`` allowed) and fsync it."""
    with path.open("w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def read_json(path: Path) -> Any:
    """The JSON value stored in ``path``."""
    return json.loads(path.read_text())


def read_checkpoint_file(path: Path) -> Any:
    """A checkpoint's JSON file as its value, any other file as safetensors tensors.

    Raises:
        FileNotFoundError: ``path`` is missing, so the checkpoint is incomplete.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint is incomplete")
    return read_json(path) if path.suffix == ".json" else read_tensors(path)


def file_identity(path: Path) -> list[int] | None:
    """``[mtime_ns, size]`` of a file (None if absent): changes when the file is rewritten,
    which is what a cache keyed by it needs, without reading the file."""
    if not path.is_file():
        return None
    stat = path.stat()
    return [stat.st_mtime_ns, stat.st_size]


def flatten_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimiser ``state_dict()`` as (tensors, JSON-able rest).

    Tensors are named ``state.{param_index}.{name}`` (AdamW: ``step``, ``exp_avg``,
    ``exp_avg_sq``); tuples in ``param_groups`` (``betas``) become lists.
    """
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
        for group in state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "state": scalars}


def unflatten_optimizer(tensors: Mapping[str, Tensor], rest: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`: a ``state_dict()`` for ``load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in rest["state"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in rest["param_groups"]
    ]
    return {"state": dict(sorted(state.items())), "param_groups": groups}


def get_rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """This process's random generators: (torch CPU and CUDA states, Python and NumPy states)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for device, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{device}"] = cuda_state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    rest = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, rest


def set_rng_state(tensors: Mapping[str, Tensor], rest: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = rest["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = rest["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
