"""Data sets as [-1, 1] float tensors."""
