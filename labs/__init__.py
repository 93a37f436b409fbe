"""What the labs of the series know that the grader's core does not: their data, their
demo assets, their pretrained bases. An assignment's own `lab.py` names what it uses."""

DEMO = "keras_flowers_transfer"  # the assignment `grader demo` releases and grades
NOTEBOOK_NAMES = {"classes": "CLASSES", "image_size": "IMAGE_SIZE", "batch_size": "BATCH_SIZE"}  # what `grader new` reads off a notebook
