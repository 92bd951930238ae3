"""Evaluation of each stage: tokenizer reconstructions (and, later, dynamics rollouts and agents)."""
