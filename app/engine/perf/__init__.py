"""The performance model: TTFT, TPOT, B* and throughput per (model, GPU, precision, TP,
PP) under an engine profile.
"""
