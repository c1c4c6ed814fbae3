"""The exercises and ``python -m minires check``: untouched stubs, planted bugs, correct
solutions (tests/exercise_solutions/), --list, and friendly reports for broken files."""

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minires.__main__ import main
from minires.exercises import check, get_exercise, load_catalog, sandbox

SOLUTIONS = Path(__file__).parent / "exercise_solutions"
STUBS = Path(__file__).resolve().parents[1] / "tutorials" / "exercises"
EXERCISES, BROKEN = load_catalog()
NAMES = [e.name for e in EXERCISES]

# Planted bug -> words the report must contain (the specific hint, and the mismatch).
WRONG = {
    "wrong_sigmoid_backward_not_weighted.py":
        ("sigmoid_backward", "multiplies it by the upstream gradient", "first difference at"),
    "wrong_matmul_backward_not_summed.py":
        ("matmul_backward", "SUM of the gradients of all its copies",
         "grad_b has shape (2, 4, 5), expected (4, 5)"),
    "wrong_im2col_off_by_one.py":
        ("im2col", "the + 1 counts the first window position", "cols has shape (1, 4), "
                                                               "expected (4, 4)"),
    "wrong_im2col_channel_first.py":
        ("im2col", "minires puts the channel LAST", "first difference at cols["),
    "wrong_col2im_overwrite.py":
        ("col2im", "ADD each copy's value (+=)", "first difference at x["),
    "wrong_conv2d_backward_weight_layout.py":
        ("conv2d_backward", "transpose(0, 3, 1, 2)", "first difference at grad_weight["),
    "wrong_max_pool_backward_ties_last.py":
        ("max_pool_backward", "it must go to the FIRST in row-major order",
         "first difference at grad_x["),
    "wrong_batchnorm_backward_stats_constant.py":
        ("batchnorm_backward", "treated the batch mean and variance as constants",
         "first difference at grad_x["),
    "wrong_batchnorm_running_stats_not_updated.py":
        ("batchnorm_running_stats", "running statistics came back unchanged",
         "first difference at running_mean["),
    "wrong_batchnorm_running_stats_biased.py":
        ("batchnorm_running_stats", "tracks the UNBIASED batch variance",
         "first difference at running_var["),
    "wrong_basic_block_forward_pad_both_sides.py":
        ("basic_block_forward", "appends the zero channels after them", "first difference at y["),
    "wrong_basic_block_forward_relu_before_add.py":
        ("basic_block_forward", "the last ReLU comes AFTER the addition",
         "first difference at y["),
    "wrong_sgd_momentum_no_weight_decay.py":
        ("sgd_momentum", "weight decay is missing", "first difference at param["),
}


def _check(name, path=None, directory=None, catalogs=()):
    out = io.StringIO()
    report = check(name, path, out=out, directory=directory, catalogs=catalogs)
    return report, out.getvalue()


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------- the catalog


def test_catalog_has_the_exercises_and_their_stubs():
    assert not BROKEN
    assert len(NAMES) >= 9 and len(set(NAMES)) == len(NAMES)
    assert {"sigmoid_backward", "matmul_backward", "im2col", "col2im", "conv2d_backward",
            "max_pool_backward", "batchnorm_backward", "batchnorm_running_stats",
            "basic_block_forward", "sgd_momentum"} <= set(NAMES)
    for exercise in EXERCISES:
        stub = STUBS / exercise.stub
        assert exercise.stub_path().resolve() == stub.resolve()
        text = stub.read_text()
        assert f"def {exercise.function}(" in text and "raise NotImplementedError" in text
        function = sandbox.load_function(stub, exercise.function)
        assert function.__doc__ and "Returns" in function.__doc__, exercise.name
        # every exercise has a correct solution and at least one planted bug in the tests
        assert (SOLUTIONS / f"correct_{exercise.name}.py").is_file()
        assert any(v[0] == exercise.name for v in WRONG.values()), exercise.name


def test_cases_cover_edge_cases():
    labels = " | ".join(c.label for e in EXERCISES for c in e.cases(np.random.default_rng(0)))
    for words in ("stride 2", "padding 1", "(1, ", "with ties", "float32", "first step"):
        assert words in labels


# ---------------------------------------------------------------------------- stubs


@pytest.mark.parametrize("name", NAMES)
def test_untouched_stub_is_not_implemented(name):
    exercise = get_exercise(name)
    report, text = _check(name)
    assert report.status == "not started" and not report.ok
    expected = f"not implemented yet: fill in {exercise.function}() in "
    assert expected in text and exercise.stub in text and "Result: FAIL (not started)" in text


# ---------------------------------------------------------------------------- solutions


@pytest.mark.parametrize("name", NAMES)
def test_correct_solution_passes(name):
    path = SOLUTIONS / f"correct_{name}.py"
    report, text = _check(name, path)
    assert report.ok, text
    assert report.total >= 5 and "FAIL" not in text
    assert f"Result: PASS (all {report.total} checks passed)" in text


@pytest.mark.parametrize("filename", sorted(WRONG))
def test_planted_bug_fails_with_a_helpful_message(filename):
    name, hint, mismatch = WRONG[filename]
    report, text = _check(name, SOLUTIONS / filename)
    assert not report.ok and report.status == "failing", text
    assert hint in " ".join(text.split()), text  # hints are wrapped over several lines
    assert mismatch in text
    assert "Result: FAIL" in text and "Traceback" not in text


def test_exit_codes_of_the_check_command(capsys):
    """0 only when every check passed: a stub, a correct and a wrong solution."""
    assert main(["check", "sigmoid_backward"]) == 1
    printed = capsys.readouterr()
    assert "Result: FAIL (not started)" in printed.out
    assert "Traceback" not in printed.out + printed.err
    path = SOLUTIONS / "correct_sigmoid_backward.py"
    assert main(["check", "sigmoid_backward", "--file", str(path)]) == 0
    assert "Result: PASS (all " in capsys.readouterr().out
    path = SOLUTIONS / "wrong_sigmoid_backward_not_weighted.py"
    assert main(["check", "sigmoid_backward", "--file", str(path), "--timeout", "5"]) == 1
    assert "Result: FAIL" in capsys.readouterr().out
    assert main(["check", "sigmoid_backward", "--timeout", "-1"]) == 2
    assert "--timeout must be a positive number" in capsys.readouterr().err


def test_mismatch_report_names_index_expected_got_and_relative_error():
    report, text = _check("max_pool_backward", SOLUTIONS / "wrong_max_pool_backward_ties_last.py")
    failed = next(r for r in report.results if not r.passed)
    line = failed.lines[0]
    assert line.startswith("first difference at grad_x[") and "expected" in line
    assert "got" in line and "values of grad_x differ" in line
    assert ("relative error" in line) or ("absolute error" in line)
    assert failed.kind == "ties_last"
    # the tie-free cases and the gradient check pass: only ties are wrong
    assert any(r.passed and r.label.startswith("gradcheck") for r in report.results)


def test_gradcheck_runs_on_the_students_backward():
    report, text = _check("conv2d_backward", SOLUTIONS / "wrong_conv2d_backward_weight_layout.py")
    grad = report.results[-1]
    assert grad.label.startswith("gradcheck") and not grad.passed
    assert any("dL/dweight: relative error" in line for line in grad.lines)
    assert "numerical" in text


# ---------------------------------------------------------------------------- --list


def test_list_shows_every_exercise_with_its_status(tmp_path, capsys):
    assert main(["check", "--list"]) == 1  # the stubs: nothing passes yet
    out = capsys.readouterr().out
    for name in NAMES:
        line = next(line for line in out.splitlines() if line.split()[:1] == [name])
        assert "not started" in line
    assert f"0 of {len(NAMES)} passing" in out

    for name in NAMES:  # a student folder with every exercise solved ...
        shutil.copy(SOLUTIONS / f"correct_{name}.py", tmp_path / get_exercise(name).stub)
    assert main(["check", "--list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(NAMES)} of {len(NAMES)} passing" in out

    # ... then one wrong, one missing, one that does not even load
    shutil.copy(SOLUTIONS / "wrong_col2im_overwrite.py", tmp_path / "col2im.py")
    (tmp_path / "im2col.py").unlink()
    (tmp_path / "sgd_momentum.py").write_text("def sgd_momentum_step(:\n")
    assert main(["check", "--list", "--dir", str(tmp_path)]) == 1
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert "failing (2/8)" in lines["col2im"]
    assert "not started (no file)" in lines["im2col"]
    assert "failing (cannot load)" in lines["sgd_momentum"]
    assert "passing" in lines["conv2d_backward"]


# ---------------------------------------------------------------------------- broken files


def test_syntax_error_is_reported_without_traceback(tmp_path, capsys):
    path = _write(tmp_path, "student.py", "import numpy as np\n\n\ndef im2col(x, kernel_h\n"
                                          "    return x\n")
    assert main(["check", "im2col", "--file", str(path)]) == 1
    out = capsys.readouterr().out
    assert "cannot load" in out and "SyntaxError" in out and "student.py:4" in out
    assert "Traceback" not in out


def test_exception_shows_type_message_and_the_students_line(tmp_path, capsys):
    path = _write(tmp_path, "student.py", (
        "import numpy as np\n\n\n"
        "def helper(cols):\n"
        "    return cols.reshape(3, 5, 7)\n\n\n"
        "def col2im(cols, x_shape, kernel_h, kernel_w, stride=1, padding=0):\n"
        "    return helper(cols)\n"))
    assert main(["check", "col2im", "--file", str(path)]) == 1
    out = capsys.readouterr().out
    assert "ValueError: cannot reshape array" in out
    assert "student.py:5:  return cols.reshape(3, 5, 7)" in out
    assert "Traceback" not in out and "site-packages" not in out


def test_error_while_importing_the_file(tmp_path):
    path = _write(tmp_path, "student.py", "import numpy as np\nx = np.ones(3) @ np.ones(4)\n")
    report, text = _check("sigmoid_backward", path)
    assert report.status == "cannot load" and "ValueError" in text and "student.py:2" in text


def test_wrong_return_values_are_explained(tmp_path):
    path = _write(tmp_path, "student.py", (
        "import numpy as np\n\n\n"
        "def conv2d_backward(grad_y, x, weight, stride=1, padding=0):\n"
        "    if x.shape[0] == 1:\n"
        "        return None\n"
        "    if x.dtype == np.float32:\n"
        "        from minires.kernels.conv import conv2d_backward as ref\n"
        "        gx, gw, gb = ref(grad_y, x, weight, stride, padding)\n"
        "        return gx.astype(np.float64), gw, gb\n"
        "    return np.zeros_like(x)\n"))
    report, text = _check("conv2d_backward", path)
    assert "returned None, expected 3 results (grad_x, grad_weight, grad_bias)" in text
    assert "did you forget the `return` statement?" in text
    assert "returned a single ndarray, expected a tuple of 3 results" in text
    assert "grad_x has dtype float64, expected float32" in text

    shape = _write(tmp_path, "shape.py", "def sigmoid_backward(grad_y, y):\n"
                                         "    return (grad_y * y * (1 - y)).T\n")
    report, text = _check("sigmoid_backward", shape)
    assert "grad_x has shape (4, 3), expected (3, 4)" in text


def test_partly_implemented_wrong_signature_and_sibling_imports(tmp_path):
    partial = _write(tmp_path, "partial.py", (
        "from minires.kernels.conv import im2col as minires_im2col\n\n\n"
        "def im2col(x, kernel_h, kernel_w, stride=1, padding=0):\n"
        "    if padding:\n"
        "        raise NotImplementedError\n"
        "    return minires_im2col(x, kernel_h, kernel_w, stride)\n"))
    report, text = _check("im2col", partial)
    assert report.status == "failing" and 0 < report.n_passed < report.total
    assert "not implemented yet: fill in im2col()" in text

    signature = _write(tmp_path, "signature.py", "def im2col(x, kernel_h, kernel_w):\n"
                                                 "    return x\n")
    report, text = _check("im2col", signature)
    assert "TypeError" in text and "keep the function's name and arguments" in text

    # a solution may import the student's own solution of another exercise
    shutil.copy(SOLUTIONS / "correct_im2col.py", tmp_path / "im2col.py")
    own = (SOLUTIONS / "wrong_conv2d_backward_weight_layout.py").read_text().replace(
        "from minires.kernels.conv import col2im, im2col",
        "from im2col import im2col\n\nfrom minires.kernels.conv import col2im").replace(
        ".reshape(c_out, c, kh, kw)", ".reshape(c_out, kh, kw, c).transpose(0, 3, 1, 2)")
    (tmp_path / "conv2d_backward.py").write_text(own)
    report, text = _check("conv2d_backward", directory=tmp_path)
    assert report.ok, text


def test_missing_file_missing_function_and_unknown_exercise(tmp_path, capsys):
    report, text = _check("im2col", tmp_path / "nope.py")
    assert report.status == "cannot load" and "no such file" in text
    path = _write(tmp_path, "student.py", "def im2col_wrong_name(x):\n    return x\n")
    report, text = _check("im2col", path)
    assert "has no function named im2col()" in text

    assert main(["check", "im2coll"]) == 2
    assert "unknown exercise 'im2coll' (did you mean 'im2col'?)" in capsys.readouterr().err
    assert main(["check"]) == 2
    assert "--list" in capsys.readouterr().err


def test_command_line_has_no_traceback():
    """The real command line, once: the stub fails with the 'not implemented' message."""
    result = subprocess.run([sys.executable, "-m", "minires", "check", "sgd_momentum"],
                            capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 1
    assert "not implemented yet: fill in sgd_momentum_step()" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# ---------------------------------------------------------------------------- teachers


NEW_EXERCISE = '''
"""A teacher's new exercise: one file."""
import numpy as np
from minires.exercises import Case, GradCheck
from minires.kernels.activation import relu_backward, relu_forward

NAME = "relu_backward_extra"
TITLE = "ReLU backward"
ORDER = 5
STUB = "relu_backward_extra.py"
FUNCTION = "relu_backward"
OUTPUTS = ("grad_x",)


def reference(grad_y, x):
    return relu_backward(grad_y, x)


def cases(rng):
    for shape in ((4,), (2, 3)):
        yield Case(f"shape {shape}", (rng.standard_normal(shape), rng.standard_normal(shape)))


def gradchecks(rng):
    x = rng.permutation(12).reshape(3, 4) - 5.5
    yield GradCheck("x (3, 4)", relu_forward, [x], lambda g, x: (g, x), {0: (None, "x")})


HINTS = {"mismatch": "grad_x = grad_y where x > 0, else 0."}
'''


@pytest.fixture
def extra_catalog(tmp_path):
    """A course's folder with one more exercise module, as a teacher would add it."""
    folder = tmp_path / "catalog"
    folder.mkdir()
    return folder


def test_a_teacher_adds_an_exercise_with_one_file(extra_catalog, tmp_path):
    (extra_catalog / "relu_backward_extra.py").write_text(NEW_EXERCISE)
    exercises, broken = load_catalog([extra_catalog])
    assert exercises[0].name == "relu_backward_extra" and not broken
    assert "relu_backward_extra" not in [e.name for e in load_catalog()[0]]  # package untouched
    good = _write(tmp_path, "good.py", "def relu_backward(grad_y, x):\n"
                                       "    return grad_y * (x > 0)\n")
    report, text = _check("relu_backward_extra", good, catalogs=[extra_catalog])
    assert report.passed and report.total == 3, text
    bad = _write(tmp_path, "bad.py", "def relu_backward(grad_y, x):\n    return grad_y\n")
    report, text = _check("relu_backward_extra", bad, catalogs=[extra_catalog])
    assert not report.passed and "grad_x = grad_y where x > 0, else 0." in text


def test_a_broken_exercise_definition_does_not_hide_the_others(extra_catalog, capsys):
    (extra_catalog / "broken_extra.py").write_text("NAME = 'broken_extra'\n")
    exercises, broken = load_catalog([extra_catalog])
    assert len(exercises) == len(NAMES)
    assert broken and broken[0][0] == "broken_extra" and "must define" in broken[0][1]
    main(["check", "--list", "--catalog", str(extra_catalog)])
    assert "BROKEN EXERCISE DEFINITION" in capsys.readouterr().out


# ---------------------------------------------------------------------------- a safe checker

IM2COL = (SOLUTIONS / "correct_im2col.py").read_text()
STEAL = ("import minires.kernels.conv as conv\n\n\n"
         "def im2col(x, kernel_h, kernel_w, stride=1, padding=0):\n"
         "    return x.reshape(len(x), -1)\n\n\n"
         "conv.im2col = im2col  # the reference, replaced by a wrong solution\n")


def _pad_all(x, padding):  # a helper a notebook would define in another cell
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def test_a_function_from_a_notebook_cell_is_checked_with_its_helpers():
    def my_im2col(x, kernel_h, kernel_w, stride=1, padding=0):
        n, c, h, w = x.shape
        oh = (h + 2 * padding - kernel_h) // stride + 1
        ow = (w + 2 * padding - kernel_w) // stride + 1
        x_pad = _pad_all(x, padding)
        rows = [x_pad[b, :, p * stride:p * stride + kernel_h, q * stride:q * stride + kernel_w]
                .transpose(1, 2, 0).ravel() for b in range(n) for p in range(oh)
                for q in range(ow)]
        return np.array(rows, dtype=x.dtype)

    report, text = _check("im2col", my_im2col)
    assert report.passed and report.total == 7, text
    assert "checking im2col() in your code" in text

    def sigmoid_backward(grad_y, y):
        return grad_y * y  # forgot (1 - y)

    report, text = _check("sigmoid_backward", sigmoid_backward)
    assert not report.passed and report.status == "failing" and "first difference" in text
    assert [r.passed for r in report.results].count(True) < report.total
    with pytest.raises(TypeError, match="defined with `def`"):
        check("sigmoid_backward", lambda grad_y, y: grad_y, quiet=True)
    with pytest.raises(TypeError, match="function or the path"):
        check("sigmoid_backward", 42, quiet=True)


def test_an_endless_loop_times_out_and_the_rest_is_not_run(tmp_path):
    path = _write(tmp_path, "loop.py", "def sigmoid_backward(grad_y, y):\n"
                                       "    while True:\n        pass\n")
    out = io.StringIO()
    report = check("sigmoid_backward", path, timeout=2, out=out)
    text = out.getvalue()
    assert report.status == "timeout" and not report.passed, text
    assert report.results[0].kind == "timeout" and "did not finish within 2 s" in text
    assert all(r.kind == "not_run" for r in report.results[1:]) and report.n_passed == 0
    assert "loop that never ends" in text
    assert report.seconds < 30  # stopped, not waited for (a generous bound on a busy machine)


def test_sys_exit_in_the_function_or_the_file_is_a_failure(tmp_path, capsys):
    path = _write(tmp_path, "quit.py", "import sys\n\n\ndef sigmoid_backward(grad_y, y):\n"
                                       "    sys.exit(0)\n")
    report, text = _check("sigmoid_backward", path)
    assert not report.passed and report.n_passed == 0, text
    assert "your code called sys.exit(0)" in text and "quit.py:5" in text
    assert main(["check", "sigmoid_backward", "--file", str(path)]) == 1  # not 0

    at_import = _write(tmp_path, "quit_early.py", "import sys\nsys.exit(0)\n")
    report, text = _check("sigmoid_backward", at_import)
    assert report.status == "cannot load" and "SystemExit" in text
    dies = _write(tmp_path, "dies.py", "import os\n\n\ndef sigmoid_backward(grad_y, y):\n"
                                       "    os._exit(0)\n")
    report, text = _check("sigmoid_backward", dies)
    assert not report.passed and report.results[0].kind == "crash", text
    assert "ended while your function was running (exit code 0)" in text


def test_a_submission_that_changes_minires_fails(tmp_path):
    path = _write(tmp_path, "steal.py", STEAL)
    report, text = _check("im2col", path)
    assert not report.passed and report.kind == "tamper", text
    assert "your code changed minires itself: minires.kernels.conv.im2col" in text
    # the same change made during a call, after a correct first answer
    sneaky = _write(tmp_path, "sneaky.py", IM2COL + (
        "\n\ndef _wrong(x, *args, **kwargs):\n    return x\n\n\n"
        "_correct = im2col\n\n\n"
        "def im2col(x, kernel_h, kernel_w, stride=1, padding=0):\n"
        "    import minires.kernels.conv\n"
        "    minires.kernels.conv.im2col = _wrong\n"
        "    return _correct(x, kernel_h, kernel_w, stride, padding)\n"))
    report, text = _check("im2col", sneaky)
    assert not report.passed and report.results[0].kind == "tamper", text
    assert all(r.kind == "not_run" for r in report.results[1:])
    # and the checker's own process was never touched
    from minires.kernels import conv
    assert conv.im2col.__module__ == "minires.kernels.conv"


def test_a_students_prints_are_passed_on(tmp_path):
    path = _write(tmp_path, "chatty.py", "def sigmoid_backward(grad_y, y):\n"
                                         "    print('shape is', y.shape)\n"
                                         "    return grad_y * y * (1 - y)\n")
    report, text = _check("sigmoid_backward", path)
    assert report.passed and "shape is (5,)" in text
