"""The sweep runner: `runner` runs pytest bench/ once (its `options`, records stream `progress`,
stop `signals`, and `rebuild` of a killed run from its records); `shards` and `multisweep` spread
one sweep over several devices or nodes. Part of the instrument: it never renders (the CLI does).
"""
