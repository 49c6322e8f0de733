"""Cross-framework parity: what is checked and how tightly (`definitions`), what a framework or the
float64 reference computes for it (`outputs`, in worker processes), the comparison of those outputs
(`compare`, pure NumPy and pandas), what the resulting table says (`verdicts`, pandas alone: the
report reads them too), and running the checks in workers (`runner`)."""
