"""The pipeline core: configs, artifacts, the run store (cache + lineage), the runner.

It knows no particular stage or network: the CLI registers the stages with the runner.
"""
