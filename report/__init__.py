"""Turns a run folder's CSV tables into its Markdown report and charts."""
