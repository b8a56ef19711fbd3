"""Eval suites, the runner, cassettes, reports and replay."""
