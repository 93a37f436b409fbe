"""An auto-grader for the "Keras on TPU" codelab notebooks."""

__version__ = "0.1.0"
