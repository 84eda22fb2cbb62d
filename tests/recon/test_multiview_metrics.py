"""PSNR, the image metric of the multi-view pipeline, against hand-computed values."""

import math

import numpy as np
import pytest

from meshing.metrics import psnr


def test_psnr_of_a_constant_offset():
    a = np.zeros((2, 4, 4, 3))
    assert psnr(a + 0.1, a) == pytest.approx(20.0)  # MSE 0.01 -> 20 dB
    assert psnr(a + 10, a, max_value=255) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a, a) == math.inf


def test_psnr_inside_a_mask_ignores_the_rest():
    a, b = np.zeros((4, 4, 3)), np.zeros((4, 4, 3))
    b[:2] = 0.1  # error only in the top half
    b[2:] = 0.5
    mask = np.zeros((4, 4))
    mask[:2] = 1
    assert psnr(a, b, mask=mask) == pytest.approx(20.0)
    assert psnr(a, b) < 10.0


@pytest.mark.parametrize(("pred", "target", "mask", "match"), [
    (np.zeros((2, 2, 3)), np.zeros((2, 3, 3)), None, "same shape"),
    (np.full((2, 2, 3), np.nan), np.zeros((2, 2, 3)), None, "finite"),
    (np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), np.zeros((2, 2)), "at least one"),
    (np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), np.ones((3, 2)), "mask of shape"),
])
def test_psnr_rejects_bad_input(pred, target, mask, match):
    with pytest.raises(ValueError, match=match):
        psnr(pred, target, mask=mask)


def test_neus_loss_terms_match_hand_computed_values():
    import torch

    from recon import losses

    rgb = torch.tensor([[0.2, 0.4, 0.6], [1.0, 1.0, 1.0]])
    target = torch.tensor([[0.1, 0.4, 0.9], [1.0, 0.7, 1.0]])
    assert float(losses.color_l1_term(rgb, target)) == pytest.approx((0.1 + 0.3 + 0.3) / 6)
    grad = torch.tensor([[0.0, 0.0, 2.0], [0.6, 0.8, 0.0]])  # norms 2 and 1
    assert float(losses.eikonal_l2_term(grad)) == pytest.approx(0.5)
    opacity, mask = torch.tensor([0.9, 0.0]), torch.tensor([1.0, 0.0])
    # -log(0.9) for the first ray; the second is clamped to 1e-3: -log(1 - 1e-3).
    expected = (-math.log(0.9) - math.log(1 - 1e-3)) / 2
    assert float(losses.mask_bce_term(opacity, mask)) == pytest.approx(expected, rel=1e-5)
