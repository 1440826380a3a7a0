"""Rotation augmentation of training keeps white-noise variance (moved from tests/test_equivariance_cli.py)."""
import numpy as np
import torch


def test_rotation_augmentation_keeps_noise_variance():
    from cryoxplain.geometry.rotate import disc_mask
    from cryoxplain.imaging.augment import random_symmetry  # the one training augmentation (was train.denoise._rotate)

    torch.manual_seed(0)
    x = torch.randn(32, 1, 33, 33)
    m = torch.as_tensor(disc_mask(33, radius=10)).bool()
    v = random_symmetry(x, "rotate", torch.Generator().manual_seed(0))[:, 0][:, m].var().item()
    assert abs(v - 1.0) < 0.05  # bilinear interpolation would give ~0.5-0.7
