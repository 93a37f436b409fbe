"""An auto-grader for the "Keras on TPU" codelab notebooks."""

import os as _os

__version__ = "0.1.0"

# HDF5 takes a lock on every file it opens (flock, read or write) unless told not to, and
# reads this setting once, when h5py first loads it. A file another process holds locked
# then fails to open ("unable to lock file"): a student's run that locks a weights file
# must never make the grader, or a later run, fail. Every grader process imports this
# package before h5py; the sandbox's environment says the same (grader/sandbox/).
_os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"
