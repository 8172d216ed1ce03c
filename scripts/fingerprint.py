"""Fingerprint tiny training runs: one SHA-256 per tensor of the final checkpoint, and the losses.

A refactor that must not change the arithmetic is checked by running this before and after and
comparing the two JSON files::

    python scripts/fingerprint.py --out before.json          # on the old commit
    python scripts/fingerprint.py --out after.json           # on the new one
    python scripts/fingerprint.py --compare before.json after.json

Each case is the ``smoke`` experiment (seconds on a CPU) with a few overrides, trained in a
fresh process so no state leaks between cases. Tensors are compared by name; a name present in
one run only is reported, so a renamed parameter shows up as such rather than as a mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

CASES: dict[str, list[str]] = {
    "dinov1": [],
    "dinov2": [
        "method=dinov2",
        "method.head.out_dim=64",
        "method.head.hidden_dim=64",
        "method.head.bottleneck_dim=32",
        "method.ibot.head.out_dim=64",
    ],
    "lora": ["adapter=lora"],
    "freeze": ["adapter=freeze", "adapter.num_layers=1"],
    "batched": ["augment.backend=batched"],
    "sinkhorn": ["method.centering=sinkhorn_knopp"],
    "distill": ["distill=teacher", "distill.model=vit_micro", "distill.weight=0.5"],
    "accum": ["trainer.grad_accum=2", "trainer.batch_size=4"],
    "lr_decay": ["optim.layerwise_decay=0.8", "optim.patch_embed_lr_mult=0.5"],
}
FILES = ("model", "teacher", "loss", "optimizer")


def run_case(overrides: list[str], run_dir: Path) -> dict:
    """Train one case in a fresh process; its final checkpoint's tensor hashes and losses."""
    args = ["+experiment=smoke", f"paths.output_dir={run_dir}", "trainer.progress=false"]
    proc = subprocess.run(
        [sys.executable, "-m", "dino_mx", "train", *args, *overrides],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"}
    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    tensors = {}
    for name in FILES:
        path = ckpt / f"{name}.safetensors"
        if path.exists():
            for key, value in load_file(path).items():
                raw = value.contiguous().view(-1).view(torch.uint8).numpy()
                tensors[f"{name}/{key}"] = hashlib.sha256(raw).hexdigest()[:16]
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return {"tensors": tensors, "loss": [row["loss"] for row in log]}


def renamed(tensors: dict[str, str], renames: list[str]) -> dict[str, str]:
    """``tensors`` with each ``OLD=NEW`` key prefix replaced (a deliberate rename)."""
    out = {}
    for key, digest in tensors.items():
        for rename in renames:
            old, new = rename.split("=", 1)
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = digest
    return out


def compare(before: dict, after: dict, renames: list[str] = ()) -> int:
    """Print per case: equal, or which tensors differ / exist on one side only."""
    bad = 0
    for case in sorted(set(before) | set(after)):
        if case not in before or case not in after:
            print(f"{case}: only in {'after' if case in after else 'before'}")
            bad += 1
            continue
        if "error" in before[case] or "error" in after[case]:
            print(f"{case}: failed: {before[case].get('error') or after[case].get('error')}")
            bad += 1
            continue
        b, a = renamed(before[case]["tensors"], list(renames)), after[case]["tensors"]
        differ = [k for k in b if k in a and a[k] != b[k]]
        only_b, only_a = sorted(set(b) - set(a)), sorted(set(a) - set(b))
        same_loss = before[case]["loss"] == after[case]["loss"]
        ok = not differ and not only_b and not only_a and same_loss
        bad += not ok
        print(f"{case}: {'identical' if ok else 'DIFFERENT'} ({len(b)} tensors)")
        for label, keys in (("differ", differ), ("only before", only_b), ("only after", only_a)):
            if keys:
                more = " ..." if len(keys) > 6 else ""
                print(f"  {label}: {len(keys)}: {', '.join(keys[:6])}{more}")
        if not same_loss:
            print(f"  losses: {before[case]['loss']} vs {after[case]['loss']}")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the fingerprints here (JSON)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument(
        "--rename", nargs="*", default=[], metavar="OLD=NEW", help="key prefixes renamed"
    )
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        return compare(before, after, args.rename)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            result[case] = run_case(CASES[case], Path(tmp) / case)
            found = result[case]
            if "error" in found:
                print(f"{case}: failed: {found['error']}")
            else:
                print(f"{case}: {len(found['tensors'])} tensors, losses {found['loss']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
