"""Benchmarks: every performance claim of the project comes from a script here.

Each script measures its subject and a baseline side by side in one run and reports ratios
against that baseline, with the machine described (see bench/README.md).
"""
