"""Model families ported to Flax."""
