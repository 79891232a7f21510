"""The stages a request passes through, one module each."""
