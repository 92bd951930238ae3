"""Agents, the pipeline's last stage: SB3 agents trained in the dream or the real game (`train`), their CNNs
(`networks`), the policies that play the game and the one SB3 loader (`policies`), evaluation on held-out
real levels (`evaluate`) and the comparison table and plot (`compare`).

Stable-Baselines3 takes a second to import, so nothing is imported here: import the module you need.
"""
