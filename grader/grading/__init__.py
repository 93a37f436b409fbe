"""One notebook judged: the pipeline from file to result, what came back from the sandbox read as
data, the evidence, the checks and structure rules, the budget of the grader's own work."""
