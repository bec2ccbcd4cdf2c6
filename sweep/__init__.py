"""The sweep runner: `runner` runs pytest bench/ once and renders the report, `shards` and
`multisweep` spread one sweep over several devices or nodes. Sits above `reports`.
"""
