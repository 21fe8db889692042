"""The exact MILP: the Pyomo model (`model`), the solver processes (`backends`),
solving and auditing (`audit`), the LP relaxation (`relaxation`).
"""
