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
