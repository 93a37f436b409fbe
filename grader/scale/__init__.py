"""Where notebooks are graded: supervised worker processes here (executors.py) or a Dask cluster."""
