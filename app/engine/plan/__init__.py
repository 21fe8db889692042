"""Plans and what is derived from them: the candidate table, unit costs, the one
evaluator (with stress), explanations and diffs.
"""
