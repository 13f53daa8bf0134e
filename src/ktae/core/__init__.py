"""The functional core: statistics -> key-token values -> advantages -> losses. Pure functions on tensors."""
