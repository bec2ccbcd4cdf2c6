"""The measuring kit: timing, memory, the device layer, inference backends, peers, workloads
and the archbench/1 record. Imports the subject (`ppo_core`), never reports or the CLI.

Importing the package is cheap (no torch): `archbench.reports` reads `archbench.instrument.record`
for the schema.
"""
