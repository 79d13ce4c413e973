"""The names of the worker's tasks: the one home of what the API sends and the worker runs."""

PROCESS_JOB = "bulkredeem.process_job"
DELIVER_WEBHOOK = "bulkredeem.deliver_webhook"
SWEEP = "bulkredeem.sweep"
PURGE_FILES = "bulkredeem.purge_files"
