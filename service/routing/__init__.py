"""The deterministic routing planner: feasible plans, scores, ties."""
