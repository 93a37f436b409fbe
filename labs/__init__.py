"""What the labs of the series know that the grader's core does not: their data, their
demo assets, their pretrained bases. An assignment's own `lab.py` names what it uses."""
