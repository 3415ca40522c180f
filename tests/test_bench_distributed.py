"""Scale-out: two CPU processes on gloo (torchrun) give the rows of one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_bench import TINY_SUITE, make_tiny_setup

from invdiff.bench import rows as rowio
from invdiff.bench.runner import run
from invdiff.bench.suite import load


def test_two_gloo_processes_equal_one(tmp_path):
    paths = make_tiny_setup(tmp_path)
    suite_file = tmp_path / "tiny.toml"
    suite_file.write_text(TINY_SUITE.format(**paths))

    one = tmp_path / "one"
    run(load(suite_file, limit=4), one, progress=False, figures=False)

    two = tmp_path / "two"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path]),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "invdiff", "bench", str(suite_file), "--out", str(two), "--limit", "4"]
    cmd += ["--quiet", "--no-figures"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    a = {rowio.row_key(r): r for r in rowio.read(one / "rows.jsonl")}
    b = {rowio.row_key(r): r for r in rowio.read(two / "rows.jsonl")}
    assert len(a) == 4 * 2 * 3 and set(a) == set(b)
    assert {r["rank"] for r in b.values()} == {0, 1}  # both ranks did work
    for key, ra in a.items():
        rb = b[key]
        assert rb["nfe"] == ra["nfe"]
        # (an exact reconstruction sits at the float floor, > 100 dB, where the last bits of
        # a thread-count-dependent FFT decide the value: compare PSNR up to 80 dB)
        assert min(rb["psnr"], 80) == pytest.approx(min(ra["psnr"], 80), rel=1e-4), key
        assert rb["ssim"] == pytest.approx(ra["ssim"], rel=1e-4, abs=1e-5), key
    assert not list(two.glob("rows.rank*.jsonl"))  # rank 0 merged the per-rank files
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["rows"] == len(a)
