"""Rotation augmentation of the denoiser training keeps white-noise variance (moved from tests/test_equivariance_cli.py)."""
import numpy as np
import torch


def test_rotation_augmentation_keeps_noise_variance():
    from cryoxplain.geometry.rotate import disc_mask
    from cryoxplain.train.denoise import _rotate

    torch.manual_seed(0)
    x = torch.randn(32, 1, 33, 33)
    ang = torch.rand(32) * 2 * np.pi
    m = torch.as_tensor(disc_mask(33, radius=10)).bool()
    v = _rotate(x, ang)[:, 0][:, m].var().item()
    assert abs(v - 1.0) < 0.05  # bilinear interpolation would give ~0.5-0.7
