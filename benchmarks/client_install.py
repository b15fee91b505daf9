"""What `pip install runbase` costs an app that only calls the API: before and after the
client/server split, side by side.

    python benchmarks/client_install.py [--before REF] [--runs N]

For each of two sources, the package at REF (default: where this branch left main) and the
work tree, it builds the wheel, installs it with pip into a fresh virtual environment (its
dependencies from the package index), and measures:
- what was installed: packages, and the size of site-packages (pip itself left out);
- `python -X importtime -c "import runbase.client"`: the cumulative import time of
  `runbase.client` (median of N);
- the wall time of `runbase generate --help` (median of N).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_COUNTED = ("pip", "setuptools", "_distutils_hack", "distutils-precedence.pth")


def run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, cwd=cwd, check=True
    )
    return result.stdout + result.stderr


def export_source(ref: str | None, into: Path) -> Path:
    into.mkdir(parents=True)
    if ref is None:
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, into / name)
        shutil.copytree(ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = into.parent / f"{into.name}.tar"
        run("git", "-C", ROOT, "archive", "--output", archive, ref, "pyproject.toml",
            "README.md", "src")  # fmt: skip
        run("tar", "-xf", archive, "-C", into)
    return into


def site_packages_size(venv: Path) -> tuple[int, int]:
    [site] = venv.glob("lib/python*/site-packages")
    total = 0
    for path in site.rglob("*"):
        if path.is_file() and not path.relative_to(site).parts[0].startswith(NOT_COUNTED):
            total += path.stat().st_size
    return total, len(list(site.glob("*.dist-info"))) - len(list(site.glob("pip-*.dist-info")))


def import_ms(python: Path) -> float:
    trace = run(python, "-X", "importtime", "-c", "import runbase.client")
    [cumulative] = [
        int(match.group(1))
        for match in re.finditer(r"\|\s*(\d+) \|\s*runbase\.client$", trace, flags=re.MULTILINE)
    ]
    return cumulative / 1000


def wall_ms(*command: str | Path) -> float:
    started = time.perf_counter()
    run(*command)
    return (time.perf_counter() - started) * 1000


def measure(label: str, source: Path, work: Path, runs: int) -> dict[str, object]:
    wheels = work / f"{label}-wheels"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", wheels, source)  # fmt: skip
    [wheel] = wheels.glob("runbase-*.whl")
    venv = work / f"{label}-venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    started = time.perf_counter()
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    install_s = time.perf_counter() - started
    size, packages = site_packages_size(venv)
    run(python, "-c", "import runbase.client")  # warm the .pyc files once
    imports = [import_ms(python) for _ in range(runs)]
    helps = [wall_ms(venv / "bin" / "runbase", "generate", "--help") for _ in range(runs)]
    return {
        "packages": packages,
        "site_packages_mb": round(size / 1e6, 1),
        "install_s": round(install_s, 1),
        "import_runbase_client_ms": round(statistics.median(imports), 1),
        "generate_help_ms": round(statistics.median(helps), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = run("git", "-C", ROOT, "merge-base", "HEAD", "main").strip()
    parser.add_argument("--before", default=base, help="git ref of the package before")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runbase-install-") as tmp:
        work = Path(tmp)
        results = {
            f"before ({args.before[:10]})": measure(
                "before", export_source(args.before, work / "before"), work, args.runs
            ),
            "after (work tree)": measure(
                "after", export_source(None, work / "after"), work, args.runs
            ),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
