"""The demonstrations: each states a claim from the ResNet paper or its background,
measures it, and reports whether it held.  Run them with ``python -m minires demo NAME``.

Each is a module here with ``NAME``, ``TITLE`` and ``run(config) -> DemoResult``; see
:mod:`minires.experiments.common`.  :func:`run_demo` runs one and writes its files;
:func:`pretrain` first trains the nets that the demonstrations declare
(``planned_runs``), in parallel processes.
"""

import importlib
import time

from minires.experiments.common import DEMO_ORDER, DemoConfig, write_result


def load_demo(name: str):
    """The module of demonstration ``name`` (one of DEMO_ORDER)."""
    if name not in DEMO_ORDER:
        raise ValueError(f"unknown demonstration {name!r}; choose from {', '.join(DEMO_ORDER)} "
                         "or all")
    return importlib.import_module(f"minires.experiments.{name}")


def available_demos() -> list:
    """The demonstrations that exist in this version, in report order."""
    found = []
    for name in DEMO_ORDER:
        try:
            load_demo(name)
        except ModuleNotFoundError:
            continue
        found.append(name)
    return found


def planned_runs(names, config: DemoConfig) -> list:
    """The training runs (:class:`~minires.experiments.training.RunSpec`) that the
    demonstrations ``names`` declare with their ``planned_runs(config)``."""
    specs = []
    for name in names:
        plan = getattr(load_demo(name), "planned_runs", None)
        if plan is not None:
            specs.extend(plan(config))
    return specs


def pretrain(names, config: DemoConfig, jobs: int) -> int:
    """Train every net the demonstrations ``names`` will need, ``jobs`` at a time in worker
    processes, before they run (they then load them from the cache); the number trained."""
    from minires.experiments.training import pretrain as train_all

    return train_all(config, planned_runs(names, config), jobs)


def run_demo(name: str, config: DemoConfig):
    """Run demonstration ``name``, write its JSON, figures and report section; return
    its :class:`~minires.experiments.common.DemoResult`."""
    module = load_demo(name)
    start = time.perf_counter()
    result = module.run(config)
    result.wall_time_s = time.perf_counter() - start
    write_result(result, config)
    return result
