"""The sweep runner: `runner` runs pytest bench/ once and renders the report (its `options`,
records stream `progress`, stop `signals`, and `rebuild` of a killed run from its records);
`shards` and `multisweep` spread one sweep over several devices or nodes. Sits above `reports`.
"""
