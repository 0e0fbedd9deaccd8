"""Loading the samples: where each is taken (sampling), its pixels (pixels), and the worker processes (processes)."""
