"""Evaluation of bundles on a labelled folder: metrics, ``dermnode evaluate`` and its plots."""
