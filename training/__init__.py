"""Offline training: corpora, metrics, the TF-IDF baseline, PLANT training and the CLI."""
