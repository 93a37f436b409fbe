"""What the grading workers' fork server imports once, so that a worker forked from it
starts in a fraction of a second instead of the 3 to 4 s of CPU an interpreter takes to
import TensorFlow, Keras and the grader (grader/scale/executors.py). Nothing here runs
TensorFlow: no op, no device probed (a GPU's context made before a fork would not survive
it), so a fork of this process is as fresh as a new interpreter."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_saved = os.dup(2)
try:  # TensorFlow's C++ side writes its start-up notes to fd 2 before any log level applies
    with open(os.devnull, "wb") as _devnull:
        os.dup2(_devnull.fileno(), 2)
        import tensorflow  # noqa: F401,E402
        import keras  # noqa: F401,E402
finally:
    os.dup2(_saved, 2)
    os.close(_saved)

from grader import context  # noqa: F401,E402
from grader.grading import pipeline  # noqa: F401,E402
from grader.reports import report  # noqa: F401,E402
from reference import training  # noqa: F401,E402
