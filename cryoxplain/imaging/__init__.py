"""Plain tensor/array functions on images, each concept implemented once.

* :mod:`~cryoxplain.imaging.masks` — box centre ``N // 2``, radial distance, disc masks;
* :mod:`~cryoxplain.imaging.normalize` — per-image normalisation (training = inference);
* :mod:`~cryoxplain.imaging.filters` — Gaussian blur (one kernel, four named borders);
* :mod:`~cryoxplain.imaging.fourier` — Fourier rings shared by FRC and attribution spectra;
* :mod:`~cryoxplain.imaging.augment` — random symmetries for training;
* :mod:`~cryoxplain.imaging.batch` — the validator that turns arrays into image batches.

Conventions (centre, axes, angles, units, layouts): docs/conventions.md.
"""
from .batch import as_image_batch, as_image_stack
from .filters import gaussian_blur, gaussian_blur_matrices, gaussian_kernel1d
from .fourier import n_rings, rfft_weights, ring_frequencies, ring_index, ring_sums
from .masks import box_center, disc_mask, radial_distance, resolve_mask
from .normalize import NORMALIZATION, denormalize, image_stats, normalize, normalize_images

__all__ = ["as_image_batch", "as_image_stack", "gaussian_blur", "gaussian_blur_matrices", "gaussian_kernel1d",
           "n_rings", "rfft_weights", "ring_frequencies", "ring_index", "ring_sums", "box_center", "disc_mask",
           "radial_distance", "resolve_mask", "NORMALIZATION", "denormalize", "image_stats", "normalize",
           "normalize_images", "random_symmetry"]


def __getattr__(name):  # augment imports geometry; keep `import cryoxplain.imaging` light
    if name == "random_symmetry":
        from .augment import random_symmetry

        return random_symmetry
    raise AttributeError(name)
