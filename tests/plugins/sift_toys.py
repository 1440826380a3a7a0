"""Planted toy models for the sift_ablation tests (spec §11.5.1)."""
import numpy as np
import torch

from cryoxplain.imaging.filters import gaussian_blur_exact
from cryoxplain_plugins.sift_ablation.scale_space import laplacian_band

from sift_helpers import blob

A, C, B = ((20.3, 40.6), 1.8), ((21.0, 39.5), 10.0), ((44.2, 22.7), 4.0)


def scale_toy_image(n=64):
    """Blob A (s = 1.8) on top of the broad blob C (s = 10) at the same place, and B (s = 4) apart."""
    return blob(n, *A) + blob(n, *C) + blob(n, *B)


def injected_keypoints():
    return np.array([[C[0][0], C[0][1], C[1]], [B[0][0], B[0][1], B[1]], [A[0][0], A[0][1], A[1]]])


class LogDetector(torch.nn.Module):
    """Two-logit classifier whose class-1 probability is sigmoid(β(⟨w, x⟩ − b)), w the scale-normalised
    LoG at A (s = 1.8): it responds to blob A only; F(x) ≈ 0.982, F(x − A) ≈ 0.018."""

    input_shape = None

    def __init__(self, x: np.ndarray):
        super().__init__()
        n = x.shape[0]
        d = np.zeros((n, n))
        d[int(round(A[0][1])), int(round(A[0][0]))] = 1.0
        w = blob(n, *A)
        w = laplacian_band(torch.as_tensor(w), A[1]).numpy()             # LoG-shaped template at A
        w /= np.sqrt((w ** 2).sum())
        full = float((w * x).sum())
        without = float((w * (x - blob(n, *A))).sum())
        self.beta = 8.0 / (full - without)
        self.b = 0.5 * (full + without)
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32))

    def forward(self, x):
        z = self.beta * ((x[:, 0] * self.w).flatten(1).sum(1) - self.b)
        return torch.stack([torch.zeros_like(z), z], 1)
