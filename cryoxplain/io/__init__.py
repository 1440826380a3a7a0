"""File I/O: MRC stacks (mrcfile), RELION STAR files, HDF5 metadata/results; atomic writes."""
from .atomic import atomic_path, check_output
from .hdf5 import read_h5, write_h5
from .mrc import (ImageStack, MrcInfo, StackWriter, open_stack, read_mrc, sniff, stack_stats, validate,
                  write_mrc)
from .star import StarTable, read_star, write_star

__all__ = ["ImageStack", "MrcInfo", "StackWriter", "StarTable", "atomic_path", "check_output", "open_stack",
           "read_h5", "read_mrc", "read_star", "sniff", "stack_stats", "validate", "write_h5", "write_mrc",
           "write_star"]
