"""Synthetic particles with exact ground truth: densities, SO(3) projections, noise, CTF.

Main entry points: :func:`load_density`, :func:`simulate_particles`, :func:`write_simulation` and
:func:`simulate_to_files` (streams large sets to disk).
"""
from .ctf import CTFParams, apply_ctf, ctf_2d, electron_wavelength
from .density import Density, density_from_atoms, density_from_mrc, gaussian_density, load_density, phantom, read_atoms
from .project import project
from .simulate import (SimResult, disc_mask, disc_variance, simulate_particles, simulate_to_files, simulation_paths,
                       write_simulation)
from .so3 import euler_to_matrix, matrix_to_euler, quaternion_to_matrix, random_rotations, rotation_z
from .training import Structure, TrainingSet, coloured_noise, noise_spectrum, simulate_training_distribution

__all__ = [
    "CTFParams", "Density", "SimResult", "apply_ctf", "ctf_2d", "density_from_atoms", "density_from_mrc",
    "disc_mask", "disc_variance", "electron_wavelength", "euler_to_matrix", "gaussian_density",
    "load_density", "matrix_to_euler", "phantom", "project", "quaternion_to_matrix", "random_rotations",
    "read_atoms", "rotation_z", "Structure", "TrainingSet", "coloured_noise", "noise_spectrum",
    "simulate_training_distribution", "simulate_particles", "simulate_to_files", "simulation_paths", "write_simulation",
]
