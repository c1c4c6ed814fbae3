"""tools/verdict_stability.py: the plan, the tally, the files, and one real two-run smoke
test (the vanishing demonstration at tiny size, one subprocess per BLAS thread count)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("verdict_stability",
                                                  ROOT / "tools" / "verdict_stability.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_is_seed_major_and_cut_by_runs(tool):
    assert tool.plan([0, 1], [1, 2]) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert tool.plan([0, 1], [1, 2], runs=3) == [(0, 1), (0, 2), (1, 1)]


def test_jobs_use_every_core_at_the_runs_thread_count(tool, tmp_path):
    assert [tool.jobs_for(t, 2) for t in (1, 2, 3)] == [2, 1, 1]
    assert tool.jobs_for(2, 8) == 4
    command = tool.child_command(["lesion"], 3, tmp_path, False, jobs=2)
    assert command[command.index("--jobs") + 1] == "2"


def test_tally_with_a_fake_runner(tool, tmp_path):
    calls = []

    def fake(demos, seed, threads, out, tiny, cores):
        calls.append((seed, threads, out.name, tiny))
        holds = [True, seed != 1 or threads != 2]  # the second verdict fails in one run
        if seed == 2:  # a crashed run writes nothing: every verdict counts as failed
            return {"seed": seed, "threads": threads, "seconds": 1.0, "error": "boom",
                    "verdicts": []}
        return {"seed": seed, "threads": threads, "seconds": 1.0, "verdicts": [
            {"demo": "lesion", "index": i, "claim": f"claim {i} | x", "holds": h,
             "evidence": ""} for i, h in enumerate(holds)]}

    payload = tool.stability(["lesion"], [0, 1, 2], [1, 2], tmp_path, runner=fake)
    assert [c[:2] for c in calls] == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert calls[0][2] == "seed0-threads1" and calls[0][3] is False
    first, second = payload["verdicts"]
    assert (first["held"], first["runs"]) == (4, 6)
    assert (second["held"], second["runs"]) == (3, 6)
    assert second["failed_in"][0] == "seed 1, 2 thread(s)"
    assert not first["meets_goal"]
    saved = json.loads((tmp_path / "stability.json").read_text())
    assert saved["verdicts"] == payload["verdicts"]
    text = (tmp_path / "stability.md").read_text()
    assert "| lesion | claim 1 \\| x | 3/6 (50%) |" in text
    assert "2 run(s) crashed" in text


def test_bad_options_are_refused(tool, capsys):
    with pytest.raises(SystemExit) as err:
        tool.main(["--seeds", "0"])
    assert err.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_real_smoke_run_sets_the_thread_count(tool, tmp_path):
    payload = tool.stability(["vanishing"], [0], [1, 2], tmp_path, tiny=True)
    runs = payload["runs"]
    assert [r["threads"] for r in runs] == [1, 2]
    assert [r["child_threads"] for r in runs] == ["1", "2"]  # the env reached the child
    assert [r["jobs"] for r in runs] == [1, 1]  # one core by default: no worker processes
    assert not any(r.get("error") for r in runs), runs
    assert all(row["runs"] == 2 for row in payload["verdicts"])
    assert len(payload["verdicts"]) >= 8
    for threads in (1, 2):
        data = json.loads((tmp_path / f"seed0-threads{threads}" / "vanishing.json").read_text())
        assert [v["holds"] for v in data["verdicts"]] == runs[threads - 1]["holds"]
    assert tool.child_command(["vanishing"], 3, tmp_path, True)[:2] == [
        sys.executable, str(ROOT / "tools" / "verdict_stability.py")]


def test_update_docs_section_names_machine_threads_time_and_stability(tmp_path):
    spec = importlib.util.spec_from_file_location("update_docs",
                                                  ROOT / "tools" / "update_docs.py")
    docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs)
    (tmp_path / "lesion.json").write_text(json.dumps({
        "wall_time_s": 90.0, "figures": ["lesion_errors.png"],
        "verdicts": [{"claim": "a | b", "verdict": "holds"}]}))
    text = docs.results_section(tmp_path, None, "2", "| stability table |")
    assert text.startswith(docs.MARKER) and text.endswith(docs.MARKER)
    assert "took 1.5 minutes" in text  # from the JSON's wall time
    assert "OPENBLAS_NUM_THREADS=2" in text and docs.machine() in text
    assert "| lesion | a \\| b | **holds** |" in text
    assert "| stability table |" in text
    assert "docs/demo/lesion_errors.png" in text
    assert "processes" not in text  # no run.json: nothing said about pretraining
    # demo writes run.json: the whole run's time (with the nets trained beforehand) and jobs
    (tmp_path / "run.json").write_text(json.dumps({"seconds": 420.0, "jobs": 2}))
    text = docs.results_section(tmp_path, None, "1")
    assert "took 7.0 minutes" in text and "nets trained in 2 processes" in text
