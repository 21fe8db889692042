"""Domain objects of the allocation problem, the scenario schema (pydantic) and the
converters between them, the built-in catalog and the demo scenario.
"""
