"""Replication between registries: policies, the filters and name rewriting they apply, and the copy.

Harbor's model (policies → executions → tasks) with the guarantees Harbor lacks: one execution
per event whatever the number of nodes (the job table's dedup key), the manifest copied last so a
destination never shows a tag before its blobs, and every failure's reason in the task's log.
"""
