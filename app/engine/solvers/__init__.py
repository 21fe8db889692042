"""The planners: GH (greedy), AGH (anytime local search) and the exact MILP, behind one
entry point (`solve`).
"""
