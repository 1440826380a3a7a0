"""File I/O: MRC stacks (mrcfile), atomic writes; HDF5 and STAR helpers live beside them."""
from .atomic import atomic_path, check_output
from .mrc import ImageStack, MrcInfo, StackWriter, open_stack, read_mrc, sniff, validate, write_mrc

__all__ = ["ImageStack", "MrcInfo", "StackWriter", "atomic_path", "check_output", "open_stack",
           "read_mrc", "sniff", "validate", "write_mrc"]
