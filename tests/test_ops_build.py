"""Building the fused ops: lazy, cached by content, locked, and a failed build
that warns once and falls back to the reference. Plus `ganzoo ops` and the
benchmark module on tiny cases.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import ganzoo
from ganzoo.cli import main
from ganzoo.errors import GanzooError
from ganzoo.ops import FusedOpsWarning, _build, backend, bench, fused_leaky_relu, gradient_penalty, leaky_relu_ref


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


@pytest.fixture
def fresh_ops(monkeypatch, tmp_path):
    """An empty ops cache and no loaded extension; restored afterwards."""
    monkeypatch.setenv("GANZOO_OPS_CACHE", str(tmp_path / "ops"))
    monkeypatch.delenv("GANZOO_OPS", raising=False)
    backend.reset()
    yield tmp_path / "ops"
    backend.reset()


def test_nothing_is_compiled_at_import(tmp_path):
    cache = tmp_path / "ops"
    result = _run(
        "import ganzoo, ganzoo.ops, ganzoo.nets, ganzoo.cli\n"
        "from ganzoo.nets import ConvDiscriminator\n"
        "ConvDiscriminator((1, 8, 8), 4, norm='none')\n"
        "ganzoo.cli.build_parser()\n"
        "from ganzoo.ops import _build\n"
        "assert _build.loaded() is None\n",
        GANZOO_OPS_CACHE=str(cache))
    assert result.returncode == 0, result.stderr
    assert not cache.exists()


def test_forced_build_failure_warns_once_and_uses_the_reference(fresh_ops, monkeypatch):
    # A missing forced include makes every compile fail at once.
    monkeypatch.setattr(_build, "EXTRA_CXX_FLAGS", ["-include", "ganzoo-forced-build-failure.h"])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    b = torch.randn(3, generator=g, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = fused_leaky_relu(x, b)
        dx, db = torch.autograd.grad(y.sum(), (x, b))
        y2 = fused_leaky_relu(x, b)
        penalty, _ = gradient_penalty(lambda t: t.flatten(1).sum(1), x, x.flip(0), eps=torch.rand(2))
    failures = [w for w in caught if issubclass(w.category, FusedOpsWarning)]
    assert len(failures) == 1, [str(w.message) for w in caught]
    message = str(failures[0].message)
    assert "could not be built" in message and "GANZOO_OPS=ref" in message
    log = Path(message.split("Build log: ")[1].split(". ")[0])
    assert log.is_file() and "ganzoo-forced-build-failure.h" in log.read_text()
    assert log.is_relative_to(fresh_ops)

    expected = leaky_relu_ref(x, b)
    ex, eb = torch.autograd.grad(expected.sum(), (x, b))
    assert torch.equal(y, expected) and torch.equal(y2, expected)
    assert torch.equal(dx, ex) and torch.equal(db, eb)
    torch.testing.assert_close(penalty, torch.tensor(10.0 * (48 ** 0.5 - 1) ** 2))

    cpu = [c for c in backend.report(build=False) if c.device == "cpu"]
    assert {c.backend for c in cpu} == {"ref"}
    assert all("build failed" in c.reason and str(log) in c.reason for c in cpu)

    monkeypatch.setenv("GANZOO_OPS", "native")  # forcing the kernels is an error now
    with pytest.raises(GanzooError, match="GANZOO_OPS=native.*build failed"):
        fused_leaky_relu(x, b)


def test_build_is_cached_by_content_and_reused_by_other_processes(tmp_path, monkeypatch):
    ext = _build.extension()
    assert ext.module is not None, ext.error
    if ext.origin == "prebuilt":
        pytest.skip("an ahead-of-time build is installed")
    folder = ext.location
    # ganzoo_ops_cpu_* with a CPU torch, ganzoo_ops_cuda_* where torch and a toolkit have CUDA.
    assert folder.name.startswith(("ganzoo_ops_cpu_", "ganzoo_ops_cuda_")) and (folder / "complete").is_file()
    result = _run("from ganzoo.ops import _build\n"
                  "e = _build.extension(build=False)\n"
                  "print(e.origin, e.location)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cached", str(folder)]
    assert "compiling" not in result.stderr

    # Any change of a source gives another folder (and a rebuild there).
    copy = tmp_path / "csrc"
    shutil.copytree(_build.source_dir(), copy)
    with open(copy / "fused_ops.h", "a") as fh:
        fh.write("// changed\n")
    name_before = _build._spec(False)[0]
    monkeypatch.setattr(_build, "source_dir", lambda: copy)
    assert _build._spec(False)[0] != name_before


def test_ref_mode_builds_nothing(tmp_path):
    cache = tmp_path / "ops"
    result = _run("import torch\n"
                  "from ganzoo.ops import fused_leaky_relu, gradient_penalty\n"
                  "x = torch.randn(2, 3, 4, requires_grad=True)\n"
                  "fused_leaky_relu(x, torch.zeros(3)).sum().backward()\n"
                  "gradient_penalty(lambda t: t.sum((1, 2)), x, x + 1)\n",
                  GANZOO_OPS="ref", GANZOO_OPS_CACHE=str(cache))
    assert result.returncode == 0, result.stderr
    assert not cache.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl")
def test_build_lock_excludes_other_processes(tmp_path):
    lock = tmp_path / "x.lock"
    probe = ("import fcntl, sys\n"
             f"f = open({str(lock)!r}, 'a+b')\n"
             "try:\n    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except OSError:\n    sys.exit(3)\n")
    with _build._file_lock(lock):
        assert _run(probe).returncode == 3
    assert _run(probe).returncode == 0


def test_sources_ship_inside_the_package():
    package_dir = Path(ganzoo.__file__).resolve().parent
    folder = _build.source_dir()
    for name in _build.CPU_SOURCES + _build.CUDA_SOURCES + _build.HEADERS:
        assert (folder / name).is_file(), name
    # The package's own path to them (package data in a wheel; a link in a checkout).
    assert all((package_dir / "ops" / "csrc" / name).is_file() for name in _build.CPU_SOURCES)


def test_ops_command(capsys):
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "GANZOO_OPS=auto" in out
    for op in backend.OPS:
        assert op in out
    assert main(["ops", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cpu = {r["op"]: r for r in data["ops"] if r["device"] == "cpu"}
    assert set(cpu) == set(backend.OPS)
    assert all(r["backend"] in ("cpu", "ref") and r["reason"] for r in cpu.values())


def test_ops_command_rejects_a_bad_mode(monkeypatch, capsys):
    monkeypatch.setenv("GANZOO_OPS", "fast")
    assert main(["ops", "--no-build"]) == 2
    assert "GANZOO_OPS='fast' is not a mode" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_bench_on_cuda_without_a_gpu_is_a_one_line_error(capsys):
    assert main(["bench", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_bench_module_on_tiny_cases():
    settings = bench.Settings(sizes=(2**12,), critics=("mlp256",), warmup=0, repeats=2,
                              critic_repeats=1, kernel_size=2**12)
    results = bench.run(settings)
    assert results.copy_GBps > 0
    assert len(results.op_chain) == 2 * len(bench.MODES) and len(results.kernels) == 7
    assert all(row["ratio"] > 0 for row in results.op_chain)
    (critic,) = results.critic
    assert critic["max_rel_grad_diff"] < 1e-5
    assert critic["conv_backward_in_penalty_pass"] == {"ref": 0, "fused": 0}
    text = bench.to_markdown(results)
    assert "| fwd+bwd+dbwd | 2^12 | float32 | channels_last |" in text and "torch 2" in text
    json.dumps(asdict(results))


def _results(**environment):
    timing = {"median": 1e-3, "p10": 0.9e-3, "p90": 1.1e-3, "runs": 5}
    noisy = {"median": 1e-3, "p10": 0.5e-3, "p90": 3e-3, "runs": 5}
    env = {"device": "cpu", "device_name": "x", "threads": 1, "cpu_count": 2, "torch": "2", "cuda": None,
           "python": "3", "date": "d", "backend": {}, "other_busy_processes": 0,
           "load_average_start": 0.1, "load_average_end": 0.2, **environment}
    results = bench.Results(environment=env, settings={"kernel_size": 2**12}, copy_GBps=10.0)
    results.kernels = [{"kernel": "k", "n": 2**12, "dtype": "float32", "time": timing, "GBps": 9.0, "pct_copy": 90.0}]
    results.op_chain = [{"mode": "fwd", "n": 2**12, "dtype": "float32", "layout": "nchw", "ref": timing,
                         "fused": noisy, "ratio": 1.0, "fused_GBps": 1.0, "fused_pct_copy": 30237.0}]
    return results


def test_bench_says_when_its_figures_cannot_be_trusted():
    quiet = _results()
    quiet.op_chain = []
    assert bench.cautions(quiet) == []
    busy = _results(other_busy_processes=2, load_average_start=2.5)
    found = bench.cautions(busy)
    assert len(found) == 3
    assert found[0].startswith("the machine was busy (load average 2.50 to 0.20 on 2 CPUs; 2 other")
    assert "marked 'noisy'" in found[1] and "op chain fwd float32 nchw fused" in found[1]
    assert "above 150% of the copy bandwidth" in found[2]
    busy.cautions = found
    text = bench.to_markdown(busy)
    assert text.count("**Caution:**") == 3 and "30237% (!)" in text and "| 1 (0.5-3) noisy |" in text
    assert "| 90% |" in text  # a plausible figure is printed plain


def test_bench_times_the_critic_steps_faster_paths_with_their_gradients():
    """On a CPU the conv critic gets the channels_last path (the CUDA-only ones are left out), timed
    in the same rounds, its gradients equal to the eager reference's to the stated tolerance."""
    settings = bench.Settings(sizes=(2**12,), critics=("dcgan32", "mlp256"), warmup=0, repeats=1,
                              critic_repeats=1, kernel_size=2**12)
    rows = {row["critic"]: row for row in bench.bench_critic(settings)}
    assert "faster_paths" not in rows["mlp256"]  # no path applies to an MLP on a CPU
    (path,) = rows["dcgan32"]["faster_paths"].items()
    name, entry = path
    assert name == "channels_last"
    # Against the stock critic in the same layout: rounding only. The layout's own effect (torch's
    # channels_last convolutions against its NCHW ones) is reported beside it, not held to a bound.
    assert entry["max_rel_grad_diff"] < bench.FP32_GRAD_TOLERANCE
    assert entry["layout_grad_diff"] >= 0
    assert entry["ratio_to_ref"] > 0 and entry["time"]["runs"] == 1
    assert any(line.startswith("| dcgan32 | channels_last |") for line in bench._faster_paths_table(list(rows.values())))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_captured_critic_step_replays_the_eager_step_on_new_inputs():
    critic, shape, batch = bench.make_critic("dcgan32")
    critic = critic.cuda()
    eager = copy.deepcopy(critic)
    g = torch.Generator(device="cuda").manual_seed(0)
    real, fake = (torch.randn(batch, *shape, generator=g, device="cuda") for _ in range(2))
    eps = torch.rand(batch, generator=g, device="cuda")
    replay = bench.capture_critic_step(critic, real, fake, eps)
    for _ in range(2):  # new data copied into the static inputs, then replayed
        for t in (real, fake):
            t.copy_(torch.randn(t.shape, generator=g, device="cuda"))
        eps.copy_(torch.rand(eps.shape, generator=g, device="cuda"))
        loss = replay()
        expected = bench.critic_step(eager, real, fake, eps, "auto")
        assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)
        assert bench.grad_difference(critic, eager) < bench.FP32_GRAD_TOLERANCE
    assert replay.peak_bytes > 0
