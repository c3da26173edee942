"""The snapshot pipeline: plan → export → stage → apply → commit, driven by run.py."""
