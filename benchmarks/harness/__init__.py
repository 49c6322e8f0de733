"""The machinery under the commands: job descriptions, worker processes and their training loop,
the data pipeline, timing statistics, contention, the run environment and the result tables."""
