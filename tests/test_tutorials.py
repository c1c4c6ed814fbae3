"""The tutorials: each runs top to bottom at its small size **as a notebook** (jupytext ->
nbclient with a fresh ipykernel) and prints the numbers it discusses; each has the teaching
prompts (source to open, paper section, predict-then-run, "Your turn").

Every tutorial is executed as a Jupyter notebook, cell by cell, with
``MINIRES_TUTORIAL_SIZE=small`` and its figures going to a temporary directory; any cell
error fails the test.  (Without nbclient/ipykernel they run as scripts instead.)  Tutorial
01 also runs as a plain script, as a student would run it (``python tutorials/01_*.py``);
with ``--runslow`` every tutorial does.  The notebooks take about 50 s on 2 idle cores.
"""

import contextlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NAMES = sorted(path.name for path in TUTORIALS.glob("[0-9][0-9]_*.py"))


def _environment(out: Path, size: str = "small") -> dict:
    env = dict(os.environ)
    env.update(
        MINIRES_TUTORIAL_SIZE=size,
        MINIRES_TUTORIAL_OUT=str(out),
        MPLBACKEND="Agg",
        # One BLAS thread: identical numbers on every run, and no slowdown from
        # oversubscription when the test runner shares the machine.
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env


def run_tutorial(name: str, out: Path, size: str = "small") -> subprocess.CompletedProcess:
    """Run the tutorial as a script (``python tutorials/NAME``)."""
    return subprocess.run([sys.executable, str(TUTORIALS / name)], cwd=out,
                          env=_environment(out, size), capture_output=True, text=True,
                          timeout=600)


def notebooks_available() -> bool:
    return all(importlib.util.find_spec(m) for m in ("jupytext", "nbclient", "ipykernel"))


@contextlib.contextmanager
def _environ(env: dict):
    """``os.environ`` set to ``env`` for the duration (the kernel inherits it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execute_notebook(notebook, out: Path, size: str = "small") -> str:
    """Execute a jupytext notebook in a fresh ``python3`` kernel (this environment's
    ipykernel) with its working directory ``out``; return everything the cells printed.
    Raises nbclient's CellExecutionError, with the cell and its traceback, on an error."""
    import nbclient

    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(out)}})
    with _environ(_environment(out, size)):
        client.execute()
    return "".join(output.get("text", "") for cell in notebook.cells
                   for output in cell.get("outputs", []) if output.get("name") == "stdout")


def run_as_notebook(name: str, out: Path) -> str:
    import jupytext

    return execute_notebook(jupytext.read(TUTORIALS / name), out)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Run each tutorial once (lazily) as a notebook and keep (stdout, output directory)."""
    cache = {}

    def get(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(name.removesuffix(".py"))
            if notebooks_available():
                cache[name] = (run_as_notebook(name, out), out)
            else:
                result = run_tutorial(name, out)
                assert result.returncode == 0, (
                    f"{name} failed (exit {result.returncode})\n--- stdout (end)\n"
                    f"{result.stdout[-4000:]}\n--- stderr (end)\n{result.stderr[-4000:]}")
                cache[name] = (result.stdout, out)
        return cache[name]

    return get


def tutorial(prefix: str) -> str:
    matches = [name for name in NAMES if name.startswith(prefix)]
    assert len(matches) == 1, f"expected one tutorial {prefix}_*.py, found {matches}"
    return matches[0]


def number(pattern: str, text: str) -> float:
    """The float captured by ``pattern``'s first group (the pattern must occur)."""
    match = re.search(pattern, text)
    assert match, f"pattern {pattern!r} not found in the tutorial's output:\n{text[-3000:]}"
    return float(match.group(1).replace(",", "").rstrip("%"))


FLOAT = r"([-+]?[0-9][0-9,]*\.?[0-9]*(?:e[-+]?[0-9]+)?%?)"


def test_there_are_nine_tutorials():
    assert [name[:2] for name in NAMES] == [f"0{i}" for i in range(1, 10)]


def check_figures(out: Path, stdout: str, at_least: int = 1) -> None:
    written = re.findall(r"figure written: (\S+)", stdout)
    assert len(written) >= at_least
    for path in written:
        path = Path(path)
        assert path.parent == out and path.suffix == ".png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_01_autograd(outputs):
    stdout, out = outputs(tutorial("01"))
    assert number(r"\|autograd - hand\| = " + FLOAT, stdout) < 1e-12
    order = re.search(r"backward order: (.*)", stdout).group(1).split(" -> ")
    assert order[0] == "y" and order[-1] == "h" and sorted(order) == ["a", "c", "h", "y"]
    dydx = number(r"dy/dx = " + FLOAT, stdout)
    assert dydx == pytest.approx(number(r"formula 2\(e\^h \+ 2h\) = " + FLOAT, stdout))
    assert "gradcheck passed: True" in stdout
    assert "gradcheck of the scalar chain passed: True" in stdout
    assert "buggy backward: gradcheck passed = False" in stdout
    assert number(r"float64: best relative error " + FLOAT, stdout) < 1e-9
    assert number(r"received dy/dh = " + FLOAT, stdout) == pytest.approx(math.e + 2, rel=1e-4)
    assert re.search(r"^1\s+Add\s+2\s+a, c\s", stdout, re.MULTILINE)  # the trace's first row
    check_figures(out, stdout)


def test_02_vanishing_gradients(outputs):
    stdout, out = outputs(tutorial("02"))
    assert number(r"max sigma'\(z\) = " + FLOAT, stdout) == pytest.approx(0.25)
    assert number(r"chain-rule product vs autograd \(dy/db_1\): max \|difference\| = "
                  + FLOAT, stdout) < 1e-15
    assert re.search(r"bound .* holds in all \d+ chains: True", stdout)
    assert "✓ all 10 Sigmoid rows have in/out <= 1/4" in stdout
    assert number(r"from the hooks\): a10 " + FLOAT, stdout) == 1
    assert number(r"a1 " + FLOAT + r"\n", stdout) < 0.25 ** 9
    sigmoid = number(r"depth 20: sigmoid/Xavier ratio " + FLOAT, stdout)
    relu = number(r"relu/He ratio " + FLOAT, stdout)
    assert sigmoid < 1e-3  # vanishes
    assert 0.1 < relu < 10  # stays level
    check_figures(out, stdout, at_least=3)


def test_03_convolution_im2col(outputs):
    stdout, out = outputs(tutorial("03"))
    assert number(r"im2col matmul vs naive loops: max \|difference\| = " + FLOAT, stdout) == 0
    assert number(r"padding 1, im2col vs naive: max \|difference\| = " + FLOAT, stdout) == 0
    assert number(r"<x, col2im\(C\)> = \S+\s+\|difference\| = " + FLOAT, stdout) < 1e-10
    assert number(r"grad_x: by hand vs conv2d_backward, max \|difference\| = " + FLOAT,
                  stdout) < 1e-10
    assert number(r"grad_w: by hand vs conv2d_backward, max \|difference\| = " + FLOAT,
                  stdout) < 1e-10
    assert "conv2d gradcheck passed: True" in stdout
    assert "conv2d gradcheck with stride 2 passed: True" in stdout
    assert number(r"fast \(im2col\) vs naive: max \|difference\| = " + FLOAT, stdout) < 1e-10
    assert number(r"stride 2: fast vs naive max \|difference\| = " + FLOAT, stdout) < 1e-10
    assert "[[1. 2. 2. 1.]" in stdout  # copies per pixel without padding
    check_figures(out, stdout)


def test_04_batchnorm(outputs):
    stdout, out = outputs(tutorial("04"))
    assert number(r"BN backward \(compact formula\) vs central differences: relative error "
                  + FLOAT, stdout) < 1e-6
    assert number(r"compact formula vs kernel batch_norm_backward: max \|difference\| = "
                  + FLOAT, stdout) < 1e-10
    assert "batch_norm gradcheck passed: True" in stdout
    ones_error = number(r"all-ones upstream: .* buggy backward's max \|error\| = " + FLOAT,
                        stdout)
    random_error = number(r"random   upstream: .* buggy backward's max \|error\| = " + FLOAT,
                          stdout)
    assert ones_error < 1e-5 < 1e-1 < random_error
    means = re.search(r"running_mean: \[([^\]]*)\]", stdout).group(1).split()
    assert [float(v) for v in means] == pytest.approx([3.0, -1.0, 0.5], abs=0.3)
    assert number(r"train mode: .* outputs differ by " + FLOAT, stdout) > 0.01
    assert number(r"eval mode:  .* outputs differ by " + FLOAT, stdout) == 0
    assert "eval mode left running_mean unchanged: True" in stdout
    assert "batch of one sample: ValueError" in stdout
    check_figures(out, stdout)


def test_05_pooling_and_cnn(outputs):
    stdout, out = outputs(tutorial("05"))
    assert "[[0. 1. 0. 0.]" in stdout  # the max-pool gradient goes to the winner only
    assert "max_pool2d gradcheck passed: True" in stdout
    assert "total params:     9,122" in stdout
    first = number(r"training loss fell from " + FLOAT, stdout)
    last = number(r"training loss fell from \S+ to " + FLOAT, stdout)
    assert last < 0.5 * first
    assert number(r"test error " + FLOAT, stdout) < 50  # chance is 90%
    # 5.6: the student's kernels plugged in with minires.kernels.use() really ran ...
    assert number(r"your kernels ran: my_im2col " + FLOAT, stdout) > 0
    assert number(r"my_max_pool_backward " + FLOAT + r" times", stdout) > 0
    # ... and gave the built-in kernels' losses (float64: rounding only)
    assert number(r"largest relative difference of the losses: " + FLOAT, stdout) < 1e-10
    assert ("✓ your im2col and max-pool backward train the CNN as the built-in kernels do "
            "(8 steps, losses equal to rtol 1e-10)") in stdout
    check_figures(out, stdout)


def _losses_by_step(stdout: str) -> list[tuple[float, float]]:
    """Tutorial 05's table "step  built-in kernels  your kernels" as (built-in, yours)."""
    rows = re.findall(r"^\s+\d+\s+" + FLOAT + r"\s+" + FLOAT + r"$", stdout, re.MULTILINE)
    return [(float(a), float(b)) for a, b in rows]


def test_05_a_wrong_student_kernel_fails_the_check(tmp_path):
    """The mistake 5.6 suggests (i and j swapped in my_max_pool_backward) changes every
    loss but the first (the forward pass is untouched) and the check cell fails."""
    source = (TUTORIALS / tutorial("05")).read_text(encoding="utf-8")
    right = "grad[b, ch, p * stride + i, q * stride + j] += grad_y[b, ch, p, q]"
    assert source.count(right) == 1
    wrong = tmp_path / "05_wrong_kernel.py"
    wrong.write_text(source.replace(right, right.replace("+ i, q * stride + j",
                                                         "+ j, q * stride + i")),
                     encoding="utf-8")
    result = subprocess.run([sys.executable, str(wrong)], cwd=tmp_path,
                            env=_environment(tmp_path), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode != 0 and "AssertionError" in result.stderr, result.stderr[-2000:]
    assert "✓ your im2col" not in result.stdout
    rows = _losses_by_step(result.stdout)
    assert len(rows) == 8
    assert rows[0][0] == rows[0][1]
    assert all(abs(mine / built_in - 1) > 1e-4 for built_in, mine in rows[1:])


def test_06_degradation(outputs):
    stdout, out = outputs(tutorial("06"))
    assert re.search(r"plain20: 19 conv layers \+ 1 linear = 20 layers", stdout)
    assert re.search(r"plain56: 55 conv layers \+ 1 linear = 56 layers", stdout)
    for name in ("plain20", "plain56", "resnet56"):
        loss = number(rf"  {name}\s+loss " + FLOAT, stdout)
        error = number(rf"  {name}\s+loss \S+\s+error " + FLOAT, stdout)
        assert 0 < loss < 10 and 0 <= error <= 100
    assert number(r"plain56 at initialisation: \|\|dL/dW\|\| first conv " + FLOAT, stdout) > 0
    assert re.search(r"plain-56 training error \S+ vs plain-20 \S+: ", stdout)
    check_figures(out, stdout)


def test_07_residual_blocks(outputs):
    stdout, out = outputs(tutorial("07"))
    assert number(r"max \|block\(x\) - relu\(F\(x\) \+ x\)\| = " + FLOAT, stdout) == 0
    assert "one zero-init block: identity max |out - in| = 0.0\n" in stdout
    assert re.search(r"\d+ zero-init blocks: identity max \|out - in\| = 0\.0\n", stdout)
    assert "plain block, gamma = 0:      max |out| = 0.0\n" in stdout
    assert number(r"residual, zero-init γ : gradient at block 1 / at block \d+ = " + FLOAT,
                  stdout) == pytest.approx(1.0)
    assert re.search(r"option A\s+13,952\s+18,560\s+269,722", stdout)
    assert re.search(r"option B\s+14,528\s+18,560\s+272,474", stdout)
    assert re.search(r"option C\s+14,528\s+19,648\s+283,962", stdout)
    assert "the same as ResNet-20 with option A (True)" in stdout
    check_figures(out, stdout)


def test_08_resnet_end_to_end(outputs):
    stdout, out = outputs(tutorial("08"))
    assert number(r"max \|output difference\| = " + FLOAT, stdout) == 0
    assert "total params:     67,906" in stdout
    assert re.search(r"multiply-adds per stage: layer1 [\d,]+, layer2 [\d,]+, layer3 [\d,]+",
                     stdout)
    for name in ("resnet20", "plain20"):
        assert re.search(rf"{name}: training loss \S+ -> \S+, final test error \S+%", stdout)
    ratios = re.search(r"std\(F\(x\)\) / std\(x\) per block: (.*)", stdout).group(1).split()
    assert len(ratios) == 9
    assert ("the GPU cell was skipped" in stdout) or ("on the GPU" in stdout)
    check_figures(out, stdout)


def test_09_to_pytorch(outputs):
    stdout, out = outputs(tutorial("09"))
    assert (out / "resnet20.safetensors").stat().st_size > 0
    try:
        import torch  # noqa: F401  (the tutorial runs its PyTorch cells when this works)
        have_torch = True
    except ImportError:
        have_torch = False
    if have_torch:
        assert "state-dict keys equal: True (116 tensors" in stdout
        assert number(r"eval-mode logits: max relative difference = " + FLOAT, stdout) < 1e-5
        assert number(r"gradients \(float32\): max difference / largest gradient = " + FLOAT,
                      stdout) < 1e-3
        assert number(r"gradients \(float64\): max difference / largest gradient = " + FLOAT,
                      stdout) < 1e-10
        assert number(r"after a torch SGD step and from_torch: max relative logit "
                      r"difference = " + FLOAT, stdout) < 1e-5
        assert "ResNet-32: from_torch: the weights do not fit CifarResNet" in stdout
        assert number(r"load_state_dict\(strict=True\): max relative logit difference = "
                      + FLOAT, stdout) < 1e-5
    else:
        assert "torch is not installed: the PyTorch cells were skipped" in stdout
    try:
        import onnx  # noqa: F401
        assert number(r"ONNX reference evaluator vs minires: max relative difference = "
                      + FLOAT, stdout) < 1e-4
        assert re.search(r"ops .*Pad, Relu, Slice", stdout)
    except ImportError:
        assert "onnx is not installed: the ONNX cell was skipped" in stdout


def test_size_switch_rejects_unknown_sizes(tmp_path):
    result = run_tutorial(tutorial("01"), tmp_path, size="huge")
    assert result.returncode != 0
    assert "MINIRES_TUTORIAL_SIZE must be 'small' or 'normal'" in result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_converts_to_notebook(name):
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(TUTORIALS / name)
    ipynb = json.loads(jupytext.writes(notebook, fmt="ipynb"))
    kinds = Counter(cell["cell_type"] for cell in ipynb["cells"])
    assert kinds["markdown"] >= 5 and kinds["code"] >= 4, kinds
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert any(c.cell_type == "markdown" and "## What you saw" in c.source
               for c in notebook.cells)
    assert notebook.metadata["kernelspec"]["language"] == "python"


@pytest.mark.parametrize("name", NAMES)
def test_uses_the_size_switch_and_only_public_names(name):
    source = (TUTORIALS / name).read_text(encoding="utf-8")
    assert 'os.environ.get("MINIRES_TUTORIAL_SIZE", "normal")' in source
    assert 'os.environ.get("MINIRES_TUTORIAL_OUT", "tutorial-out")' in source
    private = re.findall(r"from minires[\w.]* import [^\n]*\b_\w+|minires(?:\.\w+)*\._\w+",
                         source)
    assert not private, f"{name} uses private names: {private}"


def test_readme_links_every_tutorial():
    readme = (TUTORIALS / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert f"({name})" in readme, f"tutorials/README.md does not link {name}"
    assert "MINIRES_TUTORIAL_SIZE" in readme and "exercises/" in readme


# ---------------------------------------------------------------------------- teaching prompts

#: The exercise each tutorial's "Your turn" asks for.
YOUR_TURN = {"01": "matmul_backward", "02": "sigmoid_backward", "03": "im2col",
             "04": "batchnorm_backward", "05": "max_pool_backward", "06": "sgd_momentum",
             "07": "basic_block_forward"}


def _cells(name):
    jupytext = pytest.importorskip("jupytext")
    return jupytext.read(TUTORIALS / name).cells


@pytest.mark.parametrize("name", NAMES)
def test_names_the_source_the_paper_and_asks_to_predict(name):
    cells = _cells(name)
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "**Open the source.**" in text and "1512.03385" in text and "§" in text
    opened = re.findall(r"`(minires/[\w/]+\.py)`", text)
    assert opened, f"{name} names no source file to open"
    for path in opened:
        assert (ROOT / path).is_file(), path
    prompts = [i for i, c in enumerate(cells)
               if c.cell_type == "markdown" and "**Predict" in c.source]
    assert prompts, f"{name} has no predict-then-run prompt"
    for i in prompts:  # a prompt, the cell that runs it, then a check
        following = [c.source for c in cells[i + 1:i + 3] if c.cell_type == "code"]
        assert following and any("assert " in src and "✓" in src for src in following), (
            name, cells[i].source[:60])


@pytest.mark.parametrize("prefix", sorted(YOUR_TURN))
def test_ends_with_your_turn(prefix):
    name = tutorial(prefix)
    cells = _cells(name)
    intro, stub, check = cells[-3:]
    exercise = YOUR_TURN[prefix]
    assert intro.cell_type == "markdown" and intro.source.startswith("## Your turn")
    assert f"tutorials/exercises/{exercise}.py" in intro.source
    assert stub.cell_type == "code" and "raise NotImplementedError" in stub.source
    assert check.cell_type == "code" and f'check("{exercise}", ' in check.source
    assert (TUTORIALS / "exercises" / f"{exercise}.py").is_file()


@pytest.mark.parametrize("prefix", sorted(YOUR_TURN))
def test_your_turn_and_the_predictions_ran(outputs, prefix):
    stdout, _ = outputs(tutorial(prefix))
    assert f"Exercise {YOUR_TURN[prefix]}:" in stdout
    assert "Result: FAIL (not started)" in stdout
    assert "✓" in stdout  # the check after the prediction


def test_your_turn_passes_with_a_correct_solution_in_the_notebook(tmp_path):
    """The 'Your turn' cells of tutorial 02 in a real kernel, the stub filled in."""
    if not notebooks_available():
        pytest.skip("needs jupytext, nbclient and ipykernel (the test extra)")
    import jupytext

    notebook = jupytext.read(TUTORIALS / tutorial("02"))
    notebook.cells = notebook.cells[-3:]
    stub = notebook.cells[1]
    stub.source = stub.source.replace("raise NotImplementedError",
                                      "return grad_y * y * (1 - y)")
    notebook.cells.append(jupytext.reads('print("passed:", result.passed, result.n_passed)',
                                         fmt="py:percent").cells[0])
    stdout = execute_notebook(notebook, tmp_path)
    assert "Result: PASS (all 6 checks passed)" in stdout and "passed: True 6" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runs_as_a_script(name, tmp_path):
    result = run_tutorial(name, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "figure written:" in result.stdout


def test_01_runs_as_a_script(tmp_path):
    result = run_tutorial(tutorial("01"), tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "gradcheck passed: True" in result.stdout and "✓" in result.stdout
