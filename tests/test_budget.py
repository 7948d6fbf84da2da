"""Time promises and budgets for sweeps: exact arithmetic on declared costs and a fake clock."""

import json

import pytest

from fakes import FakeBackend, FakePoints
from lib.measure import budget, sweep
from lib.measure.factors import get_factor
from lib.records import table
from lib.measure.budget import PointCost, SweepPlan
from lib.core.spec import RunSpec

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=3, min_duration_s=0.0,
               warmup_runs=1, threads=2)


def test_a_quiet_machine_or_spare_cores_do_not_slow_a_run():
    assert budget.slowdown(None, 2, cores=2) == 1.0
    assert budget.slowdown(0.0, 2, cores=2) == 1.0
    assert budget.slowdown(50.0, 1, cores=2) == 1.0          # one thread, one free core


def test_other_programs_share_stretches_a_run_that_needs_their_cores():
    # 60% of 2 cores = 1.2 busy cores beside 2 threads: 3.2 / 2 cores, and the threads'
    # waiting on each other.
    assert budget.slowdown(60.0, 2, cores=2) == pytest.approx(1.6 * budget.SYNC_PENALTY)
    assert budget.slowdown(100.0, 1, cores=2) == pytest.approx(1.5)


def _declared_costs(monkeypatch, cost: PointCost) -> None:
    monkeypatch.setattr(budget, "point_cost", lambda spec, loaded=False: (
        PointCost(0.0 if loaded else cost.load_s, cost.warmup_s, cost.call_s), "declared"))


def test_a_plan_that_fits_keeps_the_settings(monkeypatch):
    _declared_costs(monkeypatch, PointCost(load_s=10, warmup_s=2, call_s=2))
    specs = [BASE.replace(batch_size=b) for b in (1, 4)]
    plan = budget.plan_sweep(BASE, specs, budget_s=120, other_cpu_percent=0.0)
    # One load (both points share the model), then per point a warm-up and 3 calls.
    assert plan.estimated_s == pytest.approx(10 + 2 * (2 + 3 * 2))
    assert (plan.repetitions, plan.fits, plan.cut, plan.cut_note()) == (3, True, False, None)


def test_a_busy_machine_stretches_the_estimate_by_its_slowdown(monkeypatch):
    _declared_costs(monkeypatch, PointCost(load_s=10, warmup_s=2, call_s=2))
    specs = [BASE.replace(batch_size=b) for b in (1, 4)]
    quiet = budget.plan_sweep(BASE, specs, None, other_cpu_percent=0.0)
    busy = budget.plan_sweep(BASE, specs, None, other_cpu_percent=60.0)
    assert busy.slowdown == budget.slowdown(60.0, 2)
    assert busy.estimated_s == pytest.approx(quiet.estimated_s * busy.slowdown)
    assert "other programs are using 60% of the CPU" in busy.promise()
    assert busy.promise().startswith("about 54 s on this machine right now")   # 26 s x 2.08


def test_a_budget_too_small_cuts_repetitions_to_the_floor_and_says_so(monkeypatch):
    _declared_costs(monkeypatch, PointCost(load_s=10, warmup_s=2, call_s=2))
    specs = [BASE.replace(batch_size=b, min_duration_s=1.0) for b in (1, 4)]
    base = BASE.replace(min_duration_s=1.0)
    # 3 repetitions need 26 s; 2 need 22 s: a 24 s budget keeps 2.
    plan = budget.plan_sweep(base, specs, budget_s=24, other_cpu_percent=0.0)
    assert (plan.repetitions, plan.min_duration_s, plan.fits) == (2, 1.0, True)   # 2 calls > 1 s
    assert plan.estimated_s == pytest.approx(22)
    assert "2 timed repetitions per point instead of 3" in plan.cut_note()
    # Below the floor's own cost, it keeps the floor and says the budget can't be met.
    tight = budget.plan_sweep(base, specs, budget_s=15, other_cpu_percent=0.0)
    assert (tight.repetitions, tight.fits) == (budget.MIN_REPETITIONS, False)
    assert "needs about 22 s, more than the 15 s budget" in tight.cut_note()


def _plan(estimated_s: float, budget_s: float | None, repetitions: int = 4) -> SweepPlan:
    return SweepPlan(estimated_s, budget_s, repetitions, 0.0, repetitions, 0.0, 0.0, 1.0,
                     "declared")


def test_a_running_sweep_cuts_repetitions_when_measured_rounds_would_overrun():
    # Each call takes 1 s of fake time (prefill 0.2 + 4 x 0.2): a round of 2 points is 2 s.
    backend = FakeBackend(prefill_s=0.2, decode_s=0.2)
    points = FakePoints(backend)
    base = BASE.replace(repetitions=6, min_duration_s=0.0)
    plan = _plan(estimated_s=10, budget_s=7, repetitions=6)
    result = sweep.run_sweep(base, [(get_factor("batch"), [1, 2])], points,
                             plan=plan, clock=backend.clock_.now)
    counts = [len(p.measurement.repetitions) for p in result.points]
    # Warm-ups took 2 s; round 1 ends at 4 s with 3 s left: one more round fits, not four.
    assert counts == [2, 2]
    assert backend.clock_.now() <= plan.budget_s
    assert "instead of 6" in result.notes[0] and "budget" in result.notes[0]


def test_without_a_budget_the_settings_hold():
    backend = FakeBackend(prefill_s=0.2, decode_s=0.2)
    result = sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2])], FakePoints(backend),
                             plan=_plan(10, None, repetitions=3), clock=backend.clock_.now)
    assert [len(p.measurement.repetitions) for p in result.points] == [3, 3]
    assert not any("budget" in note for note in result.notes)


def test_time_left_shows_from_the_start_and_counts_repetitions():
    backend = FakeBackend(prefill_s=0.2, decode_s=0.2)
    events = []
    sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2])], FakePoints(backend),
                    on_progress=events.append, plan=_plan(30, 60, repetitions=3),
                    clock=backend.clock_.now)
    first = events[0]
    assert first.phase == "loading" and not first.eta_measured
    assert first.eta_s == pytest.approx(30)               # the plan's, before anything ran
    assert all(event.eta_s is not None for event in events)
    measuring = [event for event in events if event.phase == "measuring"]
    assert measuring[0].points_loaded == 2 and measuring[0].repetitions_planned == 6
    assert [event.repetitions_done for event in measuring] == [0, 1, 2, 3, 4, 5]
    assert measuring[-1].eta_measured


def test_sweep_json_is_one_object_with_points_plan_and_elapsed(fake_backend, capsys):
    from lib.cli import main

    status = main.main(["sweep", "--factor", "batch", "--values", "1,2", "--prompt-tokens", "16",
                       "--new-tokens", "3", "--repetitions", "2", "--min-duration", "0",
                       "--threads", "1", "--budget-s", "90", "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    document = json.loads(captured.out)                  # one object, nothing else on stdout
    assert [row["batch_size"] for row in document["points"]] == [1, 2]
    assert all(row["status"] == table.Status.MEASURED for row in document["points"])
    assert {"noisy", "ttft_s_min", "ttft_s_max"} <= set(document["points"][0])
    assert document["plan"]["budget_s"] == 90 and document["plan"]["estimated_s"] > 0
    assert document["plan"]["repetitions"] == 2 and document["elapsed_s"] >= 0
    assert "this sweep: about" in captured.err and "round 1" in captured.err


def test_a_bad_budget_is_refused_in_one_line(capsys):
    from lib.cli import main

    with pytest.raises(SystemExit) as exited:
        main.main(["sweep", "--factor", "batch", "--budget-s", "soon"])
    assert exited.value.code == 2
    assert "is not a time budget" in capsys.readouterr().err


def test_the_next_plan_starts_from_how_the_last_sweep_compared_with_its_plan(monkeypatch):
    _declared_costs(monkeypatch, PointCost(load_s=10, warmup_s=2, call_s=2))
    backend = FakeBackend(prefill_s=0.2, decode_s=0.2)
    first = budget.plan_sweep(BASE, [BASE], None, other_cpu_percent=0.0)
    result = sweep.run_sweep(BASE, [(get_factor("batch"), [1])], FakePoints(backend),
                             plan=first, clock=backend.clock_.now)
    point = result.points[0]
    # Declared wall times: loading took 30 s, the 3 timed calls 12 s (twice the plan's).
    point.start_s, point.seconds = 30.0, 42.0
    budget.remember(result)
    again = budget.plan_sweep(BASE, [BASE], None, other_cpu_percent=0.0)
    # Calls: 12 s / 6 s planned = 2x; loading: (30 - 2 s warm-up x 2) / 10 s = 2.6x.
    assert again.estimated_s == pytest.approx(10 * 2.6 + 2 * 2 + 3 * 2 * 2)
    assert again.basis.startswith("this machine's speed in its last sweep")


def test_threads_waiting_for_a_core_stretch_a_full_machine_further():
    # 100% of 2 cores reads the same for 2 busy programs or 12: their waiting threads tell.
    assert budget.slowdown(100.0, 2, cores=2, other_threads=2) == \
        pytest.approx(2.0 * budget.SYNC_PENALTY)
    assert budget.slowdown(100.0, 2, cores=2, other_threads=12) == budget.MAX_SLOWDOWN
    assert budget.slowdown(100.0, 2, cores=2, other_threads=4) == \
        pytest.approx(3.0 * budget.SYNC_PENALTY)
    assert budget.slowdown(20.0, 2, cores=2, other_threads=4) == budget.slowdown(20.0, 2, cores=2)


def test_slow_loading_revises_the_time_left_and_cuts_repetitions_before_round_one():
    backend = FakeBackend(prefill_s=0.2, decode_s=0.2)        # every call: 1 s of fake time
    # The plan expected warm-ups and calls of 0.5 s: each takes twice that.
    plan = SweepPlan(7.0, 8.0, 6, 0.0, 6, 0.0, 0.0, 1.0, "declared",
                     starts_s=(0.5, 0.5), calls_s=(0.5, 0.5))
    events = []
    result = sweep.run_sweep(BASE.replace(repetitions=6), [(get_factor("batch"), [1, 2])],
                             FakePoints(backend), on_progress=events.append, plan=plan,
                             clock=backend.clock_.now)
    first_round = next(e for e in events if e.phase == "measuring")
    # Ready at 2 s instead of 1 s: the 6 s of calls planned become 12 s.
    assert first_round.eta_s == pytest.approx(12.0) and not first_round.eta_measured
    # 6 s of budget left at 2 s per round: 3 repetitions, not 6, ending on the budget.
    assert [len(p.measurement.repetitions) for p in result.points] == [3, 3]
    assert backend.clock_.now() == pytest.approx(8.0)


def test_a_pruned_copy_and_measuring_quality_are_part_of_a_point_s_time():
    from lib.estimate import estimator
    from lib.measure.quality import EVALUATION_TOKENS, WINDOW_TOKENS
    from lib.models.shapes import shapes

    plain, _ = budget.point_cost(BASE, loaded=True)
    copied, _ = budget.point_cost(BASE.replace(prune="magnitude:0.5"), loaded=True)
    shared, _ = budget.point_cost(BASE.replace(prune="layers:10"), loaded=True)
    parameters = shapes(BASE.model_id).parameters
    assert copied.warmup_s - plain.warmup_s == pytest.approx(
        budget.TECHNIQUE_SETUP_S_PER_PARAMETER["magnitude"] * parameters
        + BASE.warmup_runs * (copied.call_s - plain.call_s))
    assert shared.warmup_s < plain.warmup_s and shared.call_s < plain.call_s   # fewer layers
    rated, _ = budget.point_cost(BASE.replace(quality="on"), loaded=True)
    window = estimator.estimate(BASE.replace(prompt_tokens=WINDOW_TOKENS, new_tokens=2,
                                             batch_size=1)).summary["ttft_s"]
    assert rated.warmup_s - plain.warmup_s == pytest.approx(
        EVALUATION_TOKENS / WINDOW_TOKENS * window)


def test_speculative_decoding_s_check_against_plain_decoding_is_part_of_its_time():
    from lib.estimate import estimator

    plain, _ = budget.point_cost(BASE, loaded=True)
    guessed, _ = budget.point_cost(BASE.replace(speculative="prompt-lookup"), loaded=True)
    check_s = estimator.estimate(BASE).summary["e2e_s"]
    assert guessed.warmup_s == pytest.approx(BASE.warmup_runs * guessed.call_s + check_s)
