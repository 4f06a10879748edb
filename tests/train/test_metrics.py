"""What a run reports: the cadence of periodic work, the step timer's window, the stop on a non-finite step."""

import numpy as np
import pytest

from stylecrafter_jax.train.metrics import (StepTimer, TrainingStopped, check_finite, due, first_bad_step,
                                            peak_flops_per_device)


def test_due_every_n_steps_and_at_the_last():
    assert [step for step in range(1, 11) if due(step, 4)] == [4, 8]
    assert [step for step in range(1, 11) if due(step, 4, 10)] == [4, 8, 10]
    assert [step for step in range(1, 11) if due(step, 0)] == []
    assert [step for step in range(1, 11) if due(step, 0, 10)] == [10]


def test_step_timer_rates_over_its_window_leave_the_first_fetch_of_each_kind_out():
    now = [0.0]
    timer = StepTimer(num_devices=2, peak_per_device=4e12, clock=lambda: now[0])
    now[0] = 15.0
    timer.fetched("images", since=10.0)  # the first image batch: its 5 s of compiles are not step time
    timer.count(examples=8, flops=4e12)
    now[0] = 20.0
    timer.fetched("images", since=18.0)  # later ones are
    timer.count(examples=8, flops=4e12)
    now[0] = 25.0
    expected = {"steps_per_s": 2 / 20, "examples_per_s": 16 / 20, "tflops_per_device": 8 / 20 / 2, "mfu": 0.2 / 4}
    assert timer.rates() == pytest.approx(expected)
    now[0] = 27.0
    timer.fetched("videos", since=25.0)  # the first video batch
    assert timer.rates() == pytest.approx(expected)
    now[0] = 30.0
    timer.restart()
    timer.count(examples=4, flops=0.0)
    now[0] = 32.0
    assert timer.rates()["steps_per_s"] == pytest.approx(0.5) and timer.rates()["examples_per_s"] == pytest.approx(2)


def test_first_non_finite_step_is_kept_and_named():
    # The step itself keeps the state on a non-finite loss (tests/train/test_step.py); the loop then stops.
    bad = None
    for step, (finite, loss) in enumerate([(True, 1.0), (False, np.nan), (False, np.inf)], start=1):
        bad = first_bad_step(bad, {"finite": np.bool_(finite), "loss": np.float32(loss),
                                   "grad_norm": np.float32(step)}, step)
        if step == 1:
            check_finite(bad, step)
    with pytest.raises(TrainingStopped, match=r"non-finite loss or gradient at step 2 \(loss=nan, grad_norm=2.0\).*"
                                              r"stopped at step 3"):
        check_finite(bad, 3)


@pytest.mark.parametrize("kind, peak", [("TPU v5", 459e12), ("TPU v5 lite", 197e12), ("TPU v6 lite", 918e12),
                                        ("TPU v4", 275e12), ("NVIDIA H100 80GB HBM3", 989e12),
                                        ("NVIDIA A100-SXM4-80GB", 312e12), ("cpu", None)])
def test_peak_flops_by_the_device_kinds_jax_reports(kind, peak):
    assert peak_flops_per_device(device_kind=kind) == peak


def test_a_configured_peak_wins_over_the_table():
    assert peak_flops_per_device(123e12, device_kind="TPU v5") == 123e12
