"""`grader serve`: the workshop server (web.py), its durable upload queue, its secrets and live
pages, and its door onto the grading run (workshop.py)."""
