"""The wheel is the plugin too: built from the repository, installed into a
fresh virtualenv, registered with one command, FiftyOne lists its operators."""

import os
import re
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_built_wheel_registers_as_a_plugin_with_every_operator(tmp_path):
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), ROOT])
    (wheel,) = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin" / "python")
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    # the dependencies come from the test's own environment, but not the editable checkout
    with open(os.path.join(site, "deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, str(tmp_path / wheel)])

    plugins = tmp_path / "plugins"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the wheel, not a checkout on the path
    env["FIFTYONE_PLUGINS_DIR"] = str(plugins)
    out = _run([python, "-m", "fiftyone_csl", "register"], env=env, cwd=tmp_path)
    assert "registered" in out
    listing = _run(
        [python, "-c", (
            "import fiftyone_csl, fiftyone.operators as foo\n"
            "print(fiftyone_csl.__file__)\n"
            "print(sorted(o.name for o in foo.list_operators() if o.plugin_name == '@fiftyone-csl/csl'))"
        )],
        env=env, cwd=tmp_path,
    )  # fmt: skip
    installed, names = listing.strip().splitlines()[-2:]
    assert installed.startswith(site), f"the test imported {installed}, not the wheel"
    yml = open(os.path.join(ROOT, "fiftyone.yml")).read()
    declared = re.findall(r"^  - (\S+)", yml.split("panels:")[0], re.M)
    assert sorted(eval(names)) == sorted(declared + ["csl_timeline"])

    # registering twice is harmless; an entry that is not ours is refused and kept
    _run([python, "-m", "fiftyone_csl", "register"], env=env, cwd=tmp_path)
    _run([python, "-m", "fiftyone_csl", "unregister"], env=env, cwd=tmp_path)
    assert not os.path.lexists(plugins / "fiftyone-csl")
    (plugins / "fiftyone-csl").mkdir()
    refused = subprocess.run([python, "-m", "fiftyone_csl", "register"], env=env, cwd=tmp_path, capture_output=True)
    assert refused.returncode != 0 and (plugins / "fiftyone-csl").is_dir()
