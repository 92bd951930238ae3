"""Evaluation of each stage: tokenizer reconstructions, dynamics rollouts, agents on held-out real levels."""
