"""Evaluation of the world model's stages: tokenizer reconstructions and dynamics rollouts on held-out
levels (agents are evaluated in `genie_env.agents.evaluate`)."""
