"""astro-reasoner: ASTRO, the Autoregressive Search-Taught Reasoner (Kim et al., arXiv 2507.00417)."""

__version__ = "0.1.0"
