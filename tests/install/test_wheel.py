"""An installed wheel works anywhere: build it, install it into a fresh virtualenv (dependencies reused from
the test environment, no index), and run `bridge demo` from an empty directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_installs_and_runs_the_demo_from_any_directory(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: the build leaves build/ and *.egg-info behind
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, source / name if source.exists() else _mkdir(source) / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for directory in ("bridge", "mappings", "fixtures"):
        shutil.copytree(ROOT / directory, source / directory, ignore=ignore)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source,
        cwd=tmp_path)
    [wheel] = dist.glob("bridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "bridge/shipped/mappings/stripe.yaml",
        "bridge/shipped/stripe/checkout.session.completed.json",
        "bridge/ops/templates/overview.html",
        "bridge/ops/static/ops.css",
        "bridge/providers/certs/AppleRootCA-G3.cer",
        "bridge/shipped/samples/paystack/charge.success.json",
        "bridge/shipped/samples/braintree/subscription_went_active.form",
        "bridge/shipped/samples/mercadopago/payment.created.headers.json",
        "bridge/shipped/samples/paypal/_options.json",
        "bridge/demo_sources/payments.py",
    ):
        assert expected in names, expected
    assert not any(name.endswith(".expected.json") for name in names)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path)
    # the dependencies come from this test environment's site-packages (appended, so the wheel's bridge wins)
    Path(purelib.stdout.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel,
        cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BRIDGE_CONFIG")}
    where = run(python, "-c", "import bridge, bridge.shipped as s; print(bridge.__file__); print(s.mappings_dir())",
                cwd=elsewhere, env=env)
    for line in where.stdout.splitlines():
        assert line.startswith(str(venv)), where.stdout  # the installed copy, not the checkout
    demo = run(venv / "bin" / "bridge", "demo", cwd=elsewhere, env=env)
    assert "demo ok" in demo.stdout
    demo = run(venv / "bin" / "bridge", "demo", "--source", "paypal", cwd=elsewhere, env=env)  # its _options.json
    assert "demo ok" in demo.stdout
    page = run(python, "-c", "from bridge.ops.page import environment; "
               "print(environment().get_template('login.html').render(enabled=True, message=None, next_path='/ops/'))",
               cwd=elsewhere, env=env)
    assert 'name="token"' in page.stdout


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
