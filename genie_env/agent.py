"""The old home of the IMPALA CNN, kept only as a name: agent files saved before it moved to
`genie_env.agents.networks` (the shipped `agent.zip` among them) refer to `genie_env.agent.ImpalaCNN`, and
plain `stable_baselines3.PPO.load` imports this module to find it. genie-env's own loader
(`genie_env.agents.policies.load_agent`) finds the class by name and needs no alias."""

from genie_env.agents.networks import ImpalaCNN

__all__ = ["ImpalaCNN"]
