"""The `archbench` command line: one module per command group, thin over the library
(parse, call, print). Nothing imports this package.
"""
