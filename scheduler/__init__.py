"""Scheduled CKAN calls: add_job, list_jobs; jobs on ``default_scheduler_q``."""
