"""Helpers shared by the test modules (the launchers the benchmarks share too live in `livinglab.launch`)."""
