"""A non-editable install into a fresh venv finds its configs and bundled data elsewhere."""

import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_trains_smoke_from_another_directory(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    site = subprocess.check_output(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    # Dependencies (torch, ...) come from this environment; dino_mx itself must not.
    (Path(site) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(ROOT)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.check_output(
        [py, "-c", "import dino_mx, dino_mx.config as c; print(dino_mx.__file__, c.config_dir())"],
        cwd=elsewhere,
        text=True,
    )
    assert str(env_dir) in where and str(ROOT) not in where
    result = subprocess.run(
        [
            env_dir / "bin" / "dino-mx",
            "train",
            "+experiment=smoke",
            "trainer.max_steps=2",
            "trainer.progress=false",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (elsewhere / "runs/smoke/checkpoints/step_0000002/model.safetensors").is_file()
    help_text = subprocess.check_output([env_dir / "bin" / "dino-mx", "--help"], text=True)
    assert "train" in help_text and "eval" in help_text
