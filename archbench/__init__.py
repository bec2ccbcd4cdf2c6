"""ppo-archbench: what each PPO actor-critic size costs and buys, measured.

Parts, bottom to top (tests/test_layout.py holds the order): `ppo_core` (the subject, beside
this package), `archbench.instrument` (the measuring kit and the sweep), `archbench.reports`
(decisions and pages, free of torch) and `archbench.cli` (the command line).
"""
