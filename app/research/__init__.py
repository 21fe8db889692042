"""Research-only code, not on the service's path: the baselines (LPR, DVR, HF) and the
instance generators used by benchmarks and tests.
"""
