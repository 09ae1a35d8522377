"""LM backends behind one Protocol (base.Policy)."""
