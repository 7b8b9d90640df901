"""Numerical building blocks shared by the models: attention dispatch, rotary embeddings, norms."""
