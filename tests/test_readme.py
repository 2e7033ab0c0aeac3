"""The README's promises: its first two commands, and every example command in the Use section, run."""

import re
import shlex
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_opens_with_the_two_commands():
    block = README.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block[0] == "pip install . && vramplan llama-3.1-70b"
    assert block[1] == "pip install '.[test]' && python -m pytest"


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "pip install '.[test]' && python -m pytest" in ci


def _examples():
    use = README.split("## Use", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    out = []
    for line in use.splitlines():
        cmd = line.split("#", 1)[0].strip()
        for part in cmd.split(" | "):
            part = part.strip()
            if part.startswith("vramplan ") and not part.startswith(("vramplan serve", "vramplan measure")):
                out.append(part)
    return out


@pytest.mark.parametrize("cmd", _examples())
def test_readme_examples_run(run_cli, cmd):
    code, out, err = run_cli(*shlex.split(cmd)[1:])
    assert code in (0, 1) and "Traceback" not in err, err  # fit exits 1 only when nothing fits
    assert out.strip(), cmd


def test_readme_python_api():
    import vramplan

    mem = vramplan.plan_inference("llama-3.1-8b", max_model_len="8k", quantization="awq")["memory"]
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    assert vramplan.count_params(vramplan.load_model("qwen3-30b-a3b").spec).active == 3_353_032_704
