"""Pages: the scorecard, the class report and view, the student's notebook rendered, charts and
wording. Values in, self-contained HTML out."""
