"""Broken plugins, installed as a user would have them (entry points), through the CLI.

One plugin of each kind of breakage sits next to a working one. For each:
`ganzoo list`, `ganzoo plugins` and training another variant still work; the
error names the plugin and the problem; using the broken variant fails with
that message and exit code 2; GANZOO_LOAD_PLUGINS skips the broken plugin.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

GOOD = """
    import ganzoo

    class Good(ganzoo.TwoPlayerVariant):
        name = "zoo-good"
        paper = "test"
        summary = "least squares (bad-input test)"
        defaults = {**ganzoo.TwoPlayerVariant.defaults, "arch": "mlp"}

        def d_loss(self, r, f):
            return ((r - 1) ** 2).mean() + (f ** 2).mean()

        def g_loss(self, f):
            return ((f - 1) ** 2).mean()
"""

#: entry-point name -> (module source, the variant a user would ask for, expected problem)
BROKEN = {
    "importfail": ("import does_not_exist_zoo\n", "importfail",
                   "failed to load: ModuleNotFoundError: No module named 'does_not_exist_zoo'"),
    "raises": (GOOD + """
    @ganzoo.hookimpl
    def register_variants(register):
        raise RuntimeError("weights file missing")
    """, "raises", "register_variants: RuntimeError: weights file missing"),
    "taken": (GOOD + """
    class Again(Good):
        name = "dcgan"

    class Extra(Good):
        name = "taken-extra"

    @ganzoo.hookimpl
    def register_variants(register):
        register(Extra)
        register(Again)
    """, "taken-extra", "variant 'dcgan' is registered by both 'ganzoo.variants.dcgan' and 'taken'"),
    "notvariant": ("""
    import ganzoo

    class NotAVariant:
        name = "notvariant"

    @ganzoo.hookimpl
    def register_variants(register):
        register(NotAVariant)
    """, "notvariant", "which is not a subclass of ganzoo.Variant"),
    "incomplete": ("""
    import ganzoo

    class Incomplete(ganzoo.TwoPlayerVariant):
        name = "incomplete"
        paper = "test"
        summary = "forgot g_loss"

        def d_loss(self, r, f):
            return f.mean() - r.mean()

    @ganzoo.hookimpl
    def register_variants(register):
        register(Incomplete)
    """, "incomplete", "variant 'incomplete' does not implement: g_loss"),
}

def _install(site, module, entry_point, source):
    """A plugin package without pip: a module plus a dist-info with a ganzoo entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[ganzoo]\n{entry_point} = {module}\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    _install(site, "zoo_good", "good", GOOD + """
    @ganzoo.hookimpl
    def register_variants(register):
        register(Good)
    """)
    for entry_point, (source, _, _) in BROKEN.items():
        _install(site, f"zoo_{entry_point}", entry_point, source)
    return site


# Every CLI call runs in one fresh process per environment (plugins load once
# per process, as for a user), which keeps this file fast.
RUNNER = """
import contextlib, io, json, sys
from ganzoo.cli import main

results = {}
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    results[" ".join(args)] = {"code": code, "out": out.getvalue(), "err": err.getvalue()}
print(json.dumps(results))
"""


def run_cli(site, calls, load=None):
    """{"list --json": {"code", "out", "err"}, ...} for each argument list in ``calls``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("GANZOO_LOAD_PLUGINS", None)
    if load is not None:
        env["GANZOO_LOAD_PLUGINS"] = load
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(calls)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def cli(site, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "good"
    calls = [["list", "--json"], ["list"], ["plugins", "--json"], ["plugins"],
             ["train", "zoo-good", "--dataset", "8gaussians", "--steps", "2", "--quiet", "--batch-size", "16",
              "--out", str(run_dir), "--set", "toy_hidden=16"]]
    for _, variant, _ in BROKEN.values():
        calls += [["train", variant, "--steps", "1", "--quiet"], ["check", variant]]
    results = run_cli(site, calls)
    results["run_dir"] = run_dir
    return results


def test_list_shows_every_problem_and_the_working_plugins(cli):
    result = cli["list --json"]
    assert result["code"] == 0, result["err"]
    listing = json.loads(result["out"])
    names = [v["name"] for v in listing["variants"]]
    assert "zoo-good" in names and "dcgan" in names
    problems = {f["plugin"]: f["problem"] for f in listing["plugin_failures"]}
    for entry_point, (_, _, problem) in BROKEN.items():
        assert problem in problems[entry_point], (entry_point, problems)
    # All-or-nothing: the half-registered plugin keeps nothing.
    assert "taken-extra" not in names
    assert cli["list"]["code"] == 0 and "Plugin problems:" in cli["list"]["out"]


def test_plugins_command_lists_each_broken_plugin_with_its_error(cli):
    result = cli["plugins --json"]
    assert result["code"] == 0, result["err"]
    rows = {row["name"]: row for row in json.loads(result["out"])}
    assert rows["good"]["variants"] == ["zoo-good"] and rows["good"]["version"] == "0.3"
    assert rows["good"]["distribution"] == "zoo-good" and rows["good"]["errors"] == []
    for entry_point, (_, _, problem) in BROKEN.items():
        assert any(problem in e for e in rows[entry_point]["errors"]), rows[entry_point]
    failed = rows["importfail"]
    assert not failed["loaded"] and failed["distribution"] == "zoo-importfail" and failed["version"] == "0.3"
    text = cli["plugins"]["out"]
    assert "importfail  (zoo-importfail 0.3)  FAILED TO LOAD" in text
    assert "raises  (zoo-raises 0.3)  BROKEN" in text


def test_other_variants_still_train(cli):
    result = next(v for k, v in cli.items() if k.startswith("train zoo-good"))
    assert result["code"] == 0, result["err"]
    assert (cli["run_dir"] / "samples" / "final.png").exists()


@pytest.mark.parametrize("entry_point", list(BROKEN))
def test_training_the_broken_variant_fails_with_the_plugin_and_problem(cli, entry_point):
    _, variant, problem = BROKEN[entry_point]
    result = cli[f"train {variant} --steps 1 --quiet"]
    assert result["code"] == 2
    err = result["err"].strip()
    assert err.count("\n") == 0, err
    assert f"'{entry_point}'" in err and problem in err, err


@pytest.mark.parametrize("entry_point", list(BROKEN))
def test_check_names_the_broken_plugin(cli, entry_point):
    _, variant, problem = BROKEN[entry_point]
    result = cli[f"check {variant}"]
    assert result["code"] == 2
    err = result["err"].strip()
    assert err.count("\n") == 0, err
    assert f"plugin '{entry_point}'" in err and problem in err, err


def test_load_plugins_env_skips_the_broken_ones(site):
    results = run_cli(site, [["plugins", "--json"], ["list", "--json"]], load="good")
    rows = {row["name"]: row for row in json.loads(results["plugins --json"]["out"])}
    assert list(rows) == ["good"] and rows["good"]["errors"] == []
    listing = json.loads(results["list --json"]["out"])
    assert listing["plugin_failures"] == []
    assert "zoo-good" in [v["name"] for v in listing["variants"]]
