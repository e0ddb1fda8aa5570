"""Domain plugins: data and model families for learning-curve sweeps."""
