"""The paper's learning-rate schedule (Sec. III.E.2): x0.95 every 500 steps, interval x2 every 16,000."""

import pytest
import torch

from napari_lesionseg.training.schedule import PaperSchedule, decay_count, make_scheduler


@pytest.mark.parametrize(
    ("step", "decays"),
    [
        (0, 0), (1, 0), (499, 0), (500, 1), (999, 1), (1000, 2),
        (15_999, 31), (16_000, 32),  # the 32nd decay lands on the first interval growth
        (16_500, 32), (16_999, 32), (17_000, 33),  # the interval is now 1,000
        (32_000, 48), (33_999, 48), (34_000, 49),  # and 2,000 after the second growth
    ],
)  # fmt: skip
def test_decay_count_follows_the_paper(step, decays):
    assert decay_count(step) == decays


def test_paper_schedule_factor_values():
    schedule = PaperSchedule()
    assert schedule(0) == 1.0
    assert schedule(499) == 1.0
    assert schedule(500) == pytest.approx(0.95)
    assert schedule(16_000) == pytest.approx(0.95**32)
    assert schedule(16_500) == pytest.approx(0.95**32)
    assert schedule(17_000) == pytest.approx(0.95**33)


def test_custom_schedule_parameters():
    schedule = PaperSchedule(decay=0.5, every=2, growth=3, growth_every=4)
    # decays at 2, 4, then the interval is 2 * 3 = 6 (step 4 >= 4): 10, then 2 * 9 = 18: 28
    assert [decay_count(t, 2, 3, 4) for t in (1, 2, 4, 9, 10)] == [0, 1, 2, 2, 3]
    assert schedule(4) == 0.25


def test_decay_count_rejects_bad_arguments():
    with pytest.raises(ValueError, match="every > 0"):
        decay_count(10, every=0)
    with pytest.raises(ValueError, match="step >= 0"):
        decay_count(-1)


def test_lambda_lr_applies_the_schedule_per_optimizer_step():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=5e-4)
    scheduler = make_scheduler(optimizer, PaperSchedule(every=3, growth_every=6))
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # decays at 3, 6 (interval becomes 6), 12: steps 0-2 full rate, 3-5 x0.95, 6-9 x0.95^2
    assert rates[:3] == [pytest.approx(5e-4)] * 3
    assert rates[3:6] == [pytest.approx(5e-4 * 0.95)] * 3
    assert rates[6:] == [pytest.approx(5e-4 * 0.95**2)] * 4


def test_scheduler_state_round_trip():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=1.0)
    scheduler = make_scheduler(optimizer, PaperSchedule(every=2))
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    fresh = make_scheduler(fresh_opt, PaperSchedule(every=2))
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 5
    assert fresh.get_last_lr() == pytest.approx([0.95**2])
