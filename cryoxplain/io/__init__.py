"""File I/O: MRC stacks (mrcfile), particle sets (RELION STAR, cryoSPARC .cs), RELION STAR files,
HDF5 metadata/results; atomic writes."""
from .atomic import atomic_path, check_output
from .hdf5 import read_h5, write_h5
from .mrc import (ImageStack, MrcInfo, StackWriter, open_stack, read_mrc, sniff, stack_stats, validate,
                  write_mrc)
from .particles import ParticleSet, ParticleSetWriter, open_particles, write_particle_set
from .star import StarTable, read_star, write_star

__all__ = ["ImageStack", "MrcInfo", "ParticleSet", "ParticleSetWriter", "StackWriter", "StarTable", "atomic_path",
           "check_output", "open_particles", "open_stack", "read_h5", "read_mrc", "read_star", "sniff", "stack_stats",
           "validate", "write_h5", "write_mrc", "write_particle_set", "write_star"]
