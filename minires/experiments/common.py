"""What every demonstration shares: its configuration, its result, and the report.

A demonstration is a module in :mod:`minires.experiments` with ``NAME``, ``TITLE`` and a
function ``run(config) -> DemoResult``.  It states a *claim* and its *source* (paper
section, table or figure, or a seed article), measures, and reports verdicts computed
from the measured numbers (never written by hand): a claim can fail, and then the
report says ``does not hold``.  Each reads in that order, claim -> setup -> measurement ->
verdict: ``CLAIM`` and ``SOURCE``, ``setup(config)`` (what is built, fixed before
measuring), ``measure(config) -> numbers``, ``verdicts(numbers)`` (one rule each, from the
statistics below), and apart from them ``report`` and ``plots`` (in a ``NAME_report``
module when they are long, exposed with :func:`lazy`); :func:`demonstrate` runs those
steps.

Output, under ``config.out``:

* ``NAME.json``: every number measured, with the configuration, seed, versions and
  wall time;
* ``NAME_*.png``: the figures;
* ``sections/NAME.md``: the demonstration's section of the report; ``report.md`` is
  rebuilt from all sections present, in a fixed order, so re-running one demonstration
  replaces its section instead of appending a duplicate.

All files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import importlib
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import minires
from minires import backend
from minires.serialization import atomic_write

# The order of sections in report.md (and of `demo all`).
DEMO_ORDER = ("vanishing", "identity", "degradation", "shortcuts", "lesion", "highway")


@dataclass
class DemoConfig:
    """How a demonstration runs.

    ``mode`` is ``"quick"`` (the default: the embedded MNIST subset, small nets, minutes on
    a laptop CPU) or ``"full"`` (the paper's recipe and sizes, meant for a GPU).  ``tiny``
    shrinks everything further for the test suite (seconds), keeping each claim testable.
    """

    mode: str = "quick"
    dataset: str = "mnist"
    device: str = "cpu"
    seed: int = 0
    out: Path = Path("minires-out")
    data_dir: str | None = None
    progress: bool = True
    tiny: bool = False

    def __post_init__(self):
        self.out = Path(self.out)
        if self.mode not in ("quick", "full"):
            raise ValueError(f"mode must be 'quick' or 'full', got {self.mode!r}")
        if self.dataset not in ("mnist", "cifar10"):
            raise ValueError(f"dataset must be 'mnist' or 'cifar10', got {self.dataset!r}")

    def pick(self, tiny, quick, full):
        """The setting for the current size: ``tiny`` (tests), ``quick`` or ``full``."""
        if self.tiny:
            return tiny
        return quick if self.mode == "quick" else full


@dataclass
class Verdict:
    """One claim checked against the numbers: ``holds`` is computed, never typed in."""

    claim: str
    holds: bool
    evidence: str

    @property
    def word(self) -> str:
        return "holds" if self.holds else "does not hold"


@dataclass
class Table:
    """A results table for the report: a title, column headers, rows of values."""

    title: str
    headers: list
    rows: list


@dataclass
class DemoResult:
    """Everything a demonstration found; :func:`write_result` turns it into files."""

    name: str
    title: str
    claim: str
    source: str
    setup: str
    verdicts: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)  # file names relative to config.out
    numbers: dict = field(default_factory=dict)  # everything measured, JSON-able
    notes: str = ""
    wall_time_s: float = 0.0

    def check(self, claim: str, holds, evidence: str) -> Verdict:
        """Record a verdict (``holds`` must come from measured numbers)."""
        verdict = Verdict(claim, bool(holds), evidence)
        self.verdicts.append(verdict)
        return verdict

    def table(self, title: str, headers, rows) -> None:
        self.tables.append(Table(title, list(headers), [list(r) for r in rows]))


# ---------------------------------------------------------------------------- verdict statistics
#
# Fixed before any run, the same for every demonstration (issue 12.2):
#   "A <= B" holds when the mean of A - B over seeds is <= 0, or within SE_MULTIPLE standard
#            errors of 0 (the data cannot tell A from B, so they do not contradict A <= B);
#   "A > B"  holds only when the mean of A - B is beyond SE_MULTIPLE standard errors.
# The standard error is that of the mean paired difference over seeds (sample std / sqrt n).
# With a single seed there is no seed-to-seed spread; a caller may then give the standard
# error of the measurement itself (e.g. the binomial one of a difference of two error rates
# on n images), otherwise it is 0 and the rule is the plain comparison of the two numbers.

SE_MULTIPLE = 2.0


@dataclass
class Difference:
    """The paired difference A - B over seeds, with its standard error and the verdict."""

    a: str
    b: str
    relation: str  # "<=" or ">"
    per_seed: list
    mean: float
    se: float
    se_source: str  # "seeds", "measurement" or "none"
    holds: bool

    def evidence(self, scale: float = 1.0, unit: str = "") -> str:
        """``A - B = mean (SE se, n seeds; per seed ...)``: the numbers behind the verdict."""
        seeds = ", ".join(f"{scale * d:+.3g}" for d in self.per_seed)
        rule = (f"holds when <= 0 or <= {SE_MULTIPLE:g} SE" if self.relation == "<="
                else f"needs > {SE_MULTIPLE:g} SE")
        source = {"seeds": f"over {len(self.per_seed)} seeds",
                  "measurement": "of the measurement (1 seed)",
                  "none": "unknown with 1 seed: taken as 0"}[self.se_source]
        return (f"{self.a} - {self.b} = {scale * self.mean:+.3g}{unit}, standard error "
                f"{scale * self.se:.3g}{unit} {source}; {self.relation} {rule}; per seed "
                f"{seeds}")

    def as_dict(self) -> dict:
        return asdict(self)


def paired_difference(a_values, b_values) -> tuple:
    """(per-seed differences a - b, their mean, the standard error of that mean).

    ``a_values``, ``b_values``: shape (n_seeds,), paired by seed.  SE = std(d, ddof=1) /
    sqrt(n); NaN for a single seed.
    """
    a = np.asarray(a_values, dtype=np.float64)
    b = np.asarray(b_values, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length 1-d lists of per-seed values, got shapes "
                         f"{a.shape} and {b.shape}")
    d = a - b
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    return d, float(d.mean()), se


def _difference(a, b, a_values, b_values, relation, measurement_se):
    d, mean, se = paired_difference(a_values, b_values)
    if not math.isnan(se):
        source = "seeds"
    elif measurement_se is not None:
        se, source = float(measurement_se), "measurement"
    else:
        se, source = 0.0, "none"
    if relation == "<=":
        holds = mean <= 0 or mean <= SE_MULTIPLE * se
    else:
        holds = mean > 0 and mean > SE_MULTIPLE * se
    return Difference(a, b, relation, d.tolist(), mean, se, source, bool(holds))


def at_most(a: str, b: str, a_values, b_values, measurement_se=None) -> Difference:
    """The verdict "A <= B" on per-seed values (lower is better, e.g. training error):
    holds when mean(A - B) <= 0 or mean(A - B) <= SE_MULTIPLE * SE."""
    return _difference(a, b, a_values, b_values, "<=", measurement_se)


def greater(a: str, b: str, a_values, b_values, measurement_se=None) -> Difference:
    """The verdict "A > B" on per-seed values: holds when mean(A - B) > SE_MULTIPLE * SE
    (and > 0)."""
    return _difference(a, b, a_values, b_values, ">", measurement_se)


def error_rate_se(a: float, b: float, n: int) -> float:
    """Standard error of a difference of two error rates measured on ``n`` images each:
    sqrt(2 p (1 - p) / n), p the mean of the two rates (the binomial approximation)."""
    p = 0.5 * (a + b)
    return math.sqrt(2.0 * p * (1.0 - p) / n)


# ---------------------------------------------------------------------------- formatting


def fmt(value, digits: int = 3) -> str:
    """A number for a table: integers plainly, floats with ``digits`` significant digits."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def mean_std(values) -> str:
    """``mean ± std`` of a list of numbers (population std), for multi-seed results."""
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():.4f} ± {values.std():.4f}"


def markdown_section(result: DemoResult) -> str:
    """The report section of one demonstration, in Markdown."""
    lines = [f"## {result.title}", "", f"**Claim.** {result.claim}", "",
             f"**Source.** {result.source}", "", f"**Setup.** {result.setup}", ""]
    for table in result.tables:
        lines += [f"*{table.title}*", "",
                  "| " + " | ".join(str(h) for h in table.headers) + " |",
                  "|" + "---|" * len(table.headers)]
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.rows]
        lines.append("")
    for figure in result.figures:
        lines += [f"![{Path(figure).stem}]({figure})", ""]
    if result.notes:
        lines += [result.notes, ""]
    lines.append("**Verdicts.**")
    lines.append("")
    for verdict in result.verdicts:
        lines.append(f"- {verdict.claim}: **{verdict.word}** ({verdict.evidence})")
    lines += ["", f"*Wall time: {result.wall_time_s:.1f} s.*", ""]
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def versions() -> dict:
    """Versions of what produced the numbers."""
    return {"minires": minires.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "platform": platform.platform()}


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_result(result: DemoResult, config: DemoConfig) -> Path:
    """Write NAME.json and sections/NAME.md, then rebuild report.md; returns report.md."""
    out = config.out
    payload = {
        "name": result.name, "title": result.title, "claim": result.claim,
        "source": result.source, "setup": result.setup,
        "verdicts": [asdict(v) | {"verdict": v.word} for v in result.verdicts],
        "tables": [asdict(t) for t in result.tables], "figures": result.figures,
        "numbers": result.numbers, "config": asdict(config), "versions": versions(),
        "wall_time_s": result.wall_time_s,
    }
    write_text(out / f"{result.name}.json",
               json.dumps(payload, indent=2, default=_json_default, allow_nan=True))
    write_text(out / "sections" / f"{result.name}.md", markdown_section(result))
    return rebuild_report(out)


def verdict_rows(out: Path, names=DEMO_ORDER) -> list:
    """Markdown table rows ``| demonstration | claim | verdict |`` from the NAME.json files
    present in ``out`` (report.md's summary and the README use the same rows)."""
    rows = []
    for name in names:
        data_path = Path(out) / f"{name}.json"
        if not data_path.exists():
            continue
        for verdict in json.loads(data_path.read_text())["verdicts"]:
            claim = verdict["claim"].replace("|", "\\|")  # a literal | would end the cell
            rows.append(f"| {name} | {claim} | **{verdict['verdict']}** |")
    return rows


def rebuild_report(out: Path) -> Path:
    """report.md = a verdict summary, then every section present, in DEMO_ORDER."""
    out = Path(out)
    names = [n for n in DEMO_ORDER if (out / "sections" / f"{n}.md").exists()]
    summary = ["# minires: what the ResNet paper claims, measured", "",
               "| demonstration | claim | verdict |", "|---|---|---|"]
    summary += verdict_rows(out, names)
    body = [(out / "sections" / f"{n}.md").read_text() for n in names]
    return write_text(out / "report.md", "\n".join(summary) + "\n\n" + "\n".join(body))


def forward_eval(model, images: np.ndarray):
    """``model(images)`` in eval mode under no_grad, on the model's device; the model's
    train/eval mode is restored afterwards.  Used to look inside trained nets (forward
    hooks, highway gates)."""
    from minires.autograd import Tensor, no_grad

    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return model(Tensor(backend.to_device(images, next(model.parameters()).device)))
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------- numbers


def decay_factor(norms, layers=None) -> float:
    """The geometric per-layer factor rho of a sequence of gradient norms.

    Fits log10 ||g_l|| = c + s l by least squares over the given layer indices (default
    1..n) and returns rho = 10^(-s): going one layer back toward the input multiplies the
    gradient by about rho.  For an exact geometric sequence g_l = g_n rho^(n - l) it returns
    rho.  Zero norms (an underflow) are left out of the fit.
    """
    norms = np.asarray(norms, dtype=np.float64)
    layers = np.arange(1, len(norms) + 1) if layers is None else np.asarray(layers)
    keep = norms > 0
    if keep.sum() < 2:
        return float("nan")
    slope = np.polyfit(layers[keep], np.log10(norms[keep]), 1)[0]
    return float(10.0 ** (-slope))


# ---------------------------------------------------------------------------- figures


def pyplot():
    """matplotlib.pyplot with a file-only backend, or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError as err:
        raise RuntimeError("the demonstrations draw figures with matplotlib: "
                           "pip install 'minires[demo]' (or pip install matplotlib)") from err
    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, config: DemoConfig, name: str) -> str:
    """Save ``fig`` as ``config.out/name`` (PNG, atomically), close it, return the name."""
    plt = pyplot()
    atomic_write(config.out / name, lambda f: fig.savefig(f, format="png", dpi=110,
                                                          bbox_inches="tight"))
    plt.close(fig)
    return name


# ---------------------------------------------------------------------------- running


def progress(iterable, description: str, enabled: bool = True, total=None):
    """Wrap ``iterable`` in a tqdm progress bar when tqdm is installed and ``enabled``."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=description, total=total, leave=False, dynamic_ncols=True)


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.seconds = time.perf_counter() - self.start


def seed_everything(seed: int) -> None:
    """Seed minires's generators (weights, shuffling, augmentation, dropout)."""
    backend.manual_seed(seed)


def lazy(module: str, function: str):
    """``function`` of ``module``, imported when first called: how a demonstration exposes
    the ``plots`` and ``report`` of its own report module, which imports the demonstration
    (importing it at the top would be a cycle)."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    call.__name__ = call.__qualname__ = function
    call.__doc__ = f"``{function}`` of :mod:`{module}` (imported when called)."
    return call


def demonstrate(demo, config: DemoConfig) -> DemoResult:
    """Run a demonstration module that reads claim -> setup -> measurement -> verdict.

    ``demo`` has ``NAME``, ``TITLE``, ``CLAIM``, ``SOURCE`` and the functions
    ``setup(config) -> str`` (what is built, fixed before measuring),
    ``measure(config) -> numbers`` (a JSON-able dict), ``verdicts(numbers) -> [Verdict]``,
    ``plots(config, numbers) -> [file names]`` and ``report(result, numbers)`` (tables,
    notes and any summary numbers, added to ``result.numbers``).
    """
    result = DemoResult(demo.NAME, demo.TITLE, demo.CLAIM, demo.SOURCE,
                        setup=demo.setup(config))
    with Stopwatch() as watch:
        numbers = demo.measure(config)
        result.figures = list(demo.plots(config, numbers))
    result.verdicts = list(demo.verdicts(numbers))
    result.numbers = numbers
    demo.report(result, numbers)
    result.wall_time_s = watch.seconds
    return result
