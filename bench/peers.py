#!/usr/bin/env python3
"""`make bench-peers`: onefile against PyInstaller on a small Python app.

Creates a venv, installs PyInstaller from PyPI, freezes the same hello-world
app `--onefile` and `--onedir`, packs the onedir folder with `payload-tools
pack`, and compares warm launches of the three (interleaved runs, medians),
plus the first (cold) launch of each one-file form.

Environment: BIN_DIR (default target/release), BENCH_DIR (default
bench-work/peers), RUNS (default 40).
"""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (shares the measuring helpers)

WORK = os.path.abspath(os.environ.get("BENCH_DIR", "bench-work/peers"))
RUNS = int(os.environ.get("RUNS", "40"))


def main():
    bench.WORK = WORK
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    venv = os.path.join(WORK, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = os.path.join(venv, "bin", "pip")
    subprocess.run([pip, "install", "-q", "pyinstaller"], check=True)
    version = subprocess.run([os.path.join(venv, "bin", "pyinstaller"), "--version"],
                             check=True, capture_output=True, text=True).stdout.strip()
    app = os.path.join(WORK, "app")
    os.makedirs(app)
    with open(os.path.join(app, "hello.py"), "w") as f:
        f.write('import sys\nprint("hello from Python", sys.version.split()[0])\n')
    pyi = os.path.join(venv, "bin", "pyinstaller")
    for mode, name in (("--onefile", "hello-onefile"), ("--onedir", "hello")):
        subprocess.run([pyi, "--log-level", "WARN", mode, "--name", name, "hello.py"], cwd=app, check=True)
    dist = os.path.join(app, "dist")
    onefile = os.path.join(dist, "hello-onefile")
    onedir = os.path.join(dist, "hello", "hello")
    packed = os.path.join(WORK, "hello.bin")
    subprocess.run([bench.TOOLS, "pack", os.path.join(dist, "hello"), "--entry", "hello", "--name", "hello",
                    "-o", packed], check=True, stderr=subprocess.DEVNULL)
    cache = os.path.join(WORK, "cache")
    env = dict(os.environ, ONEFILE_CACHE_DIR=cache)
    env.pop("AUTO_UPDATE_DEBUG", None)

    # First launches: PyInstaller's onefile always extracts; ours only once.
    shutil.rmtree(cache, ignore_errors=True)
    cold = bench.run_measured([packed], env=env)[0]
    bench.row("first launch, packed (unpacks once)", f"{cold*1e3:.0f} ms", "-", "-", "-")

    t = bench.interleaved(
        {
            "onedir": lambda: bench.run_measured([onedir], env=env)[0],
            "packed": lambda: bench.run_measured([packed], env=env)[0],
            "onefile": lambda: bench.run_measured([onefile], env=env)[0],
        },
        RUNS,
    )
    bench.row("warm launch: onefile packed vs PyInstaller --onedir", f"{t['packed']*1e3:.1f} ms",
              f"{t['onedir']*1e3:.1f} ms", "<= 1.05x", f"{t['packed']/t['onedir']:.3f}x")
    bench.row("warm launch: PyInstaller --onefile vs onefile packed", f"{t['onefile']*1e3:.1f} ms",
              f"{t['packed']*1e3:.1f} ms", "several times slower", f"{t['onefile']/t['packed']:.1f}x")
    print(f"\nPyInstaller {version}, {RUNS} interleaved runs each, medians\n")
    print("| case | onefile / first | baseline | goal | result |\n|---|---|---|---|---|")
    for r in bench.ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
