"""Benchmarks behind docs/BENCHMARKS.md. Each prints a summary and writes JSON to reports/."""
