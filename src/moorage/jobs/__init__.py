"""Durable background jobs in the shared database: any node may run any job."""

from moorage.jobs.queue import Job, JobQueue
from moorage.jobs.runner import HandlerRegistry, JobHandler, JobRunner, Periodic, node_id

__all__ = ["HandlerRegistry", "Job", "JobHandler", "JobQueue", "JobRunner", "Periodic", "node_id"]
