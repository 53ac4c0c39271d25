"""Background work of the customers app (Django Tasks API); tasks load ids and call services."""

from __future__ import annotations

from django_tasks import task

from clm.customers.importing import import_job_run


@task()
def import_job_run_task(job_id: int) -> None:
    """Apply a pending CSV import; a second delivery of the same job does nothing."""
    import_job_run(job_id=job_id)
