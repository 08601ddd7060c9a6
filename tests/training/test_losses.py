"""Losses against hand computations on tiny tensors, gradients, and numerical edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY_FCDENSENET

from napari_lesionseg import constants
from napari_lesionseg.errors import LesionSegError
from napari_lesionseg.models import build_model, model_config
from napari_lesionseg.training.losses import (
    LOSS_NAMES,
    boundary_alpha,
    boundary_loss,
    dice_loss,
    fbeta_loss,
    focal_loss,
    generalized_dice_loss,
    make_loss,
    signed_distance_map,
    signed_distance_maps,
    tversky_loss,
)
from napari_lesionseg.training.steps import apply_gradients

# Four voxels: probabilities 0.8, 0.6, 0.3, 0.1 against lesion labels 1, 1, 0, 1.
# TP = 0.8 + 0.6 + 0.1 = 1.5, FN = 0.2 + 0.4 + 0.9 = 1.5, FP = 0.3.
P = [0.8, 0.6, 0.3, 0.1]
G = [1.0, 1.0, 0.0, 1.0]


def _logits(probabilities, dtype=torch.float64) -> torch.Tensor:
    p = torch.tensor(probabilities, dtype=dtype)
    return torch.log(p / (1 - p)).reshape(1, 1, 1, 2, 2)


def _target(labels=G, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(labels, dtype=dtype).reshape(1, 1, 1, 2, 2)


class TestHandValues:
    def test_fbeta(self):
        # beta = 2: (5 * 1.5) / (5 * 1.5 + 4 * 1.5 + 0.3) = 7.5 / 13.8
        assert fbeta_loss(_logits(P), _target(), beta=2.0, smooth=0).item() == pytest.approx(1 - 7.5 / 13.8)

    def test_tversky(self):
        # alpha = 0.3 on FP, beta = 0.7 on FN: 1.5 / (1.5 + 0.09 + 1.05)
        value = tversky_loss(_logits(P), _target(), alpha=0.3, beta=0.7, smooth=0).item()
        assert value == pytest.approx(1 - 1.5 / 2.64)

    def test_dice(self):
        # 2 * 1.5 / (2 * 1.5 + 1.5 + 0.3) = 3 / 4.8
        assert dice_loss(_logits(P), _target(), smooth=0).item() == pytest.approx(1 - 3 / 4.8)
        assert dice_loss(_logits(P), _target()).item() == pytest.approx(1 - 3 / 4.8, abs=1e-5)

    def test_generalized_dice(self):
        # lesion: volume 3 -> weight 1/9, sum pg = 1.5, sum p + sum g = 1.8 + 3
        # background: volume 1 -> weight 1, sum pg = 0.7, sum p + sum g = 2.2 + 1
        expected = 1 - 2 * (1.5 / 9 + 0.7) / (4.8 / 9 + 3.2)
        assert generalized_dice_loss(_logits(P), _target()).item() == pytest.approx(expected)

    def test_focal(self):
        terms = [
            0.25 * (1 - 0.8) ** 2 * -math.log(0.8),
            0.25 * (1 - 0.6) ** 2 * -math.log(0.6),
            0.75 * (1 - 0.7) ** 2 * -math.log(0.7),  # background voxel: p_t = 1 - 0.3
            0.25 * (1 - 0.1) ** 2 * -math.log(0.1),
        ]
        assert focal_loss(_logits(P), _target()).item() == pytest.approx(sum(terms) / 4)
        assert focal_loss(_logits(P), _target(), alpha=0.5, gamma=0.0).item() == pytest.approx(
            0.5 * -(math.log(0.8) + math.log(0.6) + math.log(0.7) + math.log(0.1)) / 4
        )

    def test_boundary(self):
        phi = torch.tensor([-1.0, 2.0, 3.0, -2.0], dtype=torch.float64).reshape(1, 1, 1, 2, 2)
        # (-0.8 + 1.2 + 0.9 - 0.2) / 4
        assert boundary_loss(_logits(P), phi).item() == pytest.approx(1.1 / 4)

    def test_batch_is_one_set_of_voxels(self):
        # eq. 4 sums over all voxels of the batch: one ratio, not a mean of per-patch ratios
        logits = torch.cat([_logits(P), _logits([0.9, 0.9, 0.9, 0.9])])
        target = torch.cat([_target(), _target([0.0, 0.0, 0.0, 1.0])])
        tp, fn, fp = 1.5 + 0.9, 1.5 + 0.1, 0.3 + 2.7
        assert fbeta_loss(logits, target, beta=1.0, smooth=0).item() == pytest.approx(1 - 2 * tp / (2 * tp + fn + fp))


@pytest.mark.parametrize("beta", [*constants.PAPER_BETAS, 0.5])
def test_fbeta_equals_tversky_with_eq6_weights(beta):
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 3, 4, 5, dtype=torch.float64)
    target = (torch.rand(2, 1, 3, 4, 5) > 0.6).double()
    b2 = beta**2
    tversky = tversky_loss(logits, target, alpha=1 / (1 + b2), beta=b2 / (1 + b2), smooth=0)
    torch.testing.assert_close(fbeta_loss(logits, target, beta=beta, smooth=0), tversky)


def test_fbeta_one_is_dice_and_larger_beta_penalises_misses_more():
    logits, target = _logits(P), _target()
    torch.testing.assert_close(fbeta_loss(logits, target, beta=1.0), dice_loss(logits, target))
    misses = _logits([0.1, 0.1, 0.1, 0.1])  # predicts nothing: every lesion voxel is a false negative
    assert fbeta_loss(misses, target, beta=3.0) > fbeta_loss(misses, target, beta=1.0)


class TestFbetaGradient:
    """Autograd against the quotient rule, and against eq. 5 of 001 as printed."""

    @staticmethod
    def _gradient_wrt_p(logits, target, beta):
        logits = logits.clone().requires_grad_(True)
        score = 1 - fbeta_loss(logits, target, beta=beta, smooth=0)
        (grad_logits,) = torch.autograd.grad(score, logits)
        p = torch.sigmoid(logits.detach())
        return grad_logits / (p * (1 - p)), p

    @staticmethod
    def _sums(p, g, beta):
        b2 = beta**2
        a = (1 + b2) * (p * g).sum()
        rest = b2 * ((1 - p) * g).sum() + (p * (1 - g)).sum()
        return b2, a, rest

    @pytest.mark.parametrize("beta", constants.PAPER_BETAS)
    def test_matches_quotient_rule(self, beta):
        torch.manual_seed(1)
        logits, target = torch.randn(1, 1, 2, 3, 4, dtype=torch.float64), (torch.rand(1, 1, 2, 3, 4) > 0.5).double()
        grad, p = self._gradient_wrt_p(logits, target, beta)
        b2, a, rest = self._sums(p, target, beta)
        denominator = a + rest
        # d(A / D) / dp_j with dA/dp_j = (1 + beta^2) g_j and dD/dp_j = 1
        torch.testing.assert_close(grad, ((1 + b2) * target * denominator - a) / denominator**2)

    @pytest.mark.parametrize("beta", constants.PAPER_BETAS)
    def test_eq5_as_printed(self, beta):
        torch.manual_seed(2)
        logits, target = torch.randn(1, 1, 2, 3, 4, dtype=torch.float64), (torch.rand(1, 1, 2, 3, 4) > 0.5).double()
        grad, p = self._gradient_wrt_p(logits, target, beta)
        b2, a, rest = self._sums(p, target, beta)
        eq5 = (1 + b2) * target * rest / (a + rest) ** 2
        # eq. 5 leaves out the term A ((1 + beta^2) g_j - 1) / D^2 of the quotient rule ...
        torch.testing.assert_close(grad - eq5, a * ((1 + b2) * target - 1) / (a + rest) ** 2)
        # ... which vanishes when prediction and reference do not overlap (A = 0): then they agree
        disjoint = target * 0 + (p < 0.5).double() * target  # lesion only where p is low
        masked_logits = torch.where(disjoint > 0, torch.full_like(logits, -800.0), logits)
        grad0, p0 = self._gradient_wrt_p(masked_logits, disjoint, beta)
        keep = (p0 > 1e-12) & (p0 < 1 - 1e-12)  # dp/dlogit underflows at the masked voxels
        b2, a0, rest0 = self._sums(p0, disjoint, beta)
        assert a0 == 0
        eq5_disjoint = (1 + b2) * disjoint * rest0 / (a0 + rest0) ** 2
        torch.testing.assert_close(grad0[keep], eq5_disjoint[keep])


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("soft", [False, True])
def test_gradcheck_float64(name, soft):
    torch.manual_seed(3)
    logits = torch.randn(2, 1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 1, 2, 2, 3, dtype=torch.float64)
    target = target if soft else (target > 0.5).double()
    loss_fn = make_loss(name)
    loss_fn.set_epoch(40)  # boundary: alpha = 0.6, both terms active
    distance = torch.randn(2, 1, 2, 2, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, target, distance_map=distance), (logits,))


def _all_losses(logits, target):
    distance = signed_distance_maps(target, (1.0, 1.0, 2.0))
    values = {}
    for name in LOSS_NAMES:
        loss_fn = make_loss(name)
        loss_fn.set_epoch(10)
        values[name] = loss_fn(logits, target, distance_map=distance)
    return values


@pytest.mark.parametrize("fill", [0.0, 1.0])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_empty_and_full_patches_stay_finite(fill, scale):
    torch.manual_seed(4)
    logits = (scale * torch.randn(2, 1, 4, 4, 4)).requires_grad_(True)
    target = torch.full((2, 1, 4, 4, 4), fill)
    for name, value in _all_losses(logits, target).items():
        (grad,) = torch.autograd.grad(value, logits)
        assert torch.isfinite(value), name
        assert torch.isfinite(grad).all(), name


def test_empty_patch_predicted_empty_has_no_loss():
    logits, target = torch.full((1, 1, 2, 2, 2), -30.0), torch.zeros(1, 1, 2, 2, 2)
    assert fbeta_loss(logits, target, beta=1.5).item() == pytest.approx(0.0, abs=1e-4)
    assert tversky_loss(logits, target, alpha=0.3, beta=0.7).item() == pytest.approx(0.0, abs=1e-4)
    assert generalized_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_upcast(dtype):
    torch.manual_seed(5)
    target = torch.zeros(2, 1, 16, 16, 16)
    target[:, :, 6:9, 6:9, 6:9] = 1  # 27 lesion voxels per patch among 4096
    logits = (4 * torch.randn(2, 1, 16, 16, 16)).to(dtype).requires_grad_(True)
    reference = _all_losses(logits.detach().float(), target)
    for name, value in _all_losses(logits, target).items():
        (grad,) = torch.autograd.grad(value, logits)
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value) and torch.isfinite(grad.float()).all(), name
        assert value.item() == pytest.approx(reference[name].item(), rel=1e-4, abs=1e-6)


def test_bf16_autocast_training_step_never_applies_non_finite_gradients():
    """The forward pass and the loss are finite; the weight gradients rarely are not (oneDNN's bfloat16
    backward on 2 threads), so the guarantee is the step's: it is applied exactly when every gradient
    is finite, and the weights stay finite either way."""
    torch.manual_seed(6)
    model = build_model(model_config("compact", in_channels=2, dense_blocks_down=1, patch_size=[8, 8, 8])).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    images, target = torch.randn(2, 2, 8, 8, 8), torch.zeros(2, 1, 8, 8, 8)
    target[0, 0, 2:5, 2:5, 2:5] = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images)
        loss = make_loss("fbeta", beta=1.5)(logits, target)
    loss.backward()
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert torch.isfinite(loss)
    finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert apply_gradients(optimizer, torch.amp.GradScaler("cpu", enabled=False)) == finite
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())) == finite


class TestSignedDistanceMap:
    def test_one_dimensional_by_hand(self):
        # mm spacing 2: outside voxels measure to the nearest lesion voxel, inside ones to background
        result = signed_distance_map(np.array([0, 0, 1, 1, 0]), spacing=2.0)
        np.testing.assert_allclose(result, [4, 2, -2, -2, 2])

    def test_anisotropic_spacing_by_hand(self):
        mask = np.zeros((3, 3), dtype=bool)
        mask[1, 1] = True
        result = signed_distance_map(mask, spacing=(2.0, 1.0))
        corner = math.sqrt(2.0**2 + 1.0**2)
        np.testing.assert_allclose(result, [[corner, 2, corner], [1, -1, 1], [corner, 2, corner]])
        assert result.dtype == np.float32

    @pytest.mark.parametrize("mask", [np.zeros((4, 5, 6)), np.ones((4, 5, 6)), np.ones((1, 1, 1))])
    def test_no_boundary_gives_zero_map(self, mask):
        result = signed_distance_map(mask, (1.0, 1.0, 3.0))
        assert result.shape == mask.shape and not result.any()

    def test_sign_convention_3d(self):
        mask = np.zeros((7, 7, 7), dtype=bool)
        mask[2:5, 2:5, 2:5] = True
        result = signed_distance_map(mask, (1.0, 1.0, 1.0))
        assert (result[mask] < 0).all() and (result[~mask] > 0).all()
        assert result[3, 3, 3] == pytest.approx(-2.0) and result[0, 3, 3] == pytest.approx(2.0)

    def test_wrong_spacing_is_refused(self):
        with pytest.raises(LesionSegError, match="spacing"):
            signed_distance_map(np.ones((2, 2, 2)), (1.0, 1.0))
        with pytest.raises(LesionSegError, match="spacing"):
            signed_distance_map(np.ones((2, 2, 2)), (1.0, 0.0, 1.0))

    def test_batch_helper_maps_every_patch(self):
        target = torch.zeros(2, 1, 3, 4, 5)
        target[1, 0, 1, 1:3, 2] = 1
        maps = signed_distance_maps(target, (1.0, 2.0, 0.5))
        assert maps.shape == target.shape and maps.dtype == torch.float32
        assert not maps[0].any()  # no lesion in the first patch: zero map
        np.testing.assert_allclose(maps[1, 0].numpy(), signed_distance_map(target[1, 0].numpy(), (1.0, 2.0, 0.5)))


class TestMakeLoss:
    def test_every_name_builds_a_callable(self):
        logits, target = _logits(P).float(), _target().float()
        distance = signed_distance_maps(target)
        for name in LOSS_NAMES:
            loss_fn = make_loss(name)
            assert loss_fn.name == name
            assert loss_fn(logits, target, distance_map=distance).ndim == 0

    def test_parameters_are_passed_through(self):
        loss_fn = make_loss("fbeta", beta=1.5)
        assert loss_fn.params == {"beta": 1.5} and not loss_fn.requires_distance_map
        torch.testing.assert_close(loss_fn(_logits(P), _target()), fbeta_loss(_logits(P), _target(), beta=1.5))
        focal = make_loss("focal", alpha=0.5, gamma=1.0)
        torch.testing.assert_close(focal(_logits(P), _target()), focal_loss(_logits(P), _target(), 0.5, 1.0))

    def test_unknown_names_and_parameters_are_refused(self):
        with pytest.raises(LesionSegError, match="unknown loss"):
            make_loss("cross-entropy")
        with pytest.raises(LesionSegError, match="unknown parameters"):
            make_loss("dice", beta=2.0)
        with pytest.raises(LesionSegError, match="beta > 0"):
            make_loss("fbeta", beta=0.0)
        with pytest.raises(LesionSegError, match="focal"):
            make_loss("focal", alpha=1.5)

    def test_shape_mismatch_is_refused(self):
        with pytest.raises(ValueError, match="shape"):
            dice_loss(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 3))


class TestBoundarySchedule:
    def test_alpha_schedule(self):
        assert boundary_alpha(0) == 1.0
        assert boundary_alpha(1) == pytest.approx(0.99)
        assert boundary_alpha(50) == pytest.approx(0.5)
        assert boundary_alpha(99) == pytest.approx(0.01)
        assert boundary_alpha(500) == pytest.approx(0.01)

    def test_combined_loss_follows_set_epoch(self):
        loss_fn = make_loss("boundary")
        assert loss_fn.requires_distance_map
        logits, target = _logits(P), _target()
        phi = torch.tensor([-1.0, 2.0, 3.0, -2.0], dtype=torch.float64).reshape(1, 1, 1, 2, 2)
        gdl = generalized_dice_loss(logits, target).item()
        assert loss_fn(logits, target, distance_map=phi).item() == pytest.approx(gdl)  # epoch 0: GDL only
        loss_fn.set_epoch(30)
        assert loss_fn.alpha == pytest.approx(0.7)
        assert loss_fn(logits, target, distance_map=phi).item() == pytest.approx(0.7 * gdl + 0.3 * 1.1 / 4)

    def test_missing_distance_map_is_explained(self):
        with pytest.raises(LesionSegError, match="signed_distance_maps"):
            make_loss("boundary")(_logits(P), _target())


class TestFalsePositivePenalty:
    """Fine-tuning on lesion-free patches: F-beta saturates there, the penalty does not."""

    def test_hand_value(self):
        from napari_lesionseg.training.losses import false_positive_penalty

        value = false_positive_penalty(_logits(P), _target())
        assert float(value) == pytest.approx(-math.log(1 - 0.3) / 4)  # only the one voxel without lesion counts

    def test_finite_and_pushes_probabilities_down_on_an_empty_patch(self):
        from napari_lesionseg.training.losses import with_false_positive_penalty

        torch.manual_seed(0)
        logits = torch.randn(2, 1, 8, 8, 8, dtype=torch.float64).add_(2.0).requires_grad_()  # confident false positives
        target = torch.zeros_like(logits)
        penalised = with_false_positive_penalty(make_loss("fbeta", beta=1.5), 1.0)
        plain = make_loss("fbeta", beta=1.5)
        loss = penalised(logits, target)
        assert torch.isfinite(loss)
        (gradient,) = torch.autograd.grad(loss, logits)
        assert torch.all(torch.isfinite(gradient)) and torch.all(gradient > 0)  # descent lowers every logit
        (plain_gradient,) = torch.autograd.grad(plain(logits, target), logits)
        assert float(plain_gradient.abs().max()) < 1e-9 < float(gradient.abs().min())  # F-beta alone: saturated
        optimizer = torch.optim.SGD([logits], lr=100.0)
        start = float(torch.sigmoid(logits.detach()).mean())
        for _ in range(20):
            optimizer.zero_grad()
            penalised(logits, target).backward()
            optimizer.step()
        assert float(torch.sigmoid(logits.detach()).mean()) < start - 0.2

    def test_a_network_trained_on_an_empty_patch_predicts_less_lesion(self):
        from napari_lesionseg.training.losses import with_false_positive_penalty

        image, target = torch.randn(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(2)), torch.zeros(2, 1, 8, 8, 8)

        def trained_mean(loss_fn) -> tuple[float, float]:
            torch.manual_seed(1)
            net = build_model(model_config("compact", 1, input_stride2=False, **TINY_FCDENSENET))
            with torch.no_grad():
                net.classifier.bias.fill_(2.0)  # a network that marks everything as lesion
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
            means = []
            for steps in (0, 20):
                net.train()
                for _ in range(steps):
                    optimizer.zero_grad()
                    loss = loss_fn(net(image), target)
                    assert torch.isfinite(loss)
                    loss.backward()
                    optimizer.step()
                net.eval()
                with torch.no_grad():
                    means.append(float(torch.sigmoid(net(image)).mean()))
            return means[0], means[1]

        before, after = trained_mean(with_false_positive_penalty(make_loss("fbeta", beta=1.5), 1.0))
        plain_before, plain_after = trained_mean(make_loss("fbeta", beta=1.5))
        assert after < before - 0.1
        assert abs(plain_after - plain_before) < 0.02  # F-beta alone learns nothing on the empty patch

    def test_zero_weight_is_the_loss_itself_and_a_negative_one_is_refused(self):
        from napari_lesionseg.training.losses import with_false_positive_penalty

        loss_fn = make_loss("dice")
        assert with_false_positive_penalty(loss_fn, 0.0) is loss_fn
        with pytest.raises(LesionSegError, match="false-positive weight"):
            with_false_positive_penalty(loss_fn, -1.0)
