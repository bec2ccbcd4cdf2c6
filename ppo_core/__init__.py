"""ppo-archbench: measure what each PPO actor-critic size costs and buys.

Importing the package is cheap (no torch); the modules that need torch import it themselves.
"""

__version__ = "0.1.0"
