"""Facial expression recognition under label noise: the dual-branch network of the paper.

The reusable pieces live here so that the ``noisylabel-fer`` console command works after a
plain ``pip install .``; ``examples/fer_rafdb/`` holds the scripts and configurations that
drive them.
"""
