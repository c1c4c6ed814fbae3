"""The checks every demonstration's output must pass: JSON, report section, figures."""

import json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_demo_files(result, config, report) -> dict:
    """``write_result`` wrote NAME.json (verdicts as computed), the report section and
    1-3 real PNGs linked from report.md; returns the parsed JSON for further checks."""
    out, name = config.out, result.name
    assert report == out / "report.md"
    data = json.loads((out / f"{name}.json").read_text())
    assert data["name"] == name
    assert [v["holds"] for v in data["verdicts"]] == [v.holds for v in result.verdicts]
    text = report.read_text()
    assert f"## {result.title}" in text
    assert (out / "sections" / f"{name}.md").exists()
    assert 1 <= len(result.figures) <= 3
    for figure in result.figures:
        path = out / figure
        assert path.name.startswith(name) and path.suffix == ".png"
        content = path.read_bytes()
        assert len(content) > 1000 and content.startswith(PNG_MAGIC)
        assert f"]({figure})" in text
    return data


def assert_each_flip_breaks_its_verdict(verdicts, given_numbers, flips) -> list:
    """``verdicts(given_numbers())`` all hold; for each (index, path, value) in ``flips``,
    setting ``numbers[path[0]][path[1]]... = value`` (one measured quantity past its
    threshold) makes exactly verdict ``index`` fail, the claims unchanged.  Returns the
    verdicts on the unchanged numbers."""
    base = verdicts(given_numbers())
    assert all(v.holds for v in base), [v.claim for v in base if not v.holds]
    for index, path, value in flips:
        numbers = given_numbers()
        *keys, last = path
        target = numbers
        for k in keys:
            target = target[k]
        target[last] = value
        found = verdicts(numbers)
        assert [v.claim for v in found] == [v.claim for v in base]
        assert [v.holds for v in found] == [i != index for i in range(len(base))], (index, path)
    return base
