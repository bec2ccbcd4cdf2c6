"""One device layer for the instrument: `gpu` (NVML, CUDA events, allocator peaks),
`datasheets` (published GPU rates), `tiers` (which sizes suit which card), `machine` (host
facts and measured ceilings). Resolving and validating a device is `ppo_core.device`.
"""
