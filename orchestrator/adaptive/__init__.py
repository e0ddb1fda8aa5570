"""Adaptive sweeps: choose the next trials of the planned grid by what they do to the exponents' intervals."""
