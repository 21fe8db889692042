"""The pure core: no HTTP, no I/O beyond reading its packaged data.

model/    the problem's domain objects, the scenario schema, catalog and demo
perf/     the latency model (prefill/decode under TP and PP) and its engine profiles
plan/     candidates and their constants, the one evaluator, explanations, diffs
solvers/  GH, AGH and the exact MILP (model, backends, audit)
contracts the typed requests and results that cross the facade
api       the facade the service and the CLI use
"""
