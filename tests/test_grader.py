"""``python -m minires grade``: a small class with a correct, a wrong, an endless-loop, a
``sys.exit(0)``, a monkeypatching, a broken and an absent submission."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minires.__main__ import main
from minires.exercises.grader import FIELDS, grade_class

SOLUTIONS = Path(__file__).parent / "exercise_solutions"
ROOT = Path(__file__).resolve().parents[1]

LOOP = "def sigmoid_backward(grad_y, y):\n    while True:\n        pass\n"
EXIT = "import sys\n\n\ndef sigmoid_backward(grad_y, y):\n    sys.exit(0)\n"
PATCH = ("import numpy as np\n\nimport minires.kernels.activation as act\n\n\n"
         "def sigmoid_backward(grad_y, y):\n    return np.zeros_like(y)\n\n\n"
         "act.sigmoid_backward = sigmoid_backward  # make the reference agree\n")
EXPECTED = {  # (student, exercise) -> status
    ("alice", "sigmoid_backward"): "pass", ("alice", "im2col"): "pass",
    ("bob", "sigmoid_backward"): "fail", ("bob", "im2col"): "fail",
    ("carol", "sigmoid_backward"): "timeout", ("carol", "im2col"): "missing",
    ("dave", "sigmoid_backward"): "fail", ("dave", "im2col"): "error",
    ("eve", "sigmoid_backward"): "fail", ("eve", "im2col"): "missing",
}


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    root = tmp_path_factory.mktemp("submissions")
    for student in ("alice", "bob", "carol", "dave", "eve"):
        (root / student).mkdir()
    shutil.copy(SOLUTIONS / "correct_sigmoid_backward.py", root / "alice/sigmoid_backward.py")
    shutil.copy(SOLUTIONS / "correct_im2col.py", root / "alice/im2col.py")
    shutil.copy(SOLUTIONS / "wrong_sigmoid_backward_not_weighted.py",
                root / "bob/sigmoid_backward.py")
    shutil.copy(SOLUTIONS / "wrong_im2col_off_by_one.py", root / "bob/im2col.py")
    (root / "carol/sigmoid_backward.py").write_text(LOOP)
    (root / "dave/sigmoid_backward.py").write_text(EXIT)
    (root / "dave/im2col.py").write_text("def im2col(x,:\n")  # a syntax error
    (root / "eve/sigmoid_backward.py").write_text(PATCH)
    (root / ".git").mkdir()  # hidden folders are not students
    return root


@pytest.fixture(scope="module")
def graded(classroom, tmp_path_factory):
    out = tmp_path_factory.mktemp("grades")
    code = main(["grade", str(classroom), "--exercises", "sigmoid_backward,im2col",
                 "--timeout", "2", "--jobs", "2", "--csv", str(out / "grades.csv"),
                 "--json", str(out / "grades.json")])
    return code, out


def test_every_student_and_exercise_gets_the_right_status(graded):
    code, out = graded
    assert code == 0  # grading ran: the scores are in the table, not the exit code
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == FIELDS
    got = {(r["student"], r["exercise"]): r["status"] for r in rows}
    assert got == EXPECTED
    by_key = {(r["student"], r["exercise"]): r for r in rows}
    alice = by_key["alice", "sigmoid_backward"]
    assert int(alice["passed"]) == int(alice["total"]) >= 5 and float(alice["seconds"]) > 0
    bob = by_key["bob", "sigmoid_backward"]
    assert 0 <= int(bob["passed"]) < int(bob["total"]) and "first difference" in bob["note"]
    assert "sys.exit(0)" in by_key["dave", "sigmoid_backward"]["note"]
    assert "SyntaxError" in by_key["dave", "im2col"]["note"]
    assert "changed minires itself: minires.kernels.activation.sigmoid_backward" in \
        by_key["eve", "sigmoid_backward"]["note"]
    assert "did not finish within 2 s" in by_key["carol", "sigmoid_backward"]["note"]
    assert json.loads((out / "grades.json").read_text()) == [
        {**r, "passed": int(r["passed"]), "total": int(r["total"]),
         "seconds": float(r["seconds"])} for r in rows]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_progress_and_summary_lines(classroom, tmp_path, capsys):
    assert main(["grade", str(classroom), "--exercises", "sigmoid_backward",
                 "--timeout", "2", "--csv", str(tmp_path / "g.csv")]) == 0
    captured = capsys.readouterr()
    assert "[1/5] alice: 1/1 pass" in captured.err
    assert "[3/5] carol: 0/1 pass; sigmoid_backward timeout" in captured.err
    assert "graded 5 students x 1 exercises: 1 pass, 3 fail, 1 timeout" in captured.out


def test_a_course_catalog_adds_exercises(classroom, tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    (course / "double.py").write_text(
        "import numpy as np\nfrom minires.exercises import Case\n"
        "NAME, TITLE, STUB, FUNCTION = 'double', 'Double it', 'double.py', 'double'\n"
        "def reference(x):\n    return 2 * x\n"
        "def cases(rng):\n    yield Case('x (3,)', (rng.standard_normal(3),))\n")
    (classroom / "alice/double.py").write_text("def double(x):\n    return x + x\n")
    try:
        rows = grade_class(classroom, ["double"], catalogs=[course], timeout=2)
    finally:
        (classroom / "alice/double.py").unlink()
    statuses = {r["student"]: r["status"] for r in rows}
    assert statuses == {"alice": "pass", "bob": "missing", "carol": "missing",
                        "dave": "missing", "eve": "missing"}


def test_command_line_mistakes_are_errors(classroom, tmp_path, capsys):
    csv_path = str(tmp_path / "g.csv")
    assert main(["grade", str(tmp_path / "nope"), "--csv", csv_path]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["grade", str(classroom), "--exercises", "im2coll", "--csv", csv_path]) == 2
    assert "unknown exercise(s) im2coll" in capsys.readouterr().err
    assert main(["grade", str(classroom), "--timeout", "0", "--csv", csv_path]) == 2
    assert "--timeout must be a positive number" in capsys.readouterr().err
    assert main(["grade", str(classroom), "--jobs", "0", "--csv", csv_path]) == 2
    assert "jobs must be a positive int" in capsys.readouterr().err
    assert main(["grade", str(tmp_path), "--csv", csv_path]) == 2  # no student folders
    assert "holds no student folders" in capsys.readouterr().err
    assert not Path(csv_path).exists()


def test_the_real_command_line(classroom, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "minires", "grade", str(classroom), "--exercises",
         "sigmoid_backward", "--timeout", "2", "--csv", str(tmp_path / "g.csv")],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert (tmp_path / "g.csv").read_text().count("\n") == 6  # header + 5 students
